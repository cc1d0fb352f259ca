"""Logging: one line per request and per stream, as text or JSON, with a request id.

Rationale:

1. Every request gets an id: the client's ``X-Request-ID`` when it sent a sane one
   (so a proxy's id carries through), otherwise a new one. It is answered in the
   ``X-Request-ID`` header and attached to every log line written while the
   request is handled, through a context variable, so a line from the store or
   the stream can be matched to the request that caused it.
2. uvicorn's access log is off: feed writes its own request line, with the
   duration, under the logger ``feed.requests``, and a stream gets an "opened" line
   and a "closed" line (``feed.stream``) with how long it lasted and how many events
   it carried, instead of one line when it opened. Every other logger is named for
   the part of feed that writes to it.
3. ``FEED_LOG_FORMAT=json`` writes one JSON object per line, with the message's
   structured fields (method, path, status, duration_ms...) as keys, for log
   shippers; ``text`` is for people.
4. Messages and fields carry what clients sent (a path, a name), so nobody may be
   able to forge a log line or drive a reader's terminal. The values put into a
   message (its ``%s`` arguments) and the fields are written with every character
   that could end a line or drive a terminal escaped (``\x0a``, ``\x1b``, ``\x85``,
   ``\u2028``): C0 and C1 controls, DEL, Unicode's line and paragraph separators
   (which ``str.splitlines`` and some shippers take for line ends) and the
   bidirectional overrides. A message's own text and a traceback keep their line
   breaks (uvicorn logs a failed start-up's traceback as a message), nothing else;
   in text, every line after a record's first is indented, so that none can pass
   for a record of its own. uvicorn hands its lines a coloured copy
   (``color_message``) for its own formatter; JSON leaves it out.
5. On the request line. It is the line written most, one per request, and the
   logging module's way to it (a record of some thirty attributes, the caller's
   frame looked up, the handler chain walked, the time formatted) cost more than
   the rest of a refused post's handling. While the logging is as ``configure``
   left it (its one handler at the root, nothing else on the request logger's way),
   the line is made from the same pieces as the formatter's (the format string, the
   escaped message, the time, each second formatted once) and written straight to
   the handler's stream under the handler's lock: the same bytes, with no record.
   Anything else (a handler or filter added by a test or by a program that embeds
   the app, a level raised on the way) and the line goes through logging as before.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Callable, Iterable, Mapping
from contextvars import ContextVar
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from feed.text import BIDI_CONTROLS, CONTROLS, LINE_FEED, SEPARATORS, matching

request_id: ContextVar[str] = ContextVar("feed_request_id", default="-")
# When the request being handled arrived (time.perf_counter), for latency metrics.
request_started: ContextVar[float | None] = ContextVar("feed_request_started", default=None)

# The request lines (2).
requests = logging.getLogger("feed.requests")
_INFO = logging.getLevelName(logging.INFO)

HEADER = b"x-request-id"
_SANE_ID = re.compile(rb"[A-Za-z0-9._:-]{1,128}")
# Attributes every LogRecord has; anything else was passed in ``extra``. uvicorn's
# coloured copy of its message is for its own formatter (4).
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {
    "message",
    "asctime",
    "request_id",
    "color_message",
}
# What is escaped in values and fields (4), and in a message's own text and tracebacks,
# whose line breaks stay.
_UNSAFE = matching(CONTROLS | SEPARATORS | BIDI_CONTROLS)
_UNSAFE_BUT_LINES = matching((CONTROLS - {LINE_FEED}) | SEPARATORS | BIDI_CONTROLS)
# ``json.dumps(entry, default=str, ensure_ascii=False)``, made once.
_JSON = json.JSONEncoder(default=str, ensure_ascii=False)
# What starts every line of a text record after its first (4).
CONTINUATION = "\n    "
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"
JSON_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S"
# The request line's message (2), and the fields it shows, in order.
REQUEST_LINE = "%s %s %d %.1f ms"
REQUEST_ARGS = ("method", "path", "status", "duration_ms")


def _escape_one(found: re.Match[str]) -> str:
    code = ord(found.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape(text: str) -> str:
    """``text`` with every character that could end a line or drive a terminal escaped (4)."""
    return _UNSAFE.sub(_escape_one, text)


def _escape_but_lines(text: str) -> str:
    return _UNSAFE_BUT_LINES.sub(_escape_one, text)


def _safe(value: object) -> object:
    """A message argument with what it says escaped; numbers stay numbers for ``%d``."""
    if value is None or isinstance(value, int | float):
        return value
    return escape(value if isinstance(value, str) else str(value))


def message(record: logging.LogRecord) -> str:
    """``record``'s message with its arguments escaped (4)."""
    text = str(record.msg)
    args = record.args
    if args:
        try:
            if isinstance(args, Mapping):
                text = text % {k: _safe(v) for k, v in args.items()}
            else:
                text = text % tuple(_safe(v) for v in args)
        except (TypeError, ValueError):
            text = escape(record.getMessage())
    return _escape_but_lines(text.rstrip("\r\n"))


class _Seconds:
    """One whole second of a formatter's time, formatted once for all its lines (5)."""

    __slots__ = ("_last", "converter", "datefmt")

    def __init__(self, converter: Callable[[float | None], time.struct_time], datefmt: str):
        self.converter = converter
        self.datefmt = datefmt
        # The second and its text in one object, replaced whole: threads may share it.
        self._last = (-1, "")

    def __call__(self, whole: int) -> str:
        at, text = self._last
        if at != whole:
            text = time.strftime(self.datefmt, self.converter(whole))
            self._last = (whole, text)
        return text


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        return True


