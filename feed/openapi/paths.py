"""The operations in the OpenAPI document: every path the API, the probes and the
stream serve, with what each takes and answers."""

from __future__ import annotations

from typing import Any

from feed import inputs, reading
from feed.openapi.batch import batch_operation
from feed.openapi.parts import (
    CHANGE,
    CHANNEL,
    CHANNEL_CHANGE,
    CHANNELS,
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
from feed.openapi.search import SEARCH, Q
from feed.settings import Settings
from feed.sse import Format

# An event id to resume after, as inputs.resume_id reads it: 0 is before every event.
EVENT_ID = {"type": "integer", "minimum": 0, "maximum": inputs.MAX_ID}


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
                        "description": "Only this top-level post's events and its replies'. "
                        "A thread the requester may not read, a reply's id and a deleted "
                        "post are 404, except that a resume from before the post's "
                        "deletion replays what it missed, ending with the post's "
                        "post-deleted. The stream ends right after the post's "
                        "post-deleted, live or replayed",
                        "schema": ID,
                    },
                    {
                        **Q,
                        "description": "Only changes to posts that match this search, "
                        "and to the replies of those posts. A client follows at most "
                        "FEED_MAX_LIVE_SEARCHES_PER_CLIENT different ones (429 beyond), "
                        "a server FEED_MAX_LIVE_SEARCHES (503 beyond)",
                    },
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
                        "description": "An endless stream of events (a thread's ends "
                        "after its post's post-deleted)",
                        "content": {"text/event-stream": {"schema": {"type": "string"}}},
                    },
                    "400": ERROR,
                    "404": answer(
                        "No such channel or thread for this requester (a deleted post's "
                        "thread: unless resumed from before its deletion); `error` says "
                        "which.",
                        ref("Error"),
                    ),
                    "429": TOO_MANY,
                    "503": ERROR,
                },
            }
        },
    }
