"""The read-state operations in the OpenAPI document (unread.py serves them): what a
person has not read, marking it read, and their mentions."""

from __future__ import annotations

from typing import Any

from feed import inputs
from feed.openapi.parts import CHANNEL, ERROR, EVENT_BEFORE, answer, ref, request_body
from feed.settings import Settings


def read_state_paths(settings: Settings) -> dict[str, Any]:
    return {
        "/api/me/unread": {
            "get": {
                "summary": "What the requester has not read, per channel they may read",
                "description": "A channel's `unread` counts the posts and replies by others "
                "after the requester's position in it, neither deleted",
                "responses": {
                    "200": answer("Unread posts and replies, and mentions", ref("Unread"))
                },
            }
        },
        "/api/me/read": {
            "post": {
                "summary": "Mark every channel the requester may read as read",
                "requestBody": request_body("Nothing", settings),
                "responses": {
                    "200": answer(
                        "Each channel's position now",
                        {"type": "object", "properties": {"channels": {"type": "object"}}},
                    ),
                    **{code: ERROR for code in ("400", "413", "415", "422")},
                },
            }
        },
        "/api/me/mentions": {
            "get": {
                "summary": "Posts that mention the requester, newest first",
                "parameters": [
                    {"name": "before", "in": "query", "schema": EVENT_BEFORE},
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": inputs.MAX_PAGE},
                    },
                ],
                "responses": {
                    "200": answer(
                        "A page of mentions",
                        {
                            "type": "object",
                            "properties": {
                                "mentions": {"type": "array", "items": ref("Mention")},
                                "next_before": {"type": ["integer", "null"]},
                            },
                        },
                    ),
                    "400": ERROR,
                },
            }
        },
        "/api/channels/{channel}/read": {
            "post": {
                "summary": "Move the requester's read position in a channel forward",
                "parameters": [CHANNEL],
                "requestBody": request_body("ReadMarkEdit", settings),
                "responses": {
                    "200": answer("The position now", ref("ReadMark")),
                    **{code: ERROR for code in ("400", "404", "413", "415", "422")},
                },
            }
        },
    }
