"""The pieces the OpenAPI document repeats: answers, parameters and headers, and the
shapes of text fields and request bodies, with their limits taken from inputs.py."""

from __future__ import annotations

from typing import Any

from feed import inputs
from feed.limits import MAX_POST_ID
from feed.settings import Settings


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def json_content(schema: dict[str, Any]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": schema}}}


def answer(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"description": description}
    if schema is not None:
        out.update(json_content(schema))
    return out


ERROR = answer("The request was refused; `error` says why.", ref("Error"))
CHANGE = answer(
    "The post as it is now, and the event id of the change (null if none).", ref("Change")
)
CHANNEL_CHANGE = answer(
    "The channel as it is now, and the event id of the change (null if none).",
    ref("ChannelChange"),
)
# A post's id.
ID = {"type": "integer", "minimum": 1, "maximum": MAX_POST_ID}
# An event id to page back from, as a mention's in /api/me/mentions?before=.
EVENT_BEFORE = {"type": "integer", "minimum": 1, "maximum": inputs.MAX_ID}
POST_ID = {"name": "post_id", "in": "path", "required": True, "schema": ID}
CHANNEL = {"name": "channel", "in": "path", "required": True, "schema": {"type": "string"}}
MEMBER = {
    "name": "name",
    "in": "path",
    "required": True,
    "description": "The member's name, percent-encoded: a name may hold a /, sent as %2F.",
    "schema": {"type": "string"},
}
ACCESS_FLAGS = ("private", "announcement_only", "replies")
UNAUTHORIZED = answer(
    "No credential where one is needed, or one that is not valid (unknown, revoked or "
    "expired); `error` says which.",
    ref("Error"),
)
FORBIDDEN = answer("The identity may not do this; `error` says why.", ref("Error"))
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
    **answer(
        "The database is unavailable, busy, read-only or full; `error` says which.", ref("Error")
    ),
    "headers": RETRY_AFTER,
}
TOO_MANY = {
    **answer("Over a per-client limit; `error` says which.", ref("Error")),
    "headers": RETRY_AFTER,
}


def text_schema(max_chars: int) -> dict[str, Any]:
    """A text field of at most ``max_chars`` characters (inputs.text_field)."""
    return {"type": "string", "minLength": 1, "maxLength": max_chars}


def request_body(schema: str, settings: Settings) -> dict[str, Any]:
    """A JSON request body, with the limits inputs.read_json holds every body to."""
    return {
        "required": True,
        "description": f"A JSON object of at most {settings.max_body_bytes} bytes, nested at "
        f"most {inputs.MAX_JSON_DEPTH} levels deep (413 and 400 beyond).",
        **json_content(ref(schema)),
    }


# Channels to follow or search in: `?channel=a&channel=b`.
CHANNELS = {
    "name": "channel",
    "in": "query",
    "style": "form",
    "explode": True,
    "schema": {"type": "array", "items": {"type": "string"}},
}
