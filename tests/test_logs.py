"""Logs: a line per request and per stream, as text or JSON, with the request id."""

from __future__ import annotations

import ast
import asyncio
import functools
import io
import json
import logging
import re
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from feed import logs
from tests.conftest import Server
from tests.sse import SSEClient
from tests.waiting import until


def json_lines(server: Server) -> list[dict[str, Any]]:
    return [json.loads(line) for line in server.logs().splitlines() if line.startswith("{")]


def wait_for_line(server: Server, match: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    found = until(
        lambda: [entry for entry in json_lines(server) if match(entry)],
        timeout=10,
        failure=lambda _: AssertionError(server.logs()[-2000:]),
    )
    return found[-1]


def test_json_logs_carry_the_request_id_status_and_duration(
    make_server: Callable[..., Server],
) -> None:
    server = make_server(log_level="info", log_format="json")
    answer = server.client.get("/api/channels", headers={"X-Request-ID": "req-42"})
    assert answer.headers["x-request-id"] == "req-42"
    line = wait_for_line(server, lambda e: e.get("request_id") == "req-42")
    assert line["logger"] == "feed.requests" and line["level"] == "info"
    (up,) = [e for e in json_lines(server) if e["message"].startswith("feed is up")]
    assert up["logger"] == "feed.app"
    assert (line["method"], line["path"], line["status"]) == ("GET", "/api/channels", 200)
    assert isinstance(line["duration_ms"], float)
    assert line["message"].startswith("GET /api/channels 200 ")
    # Without an id, or with a hostile one, the server makes one up.
    made_up = server.client.get("/api/channels", headers={"X-Request-ID": "<script>" * 20})
    assert made_up.headers["x-request-id"] != "<script>" * 20
    assert len(made_up.headers["x-request-id"]) == 16
    missing = server.client.get("/api/nope")
    assert missing.status_code == 404
    wait_for_line(server, lambda e: e.get("path") == "/api/nope" and e.get("status") == 404)


def test_a_stream_logs_when_it_opens_and_when_it_closes_with_its_events(
    make_server: Callable[..., Server],
) -> None:
    server = make_server(log_level="info", log_format="json")
    stream = SSEClient(
        server.port,
        params={"format": "text", "channel": "general"},
        headers={"X-Request-ID": "kiosk-7"},
    )
    assert stream.headers["x-request-id"] == "kiosk-7"
    opened = wait_for_line(server, lambda e: e["message"].startswith("stream opened"))
    assert opened["request_id"] == "kiosk-7"
    assert (opened["format"], opened["channels"], opened["resume_from"]) == (
        "text",
        "general",
        None,
    )
    server.post("one")
    server.post("two")
    stream.wait_events(2)
    stream.close()
    closed = wait_for_line(server, lambda e: e["message"].startswith("stream closed"))
    assert closed["request_id"] == "kiosk-7"
    assert (closed["events"], closed["outcome"]) == (2, "client left")
    assert closed["duration_s"] > 0
    # No access line for the stream: its opened and closed lines say more.
    assert not [e for e in json_lines(server) if e.get("path") == "/events"]


def test_text_logs_are_one_readable_line_with_the_id(make_server: Callable[..., Server]) -> None:
    server = make_server(log_level="info")
    server.client.get("/healthz", headers={"X-Request-ID": "abc"})
    until(server.logs, lambda logs: "GET /healthz 200" in logs, timeout=10)
    (line,) = [x for x in server.logs().splitlines() if "GET /healthz 200" in x]
    assert " INFO feed.requests [abc] GET /healthz 200 " in line


# A path that would end the log line, colour the terminal and break it again with C1's
# "next line", to forge a line after it.
HOSTILE_PATH = b"/x%0A2026-01-01%20INFO%20feed.requests%20forged%1B[31mred%C2%85nel%E2%80%A8ls"
ESCAPED_PATH = "/x\\x0a2026-01-01 INFO feed.requests forged\\x1b[31mred\\x85nel\\u2028ls"


def send_raw(server: Server, path: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"GET " + path + b" HTTP/1.1\r\nHost: feed\r\nConnection: close\r\n\r\n")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def test_control_characters_in_a_path_are_escaped_in_text_logs(
    make_server: Callable[..., Server],
) -> None:
    server = make_server(log_level="info")
    assert send_raw(server, HOSTILE_PATH).startswith(b"HTTP/1.1 404 ")
    until(server.logs, lambda logs: " 404 " in logs, timeout=10)
    logs = server.logs()
    (line,) = [x for x in logs.split("\n") if " 404 " in x]
    assert "INFO feed.requests [" in line and f"GET {ESCAPED_PATH} 404 " in line
    assert [x for x in logs.split("\n") if "forged" in x] == [line]
    assert not set(logs) & {"\x1b", "\x85", "\u2028", "\r"}


def test_json_logs_escape_control_characters_and_carry_no_terminal_colours(
    make_server: Callable[..., Server],
) -> None:
    server = make_server(log_level="info", log_format="json")
    assert send_raw(server, HOSTILE_PATH).startswith(b"HTTP/1.1 404 ")
    line = wait_for_line(server, lambda e: e.get("status") == 404)
    assert line["path"] == ESCAPED_PATH
    assert line["message"].startswith(f"GET {ESCAPED_PATH} 404 ")
    logs = server.logs()
    assert all(x.startswith("{") for x in logs.split("\n") if x), logs[-2000:]
    assert not set(logs) & {"\x1b", "\x85", "\u2028"}
    # uvicorn's own lines (such as its start-up one) come without their colour copy.
    entries = json_lines(server)
    assert any(e["logger"].startswith("uvicorn") for e in entries)
    assert not [e for e in entries if "color_message" in e]
    assert "\\u001b" not in logs


FEED = Path(__file__).parent.parent / "feed"
# Loggers named for what they log rather than for the module that holds them.
NAMED_FOR_WHAT_THEY_LOG = {"feed.requests": "feed.logs"}


def logger_names() -> dict[str, set[str]]:
    """Each literal ``logging.getLogger`` name in feed, with the modules that use it
    (a subpackage counts as one module)."""
    owners: dict[str, set[str]] = {}
    for path in FEED.rglob("*.py"):
        parts = path.relative_to(FEED.parent).with_suffix("").parts
        owner = ".".join(parts[:2])
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "getLogger"
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
                and node.args[0].value.startswith("feed")
            ):
                owners.setdefault(node.args[0].value, set()).add(owner)
    return owners