class TextFormatter(logging.Formatter):
    """Records with their arguments escaped and their later lines indented (4)."""

    _seconds: _Seconds | None = None

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        if datefmt:
            return super().formatTime(record, datefmt)
        return self.stamp(int(record.created), record.msecs)

    def stamp(self, second: int, msecs: float) -> str:
        """``asctime`` as ``logging.Formatter`` writes it, its second made once (5)."""
        seconds = self._seconds
        if seconds is None or seconds.converter is not self.converter:
            seconds = self._seconds = _Seconds(self.converter, self.default_time_format)
        if self.default_msec_format is None:
            return seconds(second)
        return self.default_msec_format % (seconds(second), msecs)

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = message(record)
        return super().formatMessage(record)

    def formatException(self, ei: Any) -> str:
        return _escape_but_lines(super().formatException(ei))

    def format(self, record: logging.LogRecord) -> str:
        return super().format(record).replace("\n", CONTINUATION)


class JsonFormatter(logging.Formatter):
    _seconds: _Seconds | None = None

    def stamp(self, second: int, msecs: float) -> str:
        """The ``time`` of an entry, its second made once (5)."""
        seconds = self._seconds
        if seconds is None or seconds.converter is not self.converter:
            seconds = self._seconds = _Seconds(self.converter, JSON_TIME_FORMAT)
        return f"{seconds(second)}.{int(msecs):03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        fields = ((k, v) for k, v in record.__dict__.items() if k not in _STANDARD)
        entry = self.entry(
            self.stamp(int(record.created), record.msecs),
            record.levelname,
            record.name,
            message(record),
            getattr(record, "request_id", "-"),
            fields,
        )
        if record.exc_info:
            entry["exception"] = _escape_but_lines(self.formatException(record.exc_info))
        return _JSON.encode(entry)

    @staticmethod
    def entry(
        at: str,
        level: str,
        name: str,
        text: str,
        rid: str,
        fields: Iterable[tuple[str, object]],
    ) -> dict[str, Any]:
        """One line's object, its fields' strings escaped (4)."""
        entry: dict[str, Any] = {
            "time": at,
            "level": level.lower(),
            "logger": name,
            "message": text,
            "request_id": rid,
        }
        entry.update((k, escape(v) if isinstance(v, str) else v) for k, v in fields)
        return entry


class LogHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """``configure``'s one handler: what logging hands it, and the request lines it
    writes itself while nothing else would see them (5)."""

    def __init__(self) -> None:
        super().__init__()
        self.ids = _RequestIdFilter()
        self.addFilter(self.ids)

    def request_line(self, rid: str, fields: dict[str, object]) -> bool:
        """Write one request line as a record of ``feed.requests`` with ``fields`` would
        be written (5); False if this handler is not as ``configure`` left it or the
        write failed, for the caller to go through logging."""
        formatter = self.formatter
        if self.level > logging.INFO or self.filters != [self.ids]:
            return False
        second, ns = divmod(time.time_ns(), 1_000_000_000)
        msecs = ns // 1_000_000
        # Each string escaped once, for the message and the fields alike (4): what is
        # left of the message (its format, numbers) has nothing to escape or strip.
        safe = {k: escape(v) if isinstance(v, str) else v for k, v in fields.items()}
        text = REQUEST_LINE % tuple(safe[k] for k in REQUEST_ARGS)
        if type(formatter) is TextFormatter and formatter._fmt == TEXT_FORMAT:
            values = {
                "asctime": formatter.stamp(second, msecs),
                "levelname": _INFO,
                "name": requests.name,
                "request_id": rid,
                "message": text,
            }
            line = TEXT_FORMAT % values
        elif type(formatter) is JsonFormatter:
            at = formatter.stamp(second, msecs)
            entry = formatter.entry(at, _INFO, requests.name, text, rid, ())
            entry.update(safe)
            line = _JSON.encode(entry)
        else:
            return False
        with self.lock:  # type: ignore[union-attr]
            try:
                self.stream.write(line + self.terminator)
                self.flush()
            except Exception:
                return False  # logging's own path reports it
        return True


def configure(level: str, fmt: str) -> None:
    """Send every logger, uvicorn's included, to one stderr handler."""
    handler = LogHandler()
    if fmt == "json":
        formatter: logging.Formatter = JsonFormatter()
        formatter.converter = time.gmtime
    else:
        formatter = TextFormatter(TEXT_FORMAT)
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
    return os.urandom(8).hex()  # as secrets.token_hex(8), without its two calls


class RequestLog:
    """ASGI middleware: the request id, and one request line per request.

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
                _log_request(scope, status, time.perf_counter() - started, rid)
            request_id.reset(token)
            request_started.reset(started_token)


def _log_request(scope: Scope, status: int, seconds: float, rid: str) -> None:
    if not requests.isEnabledFor(logging.INFO):
        return  # nothing to build
    client = scope.get("client")
    fields: dict[str, object] = {
        "method": scope["method"],
        "path": scope["path"],
        "status": status,
        "duration_ms": round(seconds * 1000, 1),
        "client": client[0] if client else None,
    }
    handler = _sole_handler()
    if handler is None or not handler.request_line(rid, fields):
        requests.info(REQUEST_LINE, *[fields[k] for k in REQUEST_ARGS], extra=fields)


def _sole_handler() -> LogHandler | None:
    """``configure``'s handler, if a request line would reach it and nothing else (5)."""
    if requests.filters:
        return None
    node: logging.Logger | None = requests
    while node is not None and node.parent is not None:  # up to the root
        if node.handlers or not node.propagate:
            return None
        node = node.parent
    handlers = logging.root.handlers
    if len(handlers) != 1 or type(handlers[0]) is not LogHandler:
        return None
    return handlers[0]
