"""The OpenAPI 3.1 description of the JSON API and the stream, served at ``/openapi.json``.

Its limits and patterns are the ones the API enforces, taken from inputs.py and the
settings, never written here a second time. The operations are in paths.py, the
shapes in schemas.py, and the pieces both repeat in parts.py."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from feed import __version__
from feed.openapi.parts import FORBIDDEN, KIOSK_KEY, TOO_MANY, UNAUTHORIZED, UNAVAILABLE
from feed.openapi.paths import paths
from feed.openapi.schemas import schemas
from feed.runtime import runtime
from feed.settings import Settings


def document(settings: Settings) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "feed",
            "version": __version__,
            "description": "Posts persisted in SQL and streamed as Server-Sent Events.",
        },
        "paths": paths(settings),
        "components": {
            "schemas": schemas(settings),
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