def test_each_logger_name_means_one_thing() -> None:
    names = logger_names()
    assert {name: owners for name, owners in names.items() if len(owners) > 1} == {}
    modules = {p.stem for p in FEED.glob("*.py")}
    named_otherwise = {
        name: owner
        for name, (owner,) in names.items()
        if owner.removeprefix("feed.") in modules and name != owner
    }
    assert named_otherwise == NAMED_FOR_WHAT_THEY_LOG


# -- the request line, written straight to the stream -------------------------------

# A quarter past a whole second, the same instant as a float and in nanoseconds.
FROZEN_S, FROZEN_NS = 1_796_090_000.25, 1_796_090_000_250_000_000


@pytest.fixture
def configured(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], io.StringIO]]:
    """``logs.configure`` for a format, its handler writing to a string, the time
    frozen; the process's logging as it was afterwards."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    uvicorn = {name: logging.getLogger(name) for name in ("uvicorn", "uvicorn.error")}
    kept = {name: (lg.handlers[:], lg.propagate) for name, lg in uvicorn.items()}
    monkeypatch.setattr(time, "time", lambda: FROZEN_S)
    monkeypatch.setattr(time, "time_ns", lambda: FROZEN_NS)

    def configure(fmt: str) -> io.StringIO:
        logs.configure("info", fmt)
        (handler,) = root.handlers
        stream = io.StringIO()
        assert isinstance(handler, logging.StreamHandler)
        handler.setStream(stream)
        return stream

    try:
        yield configure
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
        for name, (handlers, propagate) in kept.items():
            uvicorn[name].handlers[:] = handlers
            uvicorn[name].propagate = propagate


async def _answered(status: int, scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": status, "headers": []})
    await send({"type": "http.response.body", "body": b""})


def serve_one(path: str, status: int, request_id: bytes = b"line-1") -> None:
    """One request through ``RequestLog`` in-process, answered ``status``."""
    app = logs.RequestLog(functools.partial(_answered, status))
    scope = {
        "type": "http",
        "method": "POST",
        "path": path,
        "headers": [(b"x-request-id", request_id)],
        "client": ("127.0.0.1", 50000),
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(_message: dict[str, Any]) -> None:
        pass

    asyncio.run(app(scope, receive, send))


def line_through_logging(path: str, status: int, request_id: str, duration_ms: float) -> str:
    """The request line the configured handler makes of a record, as logging writes it."""
    fields = {
        "method": "POST",
        "path": path,
        "status": status,
        "duration_ms": duration_ms,
        "client": "127.0.0.1",
    }
    args = (fields["method"], path, status, duration_ms)
    record = logs.requests.makeRecord(
        logs.requests.name, logging.INFO, "x.py", 1, "%s %s %d %.1f ms", args, None, extra=fields
    )
    record.request_id = request_id
    (handler,) = logging.getLogger().handlers
    return handler.format(record) + "\n"


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_a_request_line_at_info_is_written_without_a_log_record(
    configured: Callable[[str], io.StringIO], monkeypatch: pytest.MonkeyPatch, fmt: str
) -> None:
    stream = configured(fmt)
    made: list[str] = []
    factory = logging.getLogRecordFactory()

    def counting(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = factory(*args, **kwargs)
        made.append(record.name)
        return record

    monkeypatch.setattr(logging, "_logRecordFactory", counting)
    hostile = "/x\n2026-01-01 INFO feed.requests forged\x1b[31mred\x85nel\u2028ls"
    serve_one("/api/channels/general/posts", 201, b"line-1")
    serve_one(hostile, 404, b"line-2")
    assert made == []  # no record, no caller lookup, no handler chain
    first, second = stream.getvalue().splitlines(keepends=True)
    duration = float(re.findall(r"([0-9.]+) ms", first)[-1])
    assert first == line_through_logging("/api/channels/general/posts", 201, "line-1", duration)
    duration = float(re.findall(r"([0-9.]+) ms", second)[-1])
    assert second == line_through_logging(hostile, 404, "line-2", duration)
    assert "\x1b" not in second and "\u2028" not in second and second.count("\n") == 1


def test_a_request_line_goes_through_logging_when_logging_was_changed(
    configured: Callable[[str], io.StringIO],
) -> None:
    stream = configured("text")
    seen: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    # Another handler (a test's capture, an embedding program's own) sees every line.
    keep = Keep()
    logging.getLogger().addHandler(keep)
    serve_one("/healthz", 200, b"kept-1")
    assert [(r.name, r.getMessage().split()[:3]) for r in seen] == [
        ("feed.requests", ["POST", "/healthz", "200"])
    ]
    assert " INFO feed.requests [kept-1] POST /healthz 200 " in stream.getvalue()
    # A level raised on the way: nothing at all.
    logging.getLogger().removeHandler(keep)
    logs.requests.setLevel(logging.WARNING)
    try:
        serve_one("/healthz", 200, b"quiet-1")
    finally:
        logs.requests.setLevel(logging.NOTSET)
    assert "quiet-1" not in stream.getvalue()
