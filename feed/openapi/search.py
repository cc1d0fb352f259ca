"""The search operation in the OpenAPI document (search.py's language, search_params.py's
parameters): a search's query, its filters and its page of results."""

from __future__ import annotations

from feed import search
from feed.limits import MAX_SEARCH_PAGE
from feed.openapi.parts import CHANNELS, ERROR, TOO_MANY, answer, ref

# A search as search_params.search_query reads it (the language: feed/search.py).
Q = {
    "name": "q",
    "in": "query",
    "schema": {"type": "string", "maxLength": search.MAX_QUERY_CHARS},
    "description": 'Words, "phrases", prefixes (depl*) and exclusions (-word); all must hold',
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
            "schema": {"type": "integer", "minimum": 1, "maximum": MAX_SEARCH_PAGE},
        },
        {
            "name": "cursor",
            "in": "query",
            "description": "The next_cursor of the page before, as it was given. Paging on"
            " shows each post once while results already shown are deleted or edited (an"
            " edited post is ranked anew).",
            "schema": {"type": "string", "maxLength": 120},
        },
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
        "429": TOO_MANY,
    },
}
