"""The one place errors become HTTP answers.

Every error a client can cause gets a JSON body ``{"error": ..., "detail": ...}``:
``error`` is a sentence naming the problem, ``detail`` says where (a field, a
value) when that helps. Nothing a client sends is answered with a 500.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Match, Mount, Route
from starlette.staticfiles import StaticFiles

from feed.storage.refusals import (
    ChannelArchived,
    ChannelExists,
    ChannelNotFound,
    IdempotencyKeyReused,
    NotAThread,
    PostDeleted,
    PostNotFound,
    ReplyNotPinned,
    StoreError,
    StoreUnavailable,
    Unstorable,
)

logger = logging.getLogger("feed.errors")


class ClientError(Exception):
    """A request feed will not serve, with the status and message to answer it with."""

    def __init__(
        self,
        status: int,
        message: str,
        detail: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.detail = detail
        self.headers = headers


def error_body(message: str, detail: Any = None) -> dict[str, Any]:
    """What every refusal's JSON says."""
    return {"error": message, "detail": detail}


def error_response(
    status: int, message: str, detail: Any = None, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(error_body(message, detail), status_code=status, headers=headers)


_STORE_STATUS: dict[type[StoreError], int] = {
    ChannelNotFound: 404,
    ChannelExists: 409,
    ChannelArchived: 409,
    PostNotFound: 404,
    PostDeleted: 410,
    NotAThread: 422,
    ReplyNotPinned: 422,
    IdempotencyKeyReused: 422,
    Unstorable: 422,
    StoreUnavailable: 503,
}

# How long a client should wait before retrying a request feed could not serve now.
RETRY_AFTER_SECONDS = 2


def unavailable(message: str) -> JSONResponse:
    """A 503 that says when to retry: every answer for "not now" is made here."""
    return error_response(503, message, headers={"Retry-After": str(RETRY_AFTER_SECONDS)})


async def on_client_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ClientError)
    return error_response(exc.status, exc.message, exc.detail, exc.headers)


def store_status(exc: StoreError) -> int:
    """The status a store's refusal is answered with."""
    return _STORE_STATUS.get(type(exc), 400)


async def on_store_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StoreError)
    status = store_status(exc)
    if status == 503:
        return unavailable(str(exc))
    return error_response(status, str(exc))


async def on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    messages = {404: "Not found.", 405: "Method not allowed."}
    message = messages.get(exc.status_code, str(exc.detail))
    headers = exc.headers
    allowed = allowed_methods(request) if exc.status_code == 405 else []
    if allowed:
        headers = {**(headers or {}), "Allow": ", ".join(allowed)}
    return error_response(exc.status_code, message, None, headers=headers)


# What Starlette's static files answer (their 405 names nothing).
STATIC_METHODS = ("GET", "HEAD")


def allowed_methods(request: Request) -> list[str]:
    """Every method the request's path takes, from every route on it. Starlette's 405
    names only the first route that matched the path, and several routes share one
    (a channel's posts: GET by one, POST by another)."""
    methods: set[str] = set()
    router = request.scope["app"].router
    for route in router.routes:
        match = route.matches(request.scope)[0]
        static = isinstance(route, Mount) and isinstance(route.app, StaticFiles)
        if isinstance(route, Route) and match is not Match.NONE:
            methods.update(route.methods or ())
        elif static and match is Match.FULL:
            methods.update(STATIC_METHODS)
    return sorted(methods)


# What the access log says of a request whose client left, or was cut off for sending
# its body too slowly, before it was read: nobody is left to answer.
CLIENT_GONE = 499


async def on_client_gone(_request: Request, _exc: Exception) -> Response:
    return Response(status_code=CLIENT_GONE)


async def on_unexpected(_request: Request, exc: Exception) -> Response:
    logger.exception("unhandled error", exc_info=exc)
    return error_response(500, "Internal error; it has been logged.")


Handler = Callable[[Request, Exception], Awaitable[Response]]
Handlers = Mapping[type[Exception], Handler]

HANDLERS: dict[type[Exception], Handler] = {
    ClientError: on_client_error,
    StoreError: on_store_error,
    HTTPException: on_http_error,
    ClientDisconnect: on_client_gone,
    Exception: on_unexpected,
}


def handler_for(handlers: Handlers, exc: Exception) -> tuple[Handler, bool]:
    """The handler Starlette would choose for ``exc`` (the nearest class in its MRO),
    and whether the error was expected: one handled for ``Exception`` itself is not,
    and Starlette raises it on after answering, for the server to log."""
    for cls in type(exc).__mro__:
        found = handlers.get(cls)
        if found is not None:
            return found, cls is not Exception
    return on_unexpected, False
