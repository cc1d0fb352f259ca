"""The stream against a real uvicorn: delivery, formats, heartbeats, HEAD, slow
subscribers, shutdown and channel changes (resuming: test_stream_resume.py)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import uvicorn

from feed import connections, replays, sharing
from feed.app import FeedApp, create_app
from feed.server import FeedServer
from feed.settings import Settings
from tests.auth import ADMIN, ensure_admin
from tests.conftest import Server, free_port
from tests.sse import SSEClient, event_ids, subscribed
from tests.waiting import until


@pytest.fixture
def database_url(each_database_url: str) -> str:
    """Every stream test runs on SQLite and on PostgreSQL."""
    return each_database_url


def open_stream(server: Server, **params: str | list[str]) -> SSEClient:
    """A subscribed stream; a list value repeats its parameter."""
    pairs = [(k, x) for k, v in params.items() for x in ([v] if isinstance(v, str) else v)]
    return subscribed(server.port, pairs)


def test_post_arrives_with_id_event_and_json_data(server: Server) -> None:
    with open_stream(server, format="json") as stream:
        created = server.post("hello **world**")
        (event,) = stream.wait_events(1)
    assert stream.headers["content-type"].startswith("text/event-stream")
    assert stream.headers["cache-control"] == "private, no-store"
    assert stream.headers["x-accel-buffering"] == "no"
    assert event.id == str(created["event_id"])
    assert event.event == "post-created"
    payload = json.loads(event.data)
    assert payload["id"] == created["event_id"] and payload["type"] == "post-created"
    assert payload["post"]["body"] == "hello **world**"
    assert payload["post"]["id"] == created["post"]["id"]


def test_html_format_carries_the_page_fragment_and_oob_swaps(server: Server) -> None:
    with open_stream(server, format="html") as stream:
        # Payloads show a post's state when it is sent, so let each change arrive first.
        # An HTML stream opens with ``hello`` (the release, for pages), then the events.
        post_id = server.post("hello <b>**world**</b>")["post"]["id"]
        stream.wait_events(2)
        server.client.patch(f"/api/posts/{post_id}", json={"body": "edited"})
        stream.wait_events(3)
        server.client.delete(f"/api/posts/{post_id}")
        hello, created, updated, deleted = stream.wait_events(4)
    assert hello.event == "hello" and hello.id is None
    assert created.event == "post-created"
    assert f'<article id="post-{post_id}"' in created.data
    assert "<strong>world</strong>" in created.data
    assert "&lt;b&gt;" in created.data and "<b>" not in created.data
    assert "hx-swap-oob" not in created.data
    assert updated.event == "post-updated"
    assert 'hx-swap-oob="outerHTML"' in updated.data and "<p>edited</p>" in updated.data
    assert deleted.event == "post-deleted"
    assert deleted.data == f'<div id="post-{post_id}" hx-swap-oob="delete"></div>'
    # The page renders the same fragment for the same post state.
    page = server.client.get("/").text
    assert f"post-{post_id}" not in page


def test_text_format_is_one_readable_line_per_event(server: Server) -> None:
    with open_stream(server, format="text") as stream:
        server.post("multi\nline   text", author="bob", channel="announcements")
        (event,) = stream.wait_events(1)
    assert "\n" not in event.data
    assert event.data.endswith("#announcements bob: multi line text")
    assert event.data[:4].isdigit() and "UTC" in event.data


def test_channel_filter_only_delivers_chosen_channels(server: Server) -> None:
    with (
        open_stream(server, channel="announcements") as only,
        open_stream(server, channel=["general", "announcements"]) as both,
    ):
        server.post("g1", channel="general")
        server.post("a1", channel="announcements")
        server.post("g2", channel="general")
        assert [json.loads(e.data)["post"]["body"] for e in both.wait_events(3)] == [
            "g1",
            "a1",
            "g2",
        ]
        (event,) = only.wait_events(1)
        assert json.loads(event.data)["post"]["body"] == "a1"
        # g2 was delivered to `both` after a1, so `only` has had every chance to see it.
        server.post("a2", channel="announcements")
        bodies = [json.loads(e.data)["post"]["body"] for e in only.wait_events(2)]
    assert bodies == ["a1", "a2"]


def _answers(port: int, *requests: str, timeout: float = 5) -> list[tuple[int, dict[str, str]]]:
    """The status and headers of each answer to ``requests``, sent one after the other
    on one keep-alive connection; every answer must have no body (HEAD) or a
    Content-Length, so the next one can be found."""
    answers = []
    deadline = time.monotonic() + timeout
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        raw = b""
        for request in requests:
            sock.sendall(f"{request}\r\nHost: 127.0.0.1\r\n\r\n".encode())
            while b"\r\n\r\n" not in raw:
                sock.settimeout(max(0.01, deadline - time.monotonic()))
                try:
                    chunk = sock.recv(65536)
                except TimeoutError:
                    raise AssertionError(f"no answer to {request!r} in time") from None
                assert chunk, f"the connection closed before answering {request!r}"
                raw += chunk
            head, raw = raw.split(b"\r\n\r\n", 1)
            status, *lines = head.decode("latin-1").split("\r\n")
            fields = (line.partition(":") for line in lines)
            headers = {name.strip().lower(): value.strip() for name, _, value in fields}
            size = 0 if request.startswith("HEAD") else int(headers.get("content-length", 0))
            while len(raw) < size:
                raw += sock.recv(65536)
            raw = raw[size:]
            answers.append((int(status.split()[1]), headers))
    return answers


def test_head_answers_at_once_with_the_status_a_get_would_get_and_holds_no_stream(
    make_server: Callable[..., Server],
) -> None:
    server = make_server(max_streams_per_client=1)
    # Each answer ends, so the next request on the connection is answered too.
    (ok, refused, after) = _answers(
        server.port,
        "HEAD /events?format=html HTTP/1.1",
        "HEAD /events?format=xml HTTP/1.1",
        "GET /healthz HTTP/1.1",
    )
    assert ok[0] == 200 and ok[1]["content-type"].startswith("text/event-stream")
    assert "transfer-encoding" not in ok[1]
    assert refused[0] == 400 and after[0] == 200
    # The HEAD held no place: this address's one stream is still free...
    with open_stream(server) as stream:
        # ...and now that it is taken, HEAD gets the 429 a GET would get.
        ((status, headers),) = _answers(server.port, "HEAD /events HTTP/1.1")
        assert status == 429 and headers["retry-after"] == "10"
        created = server.post("still live")["event_id"]
        (event,) = stream.wait_events(1)
        assert event.id == str(created)


def test_stream_opens_with_retry_hint_and_sends_heartbeats(
    make_server: Callable[..., Server],
) -> None:
    server = make_server(heartbeat=0.2, retry_ms=1500)
    with SSEClient(server.port) as stream:
        stream.wait_for(lambda s: s.comments.count("heartbeat") >= 3, timeout=10)
    retry = stream.messages[0].retry
    assert retry is not None and 1500 <= retry <= 2250  # FEED_RETRY_MS, spread (reconnects.py)
    assert stream.events(heartbeats=True) == []  # scripts see no heartbeat events, only comments


def test_each_stream_gets_its_own_reconnect_delay_within_half_again(server: Server) -> None:
    # 2000 ms by default: clients dropped together must not all come back together.
    delays = []
    for _ in range(12):
        with open_stream(server) as stream:
            delays.append(next(m.retry for m in stream.messages if m.retry))
    assert all(2000 <= d <= 3000 for d in delays), delays
    assert len(set(delays)) > 1, delays


def test_html_stream_says_hello_then_beats_with_named_events(
    make_server: Callable[..., Server],
) -> None:
    # Pages cannot see comments, and need to know the release they are talking to.
    server = make_server(heartbeat=0.2, release="2026.3-blue")
    with SSEClient(server.port, params={"format": "html"}) as stream:
        stream.wait_for(lambda s: [m.event for m in s.messages].count("heartbeat") >= 3)
        hello, start, *beats = stream.messages[1:]
        created = server.post("after the beats")["event_id"]
        stream.wait_for(lambda s: any(m.id == str(created) for m in s.messages))
    assert stream.messages[0].retry is not None
    assert hello.event == "hello" and hello.id is None
    assert (start.event, start.id, start.data) == (None, "0", "")
    assert json.loads(hello.data) == {"release": "2026.3-blue", "heartbeat": 0.2}
    assert {(m.event, m.id, m.data) for m in beats} == {("heartbeat", None, "")}
    assert "heartbeat" not in stream.comments


def test_a_subscriber_that_never_reads_is_dropped_and_others_get_everything(
    make_server: Callable[..., Server],
) -> None:
    server = make_server(subscriber_backlog=16384)
    # A tiny receive buffer, never read. The kernel may still buffer up to 4 MiB
    # (net.ipv4.tcp_wmem's ceiling) on the server's side, so send more than that.
    stalled = SSEClient(server.port, rcvbuf=4096)
    total = 600
    with open_stream(server) as healthy:
        body = "z" * 9000
        ids = []
        for count in range(1, total + 1):
            ids.append(server.post(f"{count} {body}")["event_id"])
            healthy.wait_events(count, timeout=10)
        assert event_ids(healthy) == ids
    with stalled:
        stalled.wait_closed(timeout=10)
        assert stalled.ended and not stalled.graceful
        assert len(stalled.events()) < total
    # It resumes where it was cut off and gets the rest, in order.
    last_seen = int(stalled.events()[-1].id or 0) if stalled.events() else 0
    with SSEClient(server.port, headers={"Last-Event-ID": str(last_seen)}) as resumed:
        rest = [i for i in ids if i > last_seen]
        resumed.wait_events(len(rest), timeout=20)
        assert event_ids(resumed) == rest


def test_shutdown_with_open_streams_ends_them_within_the_limit(
    make_server: Callable[..., Server],
) -> None:
    server = make_server(shutdown_timeout=5)
    streams = [open_stream(server, format=f) for f in ("json", "html", "text") * 17][:50]
    last = server.post("last words")["event_id"]
    for stream in streams:
        # The post itself, not an HTML stream's opening ``hello``.
        stream.wait_for(lambda s: last in event_ids(s))
    took = server.stop(signal.SIGTERM)
    assert took < 5
    for stream in streams:
        with stream:
            stream.wait_closed(timeout=5)
            assert stream.graceful
            assert "stream closed; reconnect to resume" in stream.comments


def test_a_second_process_on_the_same_database_delivers_within_the_poll_interval(
    make_server: Callable[..., Server],
) -> None:
    writer = make_server(poll_interval=0.2)
    reader = make_server(database=writer.database, poll_interval=0.2)
    with open_stream(reader) as stream:
        ids = [writer.post(f"from A {i}")["event_id"] for i in range(3)]
        stream.wait_events(3, timeout=10)
        assert event_ids(stream) == ids


def test_a_post_written_here_never_overtakes_an_event_this_process_has_not_read(
    make_server: Callable[..., Server],
) -> None:
    # The writing process hands its new posts to its own relay without reading them
    # back (relay.py). An event from another process that it has not read yet (no
    # hint between them, the next poll a minute away) must still come first.
    here = make_server(poll_interval=60)
    elsewhere = make_server(database=here.database, poll_interval=60)
    with open_stream(here) as stream:
        stream.wait_for(lambda s: any(m.id for m in s.messages))
        other = elsewhere.post("written elsewhere")["event_id"]
        mine = here.post("written here")["event_id"]
        assert mine == other + 1
        stream.wait_events(2, timeout=10)
        assert event_ids(stream) == [other, mine]
        assert [json.loads(m.data)["post"]["body"] for m in stream.events()] == [
            "written elsewhere",
            "written here",
        ]


def test_channel_changes_are_events_in_every_format_and_replay(server: Server) -> None:
    with (
        open_stream(server, format="json") as as_json,
        open_stream(server, format="text") as as_text,
        open_stream(server, format="json", channel="general") as elsewhere,
    ):
        created = server.client.post("/api/channels", json={"name": "ops", "title": "Ops"})
        assert created.status_code == 201
        as_text.wait_events(1)  # live events show the channel when the relay read it
        server.client.patch("/api/channels/ops", json={"title": "Ops team"})
        as_text.wait_events(2)
        server.client.post("/api/channels/ops/archive")
        server.client.post("/api/channels/ops/restore")
        marker = server.post("in general")["event_id"]
        json_events = as_json.wait_events(5)
        text_events = as_text.wait_events(5)
        (only,) = elsewhere.wait_events(1)
    assert [e.event for e in json_events] == [
        "channel-created",
        "channel-updated",
        "channel-archived",
        "channel-restored",
        "post-created",
    ]
    first = json.loads(json_events[0].data)
    assert first["id"] == created.json()["event_id"] and first["type"] == "channel-created"
    assert first["channel"] == {
        "name": "ops",
        "title": "Ops",
        "description": "",
        "archived": False,
        "private": False,
        "announcement_only": False,
        "replies": True,
    }
    assert [e.data for e in text_events[:4]] == [
        "#ops was created: Ops",
        "#ops is now titled: Ops team",
        "#ops was archived",
        "#ops was restored",
    ]
    assert only.id == str(marker)
    # Replay shows the channel as it is now.
    with open_stream(server, format="text", last_event_id="0", channel="ops") as replayed:
        events = replayed.wait_events(4)
    assert [e.data for e in events] == [
        "#ops was created: Ops team",
        "#ops is now titled: Ops team",
        "#ops was archived",
        "#ops was restored",
    ]


@contextlib.contextmanager
def in_process(database_url: str, http: str, **settings: Any) -> Iterator[InProcess]:
    """feed on a real uvicorn in a thread of this process, so a test can look at its
    hub; ``http`` picks uvicorn's HTTP implementation."""
    ensure_admin(database_url)
    config = Settings(
        database_url=database_url,
        port=free_port(),
        post_rate=100_000,
        max_streams_per_client=100_000,
        log_level="warning",
        **settings,
    )
    app = create_app(config)
    # "feed": uvicorn's httptools protocol with feed's connection limits, as served.
    protocol = connections.protocol(connections.Limits(config, -1)) if http == "feed" else http
    uv = uvicorn.Config(
        app, host="127.0.0.1", port=config.port, http=protocol, log_config=None, access_log=False
    )
    server = FeedServer(uv, app)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(server.serve(),))
    thread.start()
    client = httpx.Client(base_url=f"http://127.0.0.1:{config.port}", headers=ADMIN, timeout=10)
    try:
        until(
            lambda: server.started or not thread.is_alive(),
            timeout=20,
            failure=lambda _: AssertionError("feed did not start"),
            pause=0.02,
        )
        assert server.started, "feed did not start"
        yield InProcess(config.port, app, loop, client)
    finally:
        client.close()
        server.should_exit = True
        thread.join(20)
        loop.close()


