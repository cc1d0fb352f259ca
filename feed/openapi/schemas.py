"""The shapes in the OpenAPI document: what the API's bodies and answers hold
(shapes.py writes the answers, inputs.py checks the bodies)."""

from __future__ import annotations

from typing import Any

from feed import batch_input, inputs
from feed.openapi.parts import ACCESS_FLAGS, ref, text_schema
from feed.settings import Settings


def schemas(settings: Settings) -> dict[str, Any]:
    """The document's ``components.schemas``."""
    text = text_schema(settings.max_post_chars)
    title = text_schema(inputs.MAX_TITLE_CHARS)
    description = text_schema(inputs.MAX_DESCRIPTION_CHARS)
    return {
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
                "replies",
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
                "channel": ref("Channel"),
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
                "parent",
                "replies",
                "repliers",
                "reactions",
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
                "parent": {
                    "type": ["integer", "null"],
                    "description": "The post this one replies to; null for a top-level post",
                },
                "replies": {"type": "integer", "description": "Live replies to this post"},
                "repliers": {
                    "type": "array",
                    "items": {"type": "string"},
                    "description": "Who wrote the latest replies, newest first, at most 3",
                },
                "reactions": {
                    "type": "array",
                    "items": ref("ReactionCount"),
                    "description": "Its reactions, in the order first made, with the first "
                    "names of each",
                },
                "mine": {
                    "type": "array",
                    "items": {"type": "string"},
                    "description": "The caller's own reactions (in API answers, not streams)",
                },
            },
        },
        "ReactionCount": {
            "type": "object",
            "required": ["reaction", "count", "names"],
            "properties": {
                "reaction": {"type": "string"},
                "count": {"type": "integer", "minimum": 0},
                "names": {"type": "array", "items": {"type": "string"}},
            },
        },
        "ReactionToggle": {
            "type": "object",
            "required": ["post", "reaction", "reacted", "changed", "reactions", "mine"],
            "properties": {
                "post": {"type": "integer"},
                "reaction": {"type": "string"},
                "reacted": {"type": "boolean", "description": "Whether the caller has it now"},
                "changed": {"type": "boolean", "description": "False if it already was so"},
                "reactions": {"type": "array", "items": ref("ReactionCount")},
                "mine": {"type": "array", "items": {"type": "string"}},
                "event_id": {
                    "type": ["integer", "null"],
                    "description": "The event that reports it; null while the post's "
                    "reaction window gathers toggles, or if nothing changed",
                },
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
        "BatchItem": {
            "type": "object",
            "additionalProperties": False,
            "required": ["body"],
            "description": "A post (with `channel`) or a reply (with `parent`), as a single "
            "POST would send it: one of the two, not both",
            "properties": {
                "channel": {"type": "string"},
                "parent": {"type": "integer", "minimum": 1, "maximum": inputs.MAX_ID},
                "idempotency_key": {
                    "type": "string",
                    "pattern": f"^{inputs.IDEMPOTENCY_KEY.pattern}$",
                    "description": "This item's Idempotency-Key: the same as the header of "
                    "its single POST",
                },
                "author": {"type": "string"},
                "body": text,
            },
        },
        "BatchResult": {
            "type": "object",
            "required": ["status"],
            "description": "What the item's single POST would answer: its status, and "
            "either `post`, `event_id` and `replayed`, or `error` and `detail`; with "
            f"`Prefer: {batch_input.PREFER_MINIMAL}`, `id` and `channel` instead of `post`",
            "properties": {
                "status": {"type": "integer"},
                "post": ref("Post"),
                "id": {"type": "integer", "description": "The post's id (minimal answer)"},
                "channel": {"type": "string", "description": "Its channel (minimal answer)"},
                "event_id": {"type": ["integer", "null"]},
                "replayed": {"type": "boolean"},
                "error": {"type": "string"},
                "detail": {},
            },
        },
        "PostEdit": {
            "type": "object",
            "additionalProperties": False,
            "required": ["body"],
            "properties": {"body": text},
        },
        "ReadMarkEdit": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "up_to": {
                    "type": "integer",
                    "minimum": 0,
                    "maximum": inputs.MAX_ID,
                    "description": "The newest event id read, taken as the channel's "
                    "newest event at or before it. Not sent: the channel's newest event.",
                }
            },
        },
        "ReadMark": {
            "type": "object",
            "required": ["channel", "read_up_to", "event_id"],
            "properties": {
                "channel": {"type": "string"},
                "read_up_to": {"type": "integer"},
                "event_id": {
                    "type": ["integer", "null"],
                    "description": "The personal event the move logged; null if it did not "
                    "move (positions only move forward)",
                },
            },
        },
        "Nothing": {"type": "object", "additionalProperties": False, "properties": {}},
        "Unread": {
            "type": "object",
            "required": ["channels", "total", "mentions", "cap"],
            "properties": {
                "channels": {
                    "type": "object",
                    "additionalProperties": {
                        "type": "object",
                        "required": ["unread", "mentions", "read_up_to"],
                        "properties": {
                            k: {"type": "integer"} for k in ("unread", "mentions", "read_up_to")
                        },
                    },
                },
                "total": {"type": "integer"},
                "mentions": {"type": "integer"},
                "cap": {
                    "type": "integer",
                    "description": "Each channel's counts stop here: a count this large "
                    "means this many or more.",
                },
            },
        },
        "Mention": {
            "type": "object",
            "required": ["event_id", "unread", "post"],
            "properties": {
                "event_id": {"type": "integer"},
                "unread": {"type": "boolean"},
                "post": ref("Post"),
            },
        },
        "Change": {
            "type": "object",
            "required": ["post", "event_id"],
            "properties": {"post": ref("Post"), "event_id": {"type": ["integer", "null"]}},
        },
    }
