"""The HTTP client behind ``feed post``, ``feed tail`` and ``feed channels``, used
in-process against a real server."""

from __future__ import annotations

import ast
import email.utils
import http.server
import itertools
import json
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import ClassVar

import pytest

from feed import client, client_failures
from feed.client import Client
from tests.auth import ADMIN_TOKEN
from tests.conftest import Server, free_port

MakeServer = Callable[..., Server]

FEED = Path(__file__).parent.parent / "feed"


def imported(path: Path) -> set[str]:
    """The top-level packages ``path`` imports."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module.split(".")[0])
    return found


def test_every_request_the_commands_make_goes_through_the_client_module() -> None:
    speaking_http = sorted(
        str(path.relative_to(FEED))
        for path in FEED.rglob("*.py")
        if imported(path) & {"httpx", "httpx_sse"}
    )
    assert speaking_http == ["client.py"]


def test_answers_refusals_and_silence_are_told_apart(server: Server) -> None:
    admin = Client(server.url + "/", ADMIN_TOKEN)
    answer = admin.post("general", "hello")
    assert answer["post"]["body"] == "hello" and answer["event_id"] >= 1
    assert [c["name"] for c in admin.channels()] == ["announcements", "general"]
    with pytest.raises(client_failures.Refused) as refused:
        admin.post("nope", "hello")
    assert str(refused.value) == "the server answered 404: There is no channel named 'nope'."
    with pytest.raises(client_failures.NotSendable) as unsendable:
        admin.post("general", "\udcff")
    assert str(unsendable.value).startswith("the body ")
    gone = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(client_failures.Unreachable) as unreachable:
        Client(gone).channels()
    assert str(unreachable.value).startswith(f"cannot reach {gone}: ")
    with pytest.raises(client_failures.NotSendable) as not_a_server:
        Client("ftp://example.com")
    assert str(not_a_server.value) == "--url 'ftp://example.com' is not an http:// or https:// URL"


def test_follow_yields_each_event_after_the_one_it_resumes_from_with_its_id(
    server: Server,
) -> None:
    first, second, third = (server.post(body) for body in ("one", "two", "three"))
    breaks: list[tuple[str, float]] = []
    following = Client(server.url).follow([], first["event_id"], lambda *why: breaks.append(why))
    events = list(itertools.islice((e for e in following if e.event != "message"), 2))
    assert [(e.event, e.id) for e in events] == [
        ("post-created", second["event_id"]),
        ("post-created", third["event_id"]),
    ]
    assert [json.loads(e.data)["post"]["body"] for e in events] == ["two", "three"]
    assert breaks == []


# Not the default, nor the delay the client would pick by itself.
RETRY_MS = 4321


class StopFollowing(Exception):
    """Raised by a test's stand-in for sleep, to end ``follow`` where the test wants."""


def test_follow_waits_the_retry_its_server_sent_then_backs_off(make_server: MakeServer) -> None:
    server = make_server(retry_ms=RETRY_MS)
    server.post("before")
    followers, slept = [], []
    for _ in range(3):
        delays: list[float] = []

        def sleep(seconds: float, delays: list[float] = delays) -> None:
            delays.append(seconds)
            if len(delays) == 2:
                raise StopFollowing

        following = Client(server.url, sleep=sleep).follow([], None, lambda *_: None)
        followers.append((following, next(following)))
        slept.append(delays)
    # Each stream says how long to wait: FEED_RETRY_MS, plus up to half again at random.
    retries = [opening.retry for _, opening in followers]
    assert all(r is not None and RETRY_MS <= r <= RETRY_MS * 1.5 for r in retries), retries
    server.stop()  # ends every stream; the next connection is refused
    for following, _ in followers:
        with pytest.raises(StopFollowing):
            list(following)
    # The wait after a cut is the server's, spread as the server spread it; after a
    # refused connection it doubles.
    assert slept == [
        [r / 1000, min(2 * r / 1000, client.MAX_BACKOFF)] for r in retries if r is not None
    ]
    assert len(set(retries)) > 1, "three streams, one delay: nothing spreads the reconnects"


