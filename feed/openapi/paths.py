"""The operations in the OpenAPI document: every path the API, the probes and the
stream serve, with what each takes and answers."""

from __future__ import annotations

from typing import Any

from feed import batch_input, inputs, reading, search, search_params
from feed.openapi.parts import (
    CHANGE,
    CHANNEL,
    CHANNEL_CHANGE,
    CREATED_HEADERS,
    ERROR,
    ID,
    IDEMPOTENCY_KEY,
    MEMBER,
    POST_ID,
    TOO_MANY,
    answer,
    ref,
    request_body,
)
from feed.openapi.reading import read_state_paths
from feed.settings import Settings
from feed.sse import Format

# An event id to resume after, as inputs.resume_id reads it: 0 is before every event.
EVENT_ID = {"type": "integer", "minimum": 0, "maximum": inputs.MAX_ID}


# A search as search_params.search_query reads it (the language: feed/search.py).
Q = {
    "name": "q",
    "in": "query",
    "schema": {"type": "string", "maxLength": search.MAX_QUERY_CHARS},
    "description": 'Words, "phrases", prefixes (depl*) and exclusions (-word); all must hold',
}
CHANNELS = {
    "name": "channel",
    "in": "query",
    "style": "form",
    "explode": True,
    "schema": {"type": "array", "items": {"type": "string"}},
}
MOMENT = {"type": "string", "format": "date-time"}
SEARCH = {
    "summary": "Posts that match a search, best first (relevance, then the newest)",
    "parameters": [
        Q,
        CHANNELS,
        {"name": "author", "in": "query", "schema": {"type": "string"}},
        {"name": "after", "in": "query", "schema": MOMENT},
        {"name": "before", "in": "query", "schema": MOMENT},
        {"name": "pinned", "in": "query", "schema": {"type": "boolean"}},
        {
            "name": "limit",
            "in": "query",
            "schema": {"type": "integer", "minimum": 1, "maximum": search_params.MAX_SEARCH_PAGE},
        },
        {"name": "cursor", "in": "query", "schema": {"type": "string"}},
    ],
    "responses": {
        "200": answer(
            "A page of results",
            {
                "type": "object",
                "required": ["results", "next_cursor"],
                "properties": {
                    "results": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "post": ref("Post"),
                                "snippet": {"type": "string", "description": "Safe HTML"},
                                "link": {
                                    "type": "string",
                                    "description": "The page that shows the post: a reply"
                                    " in its thread, a post in its channel",
                                },
                            },
                        },
                    },
                    "next_cursor": {"type": ["string", "null"]},
                },
            },
        ),
        "400": ERROR,
        "404": ERROR,
    },
}


def batch_operation(settings: Settings) -> dict[str, Any]:
    """``POST /api/posts:batch`` (batch.py): its envelope's limits are batch_input.py's."""
    limit = batch_input.batch_bytes(settings.max_body_bytes)
    items = {
        "type": "array",
        "minItems": 1,
        "maxItems": batch_input.MAX_BATCH_ITEMS,
        "items": ref("BatchItem"),
    }
    ndjson = {"type": "string", "description": "One BatchItem object a line"}
    prefer = {
        "name": "Prefer",
        "in": "header",
        "description": f"`{batch_input.PREFER_MINIMAL}` (RFC 7240): each written item's result "
        "carries its `id`, `channel`, `event_id` and `replayed`, not its `post`",
        "schema": {"type": "string"},
    }
    applied = {
        "Preference-Applied": {
            "description": f"`{batch_input.PREFER_MINIMAL}` when the results are the minimal ones",
            "schema": {"type": "string", "enum": [batch_input.PREFER_MINIMAL]},
        }
    }
    return {
        "summary": "Publish up to "
        f"{batch_input.MAX_BATCH_ITEMS} posts and replies; one result per item, in order",
        "parameters": [prefer],
        "requestBody": {
            "required": True,
            "description": f"A JSON array, or NDJSON, of at most {batch_input.MAX_BATCH_ITEMS} "
            f"items, {batch_input.MAX_BATCH_VALUES} JSON values and {limit} bytes (422, 422 "
            "and 413 beyond). An item that is refused gets "
            "its own result and fails no other.",
            "content": {
                inputs.JSON_TYPE: {"schema": items},
                batch_input.NDJSON_TYPE: {"schema": ndjson},
            },
        },
        "responses": {
            "200": {
                **answer(
                    "The batch was read: each item's result, in order, 201 or its refusal",
                    {
                        "type": "object",
                        "required": ["results"],
                        "properties": {"results": {"type": "array", "items": ref("BatchResult")}},
                    },
                ),
                "headers": applied,
            },
            **{code: ERROR for code in ("400", "413", "415", "422")},
        },
    }


