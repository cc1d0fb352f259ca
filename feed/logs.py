"""Logging: one line per request and per stream, as text or JSON, with a request id.

Rationale:

1. Every request gets an id: the client's ``X-Request-ID`` when it sent a sane one
   (so a proxy's id carries through), otherwise a new one. It is answered in the
   ``X-Request-ID`` header and attached to every log line written while the
   request is handled, through a context variable, so a line from the store or
   the stream can be matched to the request that caused it.
2. uvicorn's access log is off: feed writes its own request line, with the
   duration, and a stream gets an "opened" line and a "closed" line with how long
   it lasted and how many events it carried, instead of one line when it opened.
3. ``FEED_LOG_FORMAT=json`` writes one JSON object per line, with the message's
   structured fields (method, path, status, duration_ms...) as keys, for log
   shippers; ``text`` is for people.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import time
from collections.abc import Iterable
from contextvars import ContextVar
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

request_id: ContextVar[str] = ContextVar("feed_request_id", default="-")
# When the request being handled arrived (time.perf_counter), for latency metrics.
request_started: ContextVar[float | None] = ContextVar("feed_request_started", default=None)

access = logging.getLogger("feed.access")

HEADER = b"x-request-id"
_SANE_ID = re.compile(rb"[A-Za-z0-9._:-]{1,128}")
# Attributes every LogRecord has; anything else was passed in ``extra``.
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "request_id"}


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", "-"),
        }
        entry.update((k, v) for k, v in record.__dict__.items() if k not in _STANDARD)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def configure(level: str, fmt: str) -> None:
    """Send every logger, uvicorn's included, to one stderr handler."""
    handler = logging.StreamHandler()
    handler.addFilter(_RequestIdFilter())
    if fmt == "json":
        formatter: logging.Formatter = JsonFormatter()
        formatter.converter = time.gmtime
    else:
        formatter = logging.Formatter(
            "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"
        )
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True


def new_id(headers: Iterable[tuple[bytes, bytes]]) -> str:
    for name, value in headers:
        if name == HEADER and _SANE_ID.fullmatch(value):
            return value.decode()
    return secrets.token_hex(8)


class RequestLog:
    """ASGI middleware: the request id, and one access line per request.

    Streams (``GET /events``) log their own opened/closed lines in stream.py; this
    only gives them their id.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = new_id(scope["headers"])
        token = request_id.set(rid)
        started = time.perf_counter()
        started_token = request_started.set(started)
        status = 500
        header = (HEADER, rid.encode())

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            if scope["path"] != "/events":
                _log_request(scope, status, time.perf_counter() - started)
            request_id.reset(token)
            request_started.reset(started_token)


def _log_request(scope: Scope, status: int, seconds: float) -> None:
    client = scope.get("client")
    fields = {
        "method": scope["method"],
        "path": scope["path"],
        "status": status,
        "duration_ms": round(seconds * 1000, 1),
        "client": client[0] if client else None,
    }
    access.info(
        "%s %s %d %.1f ms",
        fields["method"],
        fields["path"],
        status,
        fields["duration_ms"],
        extra=fields,
    )
