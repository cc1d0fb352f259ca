"""A small blocking SSE client on a raw socket, for tests.

It reads with deadlines instead of sleeps, sees comments as well as events, and can be
told to stop reading altogether (a stalled client).

Heartbeats come whenever an interval passes, which on a loaded machine can be in the
middle of any test: a comment on JSON and text streams, a ``heartbeat`` event on HTML
ones. ``events`` and ``wait_events`` leave heartbeat events out, so a test that counts
or compares events sees only what the server sent about the feed; ``messages`` and
``comments`` keep everything, and ``heartbeats`` counts them, for tests about beats.
"""

from __future__ import annotations

import contextlib
import socket
import time
from dataclasses import dataclass, field
from urllib.parse import urlencode

from feed.sse import HEARTBEAT_NAME


@dataclass
class Message:
    id: str | None = None
    event: str | None = None
    data: str = ""
    retry: int | None = None
    comments: list[str] = field(default_factory=list)

    @property
    def heartbeat(self) -> bool:
        """An HTML stream's heartbeat (a named event, since pages must see it)."""
        return self.event == HEARTBEAT_NAME


class StreamClosed(Exception):
    """The server ended the stream."""


class SSEClient:
    def __init__(
        self,
        port: int,
        path: str = "/events",
        params: list[tuple[str, str]] | dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        host: str = "127.0.0.1",
        rcvbuf: int | None = None,
    ) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(10)
        self.sock.connect((host, port))
        query = f"?{urlencode(params)}" if params else ""
        lines = [f"GET {path}{query} HTTP/1.1", f"Host: {host}:{port}", "Accept: text/event-stream"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        self._raw = b""  # bytes from the socket, not yet de-chunked
        self._body = b""  # de-chunked body, not yet split into lines
        self._current = Message()
        self.messages: list[Message] = []
        self.comments: list[str] = []
        self.ended = False  # the connection or the response is over
        self.graceful = False  # ...and it ended with the final chunk, not a cut
        self.status, self.headers = self._read_head()
        if self.status == 200 and "content-length" not in self.headers:
            # The whole of a short stream may come with its head: ``ended`` says so.
            with contextlib.suppress(StreamClosed):
                self._dechunk()
            self._parse()

    # -- transport ------------------------------------------------------------------

    def _recv(self, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no data before the deadline")
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(65536)
        except TimeoutError:
            raise TimeoutError("no data before the deadline") from None
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            self.ended = True
            raise StreamClosed("the server closed the connection")
        self._raw += chunk

    def _read_head(self) -> tuple[int, dict[str, str]]:
        deadline = time.monotonic() + 10
        while b"\r\n\r\n" not in self._raw:
            self._recv(deadline)
        head, self._raw = self._raw.split(b"\r\n\r\n", 1)
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        headers = {}
        # Every header line as sent, repeats included (``headers`` keeps the last).
        self.header_lines: list[tuple[str, str]] = []
        for line in header_lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
            self.header_lines.append((name.strip().lower(), value.strip()))
        return int(status_line.split()[1]), headers

    def read_body(self, timeout: float = 10) -> bytes:
        """For a non-stream answer: the whole body (content-length or chunked)."""
        deadline = time.monotonic() + timeout
        if "content-length" in self.headers:
            size = int(self.headers["content-length"])
            while len(self._raw) < size:
                self._recv(deadline)
            return self._raw[:size]
        while True:
            try:
                self._dechunk()
            except StreamClosed:
                return self._body
            if self.ended:
                return self._body
            self._recv(deadline)

    def _dechunk(self) -> None:
        while True:
            head, sep, rest = self._raw.partition(b"\r\n")
            if not sep:
                return
            size = int(head.split(b";")[0], 16)
            if size == 0:
                self.ended = self.graceful = True
                raise StreamClosed("the server ended the response")
            if len(rest) < size + 2:
                return
            self._body += rest[:size]
            self._raw = rest[size + 2 :]

    # -- SSE ------------------------------------------------------------------------

    def _parse(self) -> None:
        while b"\n" in self._body:
            raw, self._body = self._body.split(b"\n", 1)
            line = raw.decode("utf-8").rstrip("\r")
            if line == "":
                if self._current.data or self._current.event or self._current.id:
                    self._current.data = self._current.data.removesuffix("\n")
                    self.messages.append(self._current)
                elif self._current.retry is not None:
                    self.messages.append(self._current)
                self._current = Message()
                continue
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "":
                self.comments.append(value)
            elif name == "data":
                self._current.data += value + "\n"
            elif name == "id":
                self._current.id = value
            elif name == "event":
                self._current.event = value
            elif name == "retry":
                self._current.retry = int(value)

    def pump(self, deadline: float) -> None:
        """Read once (until the deadline) and parse what arrived."""
        try:
            self._recv(deadline)
        finally:
            try:
                self._dechunk()
            finally:
                self._parse()

    def events(self, heartbeats: bool = False) -> list[Message]:
        """Messages that are events: not retry hints, not bare ``id:`` positions, and
        not heartbeats unless asked for."""
        return [
            m
            for m in self.messages
            if (m.event is not None or m.data) and (heartbeats or not m.heartbeat)
        ]

    def wait_events(self, count: int, timeout: float = 10) -> list[Message]:
        """Block until at least ``count`` events (not heartbeats) have arrived; all of
        them, in order."""
        deadline = time.monotonic() + timeout
        while len(self.events()) < count:
            self.pump(deadline)
        return self.events()

    def heartbeats(self) -> int:
        """The heartbeats so far, whether events (HTML) or comments (JSON, text)."""
        return sum(m.heartbeat for m in self.messages) + self.comments.count(HEARTBEAT_NAME)

    def wait_for(self, predicate, timeout: float = 10) -> None:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout
        while not predicate(self):
            self.pump(deadline)

    def wait_closed(self, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while not self.ended:
            try:
                self.pump(deadline)
            except StreamClosed:
                return

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> SSEClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def subscribed(
    port: int,
    params: list[tuple[str, str]] | dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> SSEClient:
    """A stream that has received its opening ``retry:`` hint: it is subscribed, so
    whatever is posted from now on reaches it."""
    stream = SSEClient(port, params=params, headers=headers)
    assert stream.status == 200, stream.read_body()
    stream.wait_for(lambda s: any(m.retry for m in s.messages))
    return stream


def event_ids(stream: SSEClient) -> list[int]:
    """The ids of the events ``stream`` has received, in order; 0 for one without."""
    return [int(e.id or 0) for e in stream.events()]
