"""The tests' SSE client (tests/sse.py) reads past heartbeats: a beat that comes between
two events, as one may whenever a test outlives an interval, is never counted or
compared as one of them."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from feed.sse import HEARTBEAT, HEARTBEAT_EVENT, chunk, frame, hello, retry_hint
from tests.conftest import Server
from tests.sse import Message, SSEClient

HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"


def fields(messages: list[Message]) -> list[tuple[str | None, str | None, str]]:
    return [(m.event, m.id, m.data) for m in messages]


@contextmanager
def canned(first: bytes, then: bytes) -> Iterator[tuple[int, threading.Event]]:
    """A loopback server that answers one request with the stream ``first``, and with
    ``then`` once the test sets the event it yields. The stream stays open until the
    client hangs up, so whatever the client waits for, it finds in what was sent."""
    listener = socket.create_server(("127.0.0.1", 0))
    go = threading.Event()

    def serve() -> None:
        connection, _ = listener.accept()
        with connection:
            connection.settimeout(10)
            connection.recv(65536)
            connection.sendall(HEAD + chunk(first))
            if go.wait(10):
                connection.sendall(chunk(then))
                connection.recv(1)  # until the client hangs up

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    try:
        yield listener.getsockname()[1], go
    finally:
        go.set()
        server.join(10)
        listener.close()


def test_a_heartbeat_event_before_the_next_event_is_not_one_of_the_events() -> None:
    opening = retry_hint(2000) + hello("1", 0.2) + HEARTBEAT_EVENT
    post = frame("<article>one</article>", event="post-created", id=7)
    with (
        canned(opening, HEARTBEAT + post + HEARTBEAT_EVENT) as (port, go),
        SSEClient(port) as stream,
    ):
        stream.wait_for(lambda s: len(s.messages) == 3)  # the retry hint, hello and a beat
        go.set()
        hello_event, created = stream.wait_events(2)
        stream.wait_for(lambda s: s.heartbeats() == 3)  # the last beat is in too
    assert (hello_event.event, hello_event.id) == ("hello", None)
    assert (created.event, created.id, created.data) == (
        "post-created",
        "7",
        "<article>one</article>",
    )
    assert fields(stream.events()) == fields([hello_event, created])
    # Tests about heartbeats still see each one, in its place.
    assert [m.event for m in stream.events(heartbeats=True)] == [
        "hello",
        "heartbeat",
        "post-created",
        "heartbeat",
    ]
    assert stream.heartbeats() == 3 and stream.comments == ["heartbeat"]


def test_an_html_stream_that_has_beaten_still_reads_its_next_event_first(
    make_server: Callable[..., Server],
) -> None:
    server = make_server(heartbeat=0.2)
    with SSEClient(server.port, params={"format": "html"}) as stream:
        stream.wait_for(lambda s: s.heartbeats() >= 1)
        created = server.post("after a beat")
        hello_event, event = stream.wait_events(2)
    assert hello_event.event == "hello"
    assert (event.event, event.id) == ("post-created", str(created["event_id"]))
    assert "after a beat" in event.data