@dataclass
class InProcess:
    port: int
    app: FeedApp
    loop: asyncio.AbstractEventLoop
    client: httpx.Client

    def post(self, body: str) -> int:
        response = self.client.post("/api/channels/general/posts", json={"body": body})
        assert response.status_code == 201, response.text
        event_id: int = response.json()["event_id"]
        return event_id

    def subscribers(self) -> list[object]:
        """The hub's open streams (read on the server's loop)."""

        async def look() -> list[object]:
            return list(self.app.hub.subscribers())

        return asyncio.run_coroutine_threadsafe(look(), self.loop).result(10)

    def attached(self) -> list[bool]:
        """Which open streams the hub writes to directly (read on the server's loop)."""

        async def look() -> list[bool]:
            return [sub.attached for sub in self.app.hub.subscribers()]

        return asyncio.run_coroutine_threadsafe(look(), self.loop).result(10)


@pytest.mark.parametrize("http", ["feed", "httptools", "h11"])
def test_direct_writes_and_the_asgi_path_carry_the_same_stream(
    database_url: str, http: str
) -> None:
    # httptools: the hub writes pre-framed chunks to the connections; h11 (or any other
    # server) keeps ASGI sends. Clients must not be able to tell the difference.
    with in_process(database_url, http, heartbeat=0.2, retry_ms=1500) as feed:
        early = [feed.post(f"early {i}") for i in range(3)]
        streams = [open_stream_at(feed.port, format=fmt) for fmt in ("json", "html", "text")]
        resumed = SSEClient(feed.port, params={"last_event_id": str(early[0])})
        resumed.wait_events(2)
        live = [feed.post(f"live {i}") for i in range(5)]
        for stream in (*streams, resumed):
            stream.wait_for(lambda s: any(m.id == str(live[-1]) for m in s.messages))
        assert feed.attached() == [http != "h11"] * 4
        # Heartbeats come from the hub too; an event after them still arrives in order.
        for stream in streams:
            stream.wait_for(lambda s: s.heartbeats() >= 2)
        last = feed.post("after the beats")
        for stream in (*streams, resumed):
            stream.wait_for(lambda s: any(m.id == str(last) for m in s.messages))
    json_stream, html, text = streams
    # Each fresh stream starts at its bare ``id:`` position; posts the relay had not
    # yet delivered then arrive live.
    start = int(next(m.id for m in json_stream.messages if m.id and not m.event) or 0)
    ids = [int(e.id or 0) for e in json_stream.events()]
    assert ids == [i for i in [*early, *live, last] if i > start] and ids[-6:] == [*live, last]
    for other in (text, html):
        begins = int(next(m.id for m in other.messages if m.id and not m.event) or 0)
        due = [i for i in [*early, *live, last] if i > begins]
        assert [int(e.id or 0) for e in other.events() if e.id] == due
    assert [int(e.id or 0) for e in resumed.events()] == [*early[1:], *live, last]
    bodies = [json.loads(e.data)["post"]["body"] for e in json_stream.events()[-6:]]
    assert bodies == [*(f"live {i}" for i in range(5)), "after the beats"]
    assert text.events()[-1].data.endswith("after the beats")
    assert min(s.heartbeats() for s in streams) >= 2
    assert {e.event for e in html.events(heartbeats=True) if not e.id} == {"hello", "heartbeat"}
    # Stopping the server ends every stream with the final chunk, on either path.
    for stream in (*streams, resumed):
        with stream:
            stream.wait_closed()
            assert stream.graceful
            assert "stream closed; reconnect to resume" in stream.comments