def paths(settings: Settings) -> dict[str, Any]:
    """The document's ``paths``, before the answers every operation shares are added."""
    post_ops = {
        "get": {
            "summary": "One post",
            "parameters": [POST_ID],
            "responses": {
                "200": answer("The post", {"type": "object", "properties": {"post": ref("Post")}}),
                "404": ERROR,
            },
        },
        "patch": {
            "summary": "Edit a post's body",
            "parameters": [POST_ID],
            "requestBody": request_body("PostEdit", settings),
            "responses": {
                "200": CHANGE,
                "400": ERROR,
                "404": ERROR,
                "410": ERROR,
                "413": ERROR,
                "415": ERROR,
                "422": ERROR,
            },
        },
        "delete": {
            "summary": "Delete a post (it leaves a tombstone event)",
            "parameters": [POST_ID],
            "responses": {"200": CHANGE, "404": ERROR, "410": ERROR},
        },
    }
    archive_op = {
        "parameters": [CHANNEL],
        "responses": {"200": CHANNEL_CHANGE, "404": ERROR, "503": ERROR},
    }
    pin_op = {
        "parameters": [POST_ID],
        "responses": {"200": CHANGE, "404": ERROR, "410": ERROR, "422": ERROR},
    }
    page = [
        {"name": "before", "in": "query", "schema": ID},
        {
            "name": "limit",
            "in": "query",
            "schema": {"type": "integer", "minimum": 1, "maximum": inputs.MAX_PAGE},
        },
    ]
    reaction = {
        "name": "reaction",
        "in": "path",
        "required": True,
        "description": "One of the reactions there are (`FEED_REACTIONS`)",
        "schema": {"type": "string", "enum": list(settings.reaction_set)},
    }
    toggle = {
        "parameters": [POST_ID, reaction],
        "responses": {
            "200": answer(
                "The caller's reaction, and the post's reactions now", ref("ReactionToggle")
            ),
            "404": ERROR,
            "410": ERROR,
            "429": TOO_MANY,
        },
    }
    return {
        "/api/channels": {
            "get": {
                "summary": "All channels",
                "responses": {
                    "200": answer(
                        "Channels by name",
                        {
                            "type": "object",
                            "properties": {"channels": {"type": "array", "items": ref("Channel")}},
                        },
                    )
                },
            },
            "post": {
                "summary": "Create a channel",
                "parameters": [IDEMPOTENCY_KEY],
                "requestBody": request_body("ChannelNew", settings),
                "responses": {
                    "201": {**CHANNEL_CHANGE, "headers": CREATED_HEADERS},
                    **{code: ERROR for code in ("400", "409", "413", "415", "422", "503")},
                },
            },
        },
        "/api/channels/{channel}": {
            "patch": {
                "summary": "Change a channel's title or description (its name stays)",
                "parameters": [CHANNEL],
                "requestBody": request_body("ChannelEdit", settings),
                "responses": {
                    "200": CHANNEL_CHANGE,
                    **{code: ERROR for code in ("400", "404", "413", "415", "422", "503")},
                },
            }
        },
        "/api/channels/{channel}/archive": {
            "post": {
                "summary": "Archive a channel: its posts stay, new posts are refused",
                **archive_op,
            }
        },
        "/api/channels/{channel}/restore": {
            "post": {"summary": "Restore an archived channel", **archive_op}
        },
        "/api/channels/{channel}/members": {
            "get": {
                "summary": "A channel's members (admins)",
                "parameters": [CHANNEL],
                "responses": {
                    "200": answer(
                        "Members by name",
                        {
                            "type": "object",
                            "properties": {
                                "channel": {"type": "string"},
                                "members": {"type": "array", "items": ref("Member")},
                            },
                        },
                    ),
                    "404": ERROR,
                },
            }
        },
        "/api/channels/{channel}/members/{name}": {
            "put": {
                "summary": "Make someone a member: they read a private channel, and "
                "post in an announcement-only one if may_post (admins)",
                "parameters": [CHANNEL, MEMBER],
                "requestBody": request_body("MemberEdit", settings),
                "responses": {
                    "200": answer("The membership", ref("Member")),
                    **{code: ERROR for code in ("400", "404", "413", "415", "422")},
                },
            },
            "delete": {
                "summary": "Take a membership away (admins)",
                "parameters": [CHANNEL, MEMBER],
                "responses": {"200": answer("Removed", {"type": "object"}), "404": ERROR},
            },
        },
        "/api/channels/{channel}/posts": {
            "get": {
                "summary": "A channel's posts, newest first",
                "parameters": [CHANNEL, *page],
                "responses": {
                    "200": answer(
                        "A page of posts",
                        {
                            "type": "object",
                            "properties": {
                                "posts": {"type": "array", "items": ref("Post")},
                                "next_before": {"type": ["integer", "null"]},
                            },
                        },
                    ),
                    "400": ERROR,
                    "404": ERROR,
                },
            },
            "post": {
                "summary": "Publish a post",
                "parameters": [CHANNEL, IDEMPOTENCY_KEY],
                "requestBody": request_body("NewPost", settings),
                "responses": {
                    "201": {
                        **answer("The new post and its event id", ref("Change")),
                        "headers": CREATED_HEADERS,
                    },
                    "400": ERROR,
                    "404": ERROR,
                    "409": ERROR,
                    "413": ERROR,
                    "415": ERROR,
                    "422": ERROR,
                },
            },
        },
        "/api/posts:batch": {"post": batch_operation(settings)},
        "/api/posts/{post_id}": post_ops,
        "/api/posts/{post_id}/replies": {
            "get": {
                "summary": "A post's replies, newest first",
                "parameters": [POST_ID, *page],
                "responses": {
                    "200": answer(
                        "A page of replies",
                        {
                            "type": "object",
                            "properties": {
                                "replies": {"type": "array", "items": ref("Post")},
                                "next_before": {"type": ["integer", "null"]},
                            },
                        },
                    ),
                    **{code: ERROR for code in ("400", "404", "410", "422")},
                },
            },
            "post": {
                "summary": "Reply to a post (one level: a reply to a reply is refused)",
                "parameters": [POST_ID, IDEMPOTENCY_KEY],
                "requestBody": request_body("NewPost", settings),
                "responses": {
                    "201": {
                        **answer("The new reply and its event id", ref("Change")),
                        "headers": CREATED_HEADERS,
                    },
                    **{code: ERROR for code in ("400", "404", "409", "410", "413", "415", "422")},
                },
            },
        },
        "/api/posts/{post_id}/pin": {"post": {"summary": "Pin a post", **pin_op}},
        "/api/posts/{post_id}/unpin": {"post": {"summary": "Unpin a post", **pin_op}},
        "/api/posts/{post_id}/reactions": {
            "get": {
                "summary": "Who reacted to a post with what, in the order they did",
                "parameters": [POST_ID],
                "responses": {
                    "200": answer(
                        "Each reaction with its count and names, and the caller's own",
                        {
                            "type": "object",
                            "required": ["post", "reactions", "mine"],
                            "properties": {
                                "post": {"type": "integer"},
                                "reactions": {"type": "array", "items": ref("ReactionCount")},
                                "mine": {"type": "array", "items": {"type": "string"}},
                            },
                        },
                    ),
                    "404": ERROR,
                },
            }
        },
        "/api/posts/{post_id}/reactions/{reaction}": {
            "put": {"summary": "Give the caller's reaction to a post (idempotent)", **toggle},
            "delete": {"summary": "Take the caller's reaction back (idempotent)", **toggle},
        },
        "/api/presence": {
            "get": {
                "summary": "Screens watching, summed over every process",
                "responses": {
                    "200": answer(
                        "Open streams, and per channel how many receive it",
                        {
                            "type": "object",
                            "required": ["streams", "watching", "workers"],
                            "properties": {
                                "streams": {"type": "integer"},
                                "watching": {
                                    "type": "object",
                                    "additionalProperties": {"type": "integer"},
                                },
                                "workers": {"type": "integer"},
                                "stale_after_seconds": {"type": "number"},
                            },
                        },
                    )
                },
            }
        },
        "/api/search": {"get": SEARCH},
        **read_state_paths(settings),
        "/healthz": {
            "get": {
                "summary": "Whether the process answers",
                "responses": {"200": answer("Alive", {"type": "object"})},
            }
        },
        "/readyz": {
            "get": {
                "summary": "Whether the database answers and the broker is connected",
                "responses": {
                    "200": answer("Ready", ref("Readiness")),
                    "503": answer("Not ready; the body says which part", ref("Readiness")),
                },
            }
        },
        "/events": {
            "get": {
                "summary": "The event stream (text/event-stream)",
                "parameters": [
                    {
                        "name": "format",
                        "in": "query",
                        "schema": {"type": "string", "enum": [f.value for f in Format]},
                    },
                    CHANNELS,
                    {
                        "name": "thread",
                        "in": "query",
                        "description": "Only this top-level post's events and its replies'",
                        "schema": ID,
                    },
                    {**Q, "description": "Only changes to posts that match this search"},
                    {"name": "last_event_id", "in": "query", "schema": EVENT_ID},
                    {
                        "name": "only",
                        "in": "query",
                        "description": "mentions: only the requester's mentions",
                        "schema": {"type": "string", "enum": list(reading.STREAM_ONLY)},
                    },
                    {"name": "Last-Event-ID", "in": "header", "schema": EVENT_ID},
                ],
                "responses": {
                    "200": {
                        "description": "An endless stream of events",
                        "content": {"text/event-stream": {"schema": {"type": "string"}}},
                    },
                    "400": ERROR,
                    "404": ERROR,
                },
            }
        },
    }
