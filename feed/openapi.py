"""The OpenAPI 3.1 description of the JSON API and the stream, served at ``/openapi.json``.

Its limits and patterns are the ones the API enforces, taken from inputs.py and the
settings, never written here a second time."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from feed import __version__, inputs
from feed.runtime import runtime
from feed.settings import Settings


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": schema}}}


def _answer(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"description": description}
    if schema is not None:
        out.update(_json(schema))
    return out


ERROR = _answer("The request was refused; `error` says why.", _ref("Error"))
CHANGE = _answer(
    "The post as it is now, and the event id of the change (null if none).", _ref("Change")
)
CHANNEL_CHANGE = _answer(
    "The channel as it is now, and the event id of the change (null if none).",
    _ref("ChannelChange"),
)
ID = {"type": "integer", "minimum": 1, "maximum": inputs.MAX_ID}
POST_ID = {"name": "post_id", "in": "path", "required": True, "schema": ID}
CHANNEL = {"name": "channel", "in": "path", "required": True, "schema": {"type": "string"}}
MEMBER = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
ACCESS_FLAGS = ("private", "announcement_only")
UNAUTHORIZED = _answer(
    "No credential where one is needed, or one that is not valid (unknown, revoked or "
    "expired); `error` says which.",
    _ref("Error"),
)
FORBIDDEN = _answer("The identity may not do this; `error` says why.", _ref("Error"))
KIOSK_KEY = {
    "name": "key",
    "in": "query",
    "description": "A kiosk link's key (`feed kiosk create`), for screens that cannot sign in",
    "schema": {"type": "string"},
}
IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "description": "Makes a retry return the first answer instead of writing again; the "
    "same key with another request is refused (422). Keys are kept for 24 hours, each "
    "as its sender's: another identity's same key is another request.",
    "schema": {"type": "string", "pattern": f"^{inputs.IDEMPOTENCY_KEY.pattern}$"},
}
RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait", "schema": {"type": "integer"}}}
CREATED_HEADERS = {
    "Location": {"description": "Where the new resource is", "schema": {"type": "string"}},
    "Idempotent-Replayed": {
        "description": "`true` when this is the stored answer to an earlier request "
        "with the same Idempotency-Key",
        "schema": {"type": "string", "enum": ["true"]},
    },
}
UNAVAILABLE = {
    **_answer(
        "The database is unavailable, busy, read-only or full; `error` says which.", _ref("Error")
    ),
    "headers": RETRY_AFTER,
}
TOO_MANY = {
    **_answer("Over a per-client limit; `error` says which.", _ref("Error")),
    "headers": RETRY_AFTER,
}


def _text(max_chars: int) -> dict[str, Any]:
    return {"type": "string", "minLength": 1, "maxLength": max_chars}


def _body(schema: str, settings: Settings) -> dict[str, Any]:
    """A JSON request body, with the limits read_json holds every body to."""
    return {
        "required": True,
        "description": f"A JSON object of at most {settings.max_body_bytes} bytes, nested at "
        f"most {inputs.MAX_JSON_DEPTH} levels deep (413 and 400 beyond).",
        **_json(_ref(schema)),
    }


def document(settings: Settings) -> dict[str, Any]:
    text = _text(settings.max_post_chars)
    title, description = _text(inputs.MAX_TITLE_CHARS), _text(inputs.MAX_DESCRIPTION_CHARS)
    schemas: dict[str, Any] = {
        "Error": {
            "type": "object",
            "required": ["error", "detail"],
            "properties": {"error": {"type": "string"}, "detail": {}},
        },
        "Readiness": {
            "type": "object",
            "required": ["status", "down", "database", "broker"],
            "properties": {
                "status": {"type": "string", "enum": ["ready", "unavailable"]},
                # What is down, never why: the reasons are logged (health.py).
                "down": {
                    "type": "array",
                    "items": {"type": "string", "enum": ["database", "broker"]},
                },
                "database": {"type": "object"},
                "broker": {"type": "object"},
                "last_event_delivered": {"type": "integer"},
                "subscribers": {"type": "integer"},
            },
        },
        "Channel": {
            "type": "object",
            "required": [
                "name",
                "title",
                "description",
                "archived",
                "private",
                "announcement_only",
            ],
            "properties": {
                **{k: {"type": "string"} for k in ("name", "title", "description")},
                **{k: {"type": "boolean"} for k in ACCESS_FLAGS},
                "archived": {"type": "boolean"},
            },
        },
        "ChannelNew": {
            "type": "object",
            "required": ["name", "title"],
            "additionalProperties": False,
            "properties": {
                "name": {
                    "type": "string",
                    "maxLength": inputs.MAX_CHANNEL_NAME_CHARS,
                    "pattern": f"^{inputs.CHANNEL_NAME.pattern}$",
                },
                "title": title,
                "description": description,
                **{k: {"type": "boolean"} for k in ACCESS_FLAGS},
            },
        },
        "ChannelEdit": {
            "type": "object",
            "minProperties": 1,
            "additionalProperties": False,
            "properties": {
                "title": title,
                "description": description,
                **{k: {"type": "boolean"} for k in ACCESS_FLAGS},
            },
        },
        "Member": {
            "type": "object",
            "required": ["name", "may_post"],
            "properties": {"name": {"type": "string"}, "may_post": {"type": "boolean"}},
        },
        "MemberEdit": {
            "type": "object",
            "additionalProperties": False,
            "properties": {"may_post": {"type": "boolean"}},
        },
        "ChannelChange": {
            "type": "object",
            "required": ["channel", "event_id"],
            "properties": {
                "channel": _ref("Channel"),
                "event_id": {"type": ["integer", "null"]},
            },
        },
        "Post": {
            "type": "object",
            "required": [
                "id",
                "channel",
                "author",
                "body",
                "created_at",
                "edited_at",
                "pinned",
                "deleted",
                "html",
            ],
            "properties": {
                "id": {"type": "integer"},
                "channel": {"type": "string"},
                "author": {"type": "string"},
                "body": {"type": "string", "description": "Markdown source"},
                "html": {"type": "string", "description": "The body as sanitised HTML"},
                "created_at": {"type": "string", "format": "date-time"},
                "edited_at": {"type": ["string", "null"], "format": "date-time"},
                "pinned": {"type": "boolean"},
                "deleted": {"type": "boolean"},
            },
        },
        "NewPost": {
            "type": "object",
            "additionalProperties": False,
            "required": ["body"],
            "properties": {
                "author": {
                    "type": "string",
                    "description": "Optional; if sent, the name of the token's identity, "
                    "which is the author",
                },
                "body": text,
            },
        },
        "PostEdit": {
            "type": "object",
            "additionalProperties": False,
            "required": ["body"],
            "properties": {"body": text},
        },
        "Change": {
            "type": "object",
            "required": ["post", "event_id"],
            "properties": {"post": _ref("Post"), "event_id": {"type": ["integer", "null"]}},
        },
    }
    post_ops = {
        "get": {
            "summary": "One post",
            "parameters": [POST_ID],
            "responses": {
                "200": _answer(
                    "The post", {"type": "object", "properties": {"post": _ref("Post")}}
                ),
                "404": ERROR,
            },
        },
        "patch": {
            "summary": "Edit a post's body",
            "parameters": [POST_ID],
            "requestBody": _body("PostEdit", settings),
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
    pin_op = {"parameters": [POST_ID], "responses": {"200": CHANGE, "404": ERROR, "410": ERROR}}
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "feed",
            "version": __version__,
            "description": "Posts persisted in SQL and streamed as Server-Sent Events.",
        },
        "paths": {
            "/api/channels": {
                "get": {
                    "summary": "All channels",
                    "responses": {
                        "200": _answer(
                            "Channels by name",
                            {
                                "type": "object",
                                "properties": {
                                    "channels": {"type": "array", "items": _ref("Channel")}
                                },
                            },
                        )
                    },
                },
                "post": {
                    "summary": "Create a channel",
                    "parameters": [IDEMPOTENCY_KEY],
                    "requestBody": _body("ChannelNew", settings),
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
                    "requestBody": _body("ChannelEdit", settings),
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
                        "200": _answer(
                            "Members by name",
                            {
                                "type": "object",
                                "properties": {
                                    "channel": {"type": "string"},
                                    "members": {"type": "array", "items": _ref("Member")},
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
                    "requestBody": _body("MemberEdit", settings),
                    "responses": {
                        "200": _answer("The membership", _ref("Member")),
                        **{code: ERROR for code in ("400", "404", "413", "415", "422")},
                    },
                },
                "delete": {
                    "summary": "Take a membership away (admins)",
                    "parameters": [CHANNEL, MEMBER],
                    "responses": {"200": _answer("Removed", {"type": "object"}), "404": ERROR},
                },
            },
            "/api/channels/{channel}/posts": {
                "get": {
                    "summary": "A channel's posts, newest first",
                    "parameters": [
                        CHANNEL,
                        {
                            "name": "before",
                            "in": "query",
                            "schema": ID,
                        },
                        {
                            "name": "limit",
                            "in": "query",
                            "schema": {"type": "integer", "minimum": 1, "maximum": inputs.MAX_PAGE},
                        },
                    ],
                    "responses": {
                        "200": _answer(
                            "A page of posts",
                            {
                                "type": "object",
                                "properties": {
                                    "posts": {"type": "array", "items": _ref("Post")},
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
                    "requestBody": _body("NewPost", settings),
                    "responses": {
                        "201": {
                            **_answer("The new post and its event id", _ref("Change")),
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
            "/api/posts/{post_id}": post_ops,
            "/api/posts/{post_id}/pin": {"post": {"summary": "Pin a post", **pin_op}},
            "/api/posts/{post_id}/unpin": {"post": {"summary": "Unpin a post", **pin_op}},
            "/api/presence": {
                "get": {
                    "summary": "Screens watching, summed over every process",
                    "responses": {
                        "200": _answer(
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
            "/healthz": {
                "get": {
                    "summary": "Whether the process answers",
                    "responses": {"200": _answer("Alive", {"type": "object"})},
                }
            },
            "/readyz": {
                "get": {
                    "summary": "Whether the database answers and the broker is connected",
                    "responses": {
                        "200": _answer("Ready", _ref("Readiness")),
                        "503": _answer("Not ready; the body says which part", _ref("Readiness")),
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
                            "schema": {"type": "string", "enum": ["html", "json", "text"]},
                        },
                        {
                            "name": "channel",
                            "in": "query",
                            "style": "form",
                            "explode": True,
                            "schema": {"type": "array", "items": {"type": "string"}},
                        },
                        {
                            "name": "last_event_id",
                            "in": "query",
                            "schema": {"type": "integer", "minimum": 0},
                        },
                        {
                            "name": "Last-Event-ID",
                            "in": "header",
                            "schema": {"type": "integer", "minimum": 0},
                        },
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
        },
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "token": {"type": "http", "scheme": "bearer", "description": "feed token create"},
                "session": {"type": "apiKey", "in": "cookie", "name": "feed_session"},
            },
        },
        # Reading public channels needs nothing unless FEED_ANONYMOUS_READ is off.
        "security": [{"token": []}, {"session": []}, {}],
    }
    return _with_access(_with_limits(doc))


def _with_access(doc: dict[str, Any]) -> dict[str, Any]:
    """401 and 403 wherever the API checks who asks (access.py)."""
    for path, operations in doc["paths"].items():
        if path.startswith("/api/") or path == "/events":
            for operation in operations.values():
                operation["responses"]["401"] = UNAUTHORIZED
                operation["responses"]["403"] = FORBIDDEN
    doc["paths"]["/events"]["get"]["parameters"].append(KIOSK_KEY)
    return doc


def _with_limits(doc: dict[str, Any]) -> dict[str, Any]:
    """Answers that operations give besides their own: 503 from anything that reads or
    writes the database, 429 where a per-client limit applies (security.py)."""
    for path, operations in doc["paths"].items():
        if path.startswith("/api/") or path == "/events":
            for operation in operations.values():
                operation["responses"]["503"] = UNAVAILABLE
    doc["paths"]["/api/channels/{channel}/posts"]["post"]["responses"]["429"] = TOO_MANY
    doc["paths"]["/events"]["get"]["responses"]["429"] = TOO_MANY
    return doc


async def endpoint(request: Request) -> JSONResponse:
    return JSONResponse(document(runtime(request).settings))