class Scripted(http.server.BaseHTTPRequestHandler):
    """A stand-in for a proxy in front of feed: each ``GET /events`` is answered by
    the next of ``answers`` (status, headers, body), and its ``Last-Event-ID`` kept."""

    answers: ClassVar[list[tuple[int, dict[str, str], bytes]]] = []
    resumed_from: ClassVar[list[str | None]] = []

    def do_GET(self) -> None:
        self.resumed_from.append(self.headers.get("Last-Event-ID"))
        # Once the script is done, a refusal that ends any follow.
        status, headers, body = self.answers.pop(0) if self.answers else (403, {}, b"done")
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        pass


def sse(*frames: str) -> tuple[int, dict[str, str], bytes]:
    return 200, {"Content-Type": "text/event-stream"}, "".join(frames).encode()


def event(event_id: int) -> str:
    return f'id: {event_id}\nevent: post-created\ndata: {{"n": {event_id}}}\n\n'


def test_follow_waits_out_a_busy_or_failing_answer_after_the_first_connection() -> None:
    """Once connected, a 5xx or a 429 (a database outage, a proxy with no upstream,
    too many streams) is waited out as a cut is, at least as long as its Retry-After;
    another refusal (a token revoked: 401) ends the tail."""
    unavailable = json.dumps({"error": "The database is unavailable; try again shortly."})
    Scripted.answers = [
        sse("retry: 200\n\n", event(1)),
        (503, {"Retry-After": "3", "Content-Type": "application/json"}, unavailable.encode()),
        (502, {"Content-Type": "text/html"}, b"<html><body>\n<h1>502</h1>\n</body></html>"),
        (504, {"Retry-After": "Thu, 01 Jan 1970 00:00:00 GMT"}, b"too late\nreally"),
        (429, {"Retry-After": "100000"}, b"Too many streams"),
        sse(event(2)),
        (401, {"Content-Type": "application/json"}, b'{"error": "Sign in again."}'),
    ]
    Scripted.resumed_from = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Scripted)
    serving = threading.Thread(target=server.serve_forever, daemon=True)
    serving.start()
    try:
        slept: list[float] = []
        heard: list[str] = []
        following = Client(f"http://127.0.0.1:{server.server_address[1]}", sleep=slept.append)
        got: list[int | None] = []
        with pytest.raises(client_failures.Refused) as refused:
            for e in following.follow([], None, lambda why, _: heard.append(why)):
                got.append(e.id)
    finally:
        server.shutdown()
        server.server_close()
    assert [i for i in got if i is not None] == [1, 2]
    assert Scripted.resumed_from == [None, "1", "1", "1", "1", "1", "2"]
    assert str(refused.value) == "the server answered 401: Sign in again."
    assert heard[1:5] == [
        "the server answered 503: The database is unavailable; try again shortly.",
        "the server answered 502: Bad Gateway",  # a page's markup is no reason
        "the server answered 504: too late",  # its first line
        "the server answered 429: Too many streams",
    ]
    # The stream's retry, then its Retry-After, doubling meanwhile (a date gone by:
    # no wait of its own), and a Retry-After too long to honour cut to the longest.
    assert slept == [0.2, 3.0, 0.8, 1.6, client_failures.MAX_RETRY_AFTER, 0.2]


def test_retry_after_is_read_in_seconds_or_as_a_date_within_reason() -> None:
    soon = email.utils.format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    waits = [client_failures.retry_after(v) for v in ("5", "-3", "1e999", "nan", "", "soon", soon)]
    assert waits[:6] == [5.0, 0.0, client_failures.MAX_RETRY_AFTER, None, None, None]
    assert waits[6] is not None and 28 <= waits[6] <= 30