def test_a_resume_that_overflows_while_it_waits_for_its_turn_is_refused_not_cut(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A stream waiting for its client's replay turn already hears live events; if they
    # overflow its backlog before its status line, the answer is a 503 to retry, and
    # nothing of it stays in the hub.
    made: list[sharing.Turns] = []

    class Kept(sharing.Turns):
        def __init__(self, most: int) -> None:
            super().__init__(most)
            made.append(self)

    monkeypatch.setattr(replays, "Turns", Kept)
    with in_process(database_url, "feed", subscriber_backlog=4096) as feed:
        start = feed.post("before the wait")
        (turns,) = made
        release = asyncio.run_coroutine_threadsafe(_make_event(), feed.loop).result(10)
        held = asyncio.run_coroutine_threadsafe(
            _hold(turns, "127.0.0.1", turns.most, release), feed.loop
        )
        until(lambda: len(turns) == 1, timeout=10)
        with ThreadPoolExecutor(1) as pool:
            waiting = pool.submit(SSEClient, feed.port, params={"last_event_id": str(start)})
            until(lambda: len(feed.subscribers()) == 1, timeout=10)
            assert not waiting.done()
            for n in range(3):
                feed.post(f"{n} " + "x" * 3000)
            refused = waiting.result(10)
        feed.loop.call_soon_threadsafe(release.set)
        held.result(10)
        assert refused.status == 503
        assert refused.headers["retry-after"].isdigit()
        assert "The feed is busy" in json.dumps(json.loads(refused.read_body()))
        refused.close()
        until(lambda: not feed.subscribers(), timeout=10)
        # Once the turn is free, the same resume gets every post it missed, in order.
        with SSEClient(feed.port, params={"last_event_id": str(start), "format": "json"}) as again:
            missed = again.wait_events(3)
        assert [json.loads(e.data)["post"]["body"][:2] for e in missed] == ["0 ", "1 ", "2 "]


async def _make_event() -> asyncio.Event:
    return asyncio.Event()


async def _hold(turns: sharing.Turns, key: str, count: int, release: asyncio.Event) -> None:
    async with contextlib.AsyncExitStack() as stack:
        for _ in range(count):
            await stack.enter_async_context(turns.turn(key))
        await release.wait()


def open_stream_at(port: int, **params: str) -> SSEClient:
    stream = SSEClient(port, params=params)
    assert stream.status == 200
    stream.wait_for(lambda s: any(m.retry for m in s.messages))
    return stream
