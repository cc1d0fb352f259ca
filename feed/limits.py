"""The limits and patterns a request's input is held to. The API enforces them and the
OpenAPI document states them, both from here, so the two always agree."""

from __future__ import annotations

import re

# Posts in one page the API answers with.
MAX_PAGE = 200
MAX_TITLE_CHARS = 200
MAX_DESCRIPTION_CHARS = 2000
# Names appear in URLs, kiosk links and scripts, so they are short, lower-case slugs.
MAX_CHANNEL_NAME_CHARS = 64
CHANNEL_NAME = re.compile(rf"[a-z0-9][a-z0-9_-]{{0,{MAX_CHANNEL_NAME_CHARS - 1}}}")
# Ids are 64-bit in both databases; a larger number is no id at all (not a 500).
MAX_ID = 2**63 - 1
# Request bodies are flat objects; nesting this deep is no request feed knows.
MAX_JSON_DEPTH = 32
MAX_IDEMPOTENCY_KEY_CHARS = 255
IDEMPOTENCY_KEY = re.compile(rf"[\x21-\x7e]{{1,{MAX_IDEMPOTENCY_KEY_CHARS}}}")
