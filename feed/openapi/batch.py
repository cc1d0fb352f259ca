"""The batch operation in the OpenAPI document (batch.py serves it): many posts and
replies in one request, its envelope's limits and its ``Prefer`` header."""

from __future__ import annotations

from typing import Any

from feed import batch_input, inputs
from feed.limits import MAX_BATCH_ITEMS
from feed.openapi.parts import ERROR, answer, ref
from feed.settings import Settings


def batch_operation(settings: Settings) -> dict[str, Any]:
    """``POST /api/posts:batch`` (batch.py): its envelope's limits are batch_input.py's."""
    limit = batch_input.batch_bytes(settings.max_body_bytes)
    items = {
        "type": "array",
        "minItems": 1,
        "maxItems": MAX_BATCH_ITEMS,
        "items": ref("BatchItem"),
    }
    ndjson = {
        "type": "string",
        "description": "One BatchItem object a line, in UTF-8; a line that is not UTF-8, "
        "or not JSON, gets its own 400 result",
    }
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
        f"{MAX_BATCH_ITEMS} posts and replies; one result per item, in order",
        "parameters": [prefer],
        "requestBody": {
            "required": True,
            "description": f"A JSON array, or NDJSON, of at most {MAX_BATCH_ITEMS} "
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
