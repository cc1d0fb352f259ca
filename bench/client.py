"""The load client: holds N SSE subscribers on raw sockets and times every event.

It runs in its own process (``python -m bench.client``): each loopback connection
costs a file descriptor at both ends, the open-files limit is per process, and the
server's RSS must not include the client's buffers.

Conversation with the parent, one JSON object or word per line:

    stdout  {"ready": R, "failed": F}   every subscriber has its ``retry:`` line (or the
                                        connect deadline passed)
    stdin   posted                      every post has been sent
    stdout  {"latencies_us": ...}       every subscriber has every post (or the drain
                                        deadline passed)
    stdin   close (or EOF)              the parent has read the server's RSS: hang up

Rationale:

1. An ``asyncio.Protocol`` on uvloop rather than a reader task per connection: nothing
   lives per subscriber but the protocol object and a short tail of bytes, and the
   receive time is taken in ``data_received``, the moment the loop hands the bytes over.
2. The send time travels inside the post body as CLOCK_MONOTONIC nanoseconds, which is
   one clock for every process on the machine. The client needs no event ids and no
   JSON parsing, so feed and the baseline are measured by exactly the same code.
3. The marker is searched for in the raw bytes, chunked framing and all (both servers
   send each event as one chunk); the tail kept between reads catches a marker that a
   read boundary split in two.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import sys
import time
import typing

import uvloop

MARKER = re.compile(rb"bench post (\d+) at (\d+);")
TAIL = 128  # longer than any marker or the "retry:" field
CONNECTS_IN_FLIGHT = 200  # stays well under uvicorn's accept backlog (2048)


def marker(post: int) -> str:
    """A post body the client recognises; the timestamp is taken now."""
    return f"bench post {post} at {time.monotonic_ns()};"


class Tally:
    """What the subscribers of this process have received, each pair counted once."""

    def __init__(self, subscribers: int, posts: int) -> None:
        self.subscribers = subscribers
        self.expected = subscribers * posts
        self.seen = [bytearray(posts) for _ in range(subscribers)]
        self.latencies_us: list[list[int]] = [[] for _ in range(posts)]
        self.delivered = 0
        self.lost = 0
        self.all_delivered = asyncio.Event()

    def record(self, subscriber: int, post: int, latency_ns: int) -> None:
        seen = self.seen[subscriber]
        if post >= len(seen) or seen[post]:
            return
        seen[post] = 1
        self.latencies_us[post].append(latency_ns // 1000)
        self.delivered += 1
        if self.delivered == self.expected:
            self.all_delivered.set()


class Subscriber(asyncio.Protocol):
    """One ``GET /events`` connection."""

    def __init__(self, index: int, tally: Tally, request: bytes) -> None:
        self.index = index
        self.tally = tally
        self.request = request
        self.opened: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None
        self._tail = b""
        self._status_checked = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = typing.cast(asyncio.Transport, transport)
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        now = time.monotonic_ns()
        buf = self._tail + data if self._tail else data
        if not self.opened.done():
            self._check_opening(buf)
        end = 0
        for match in MARKER.finditer(buf):
            self.tally.record(self.index, int(match[1]), now - int(match[2]))
            end = match.end()
        self._tail = buf[end:][-TAIL:]

    def _check_opening(self, buf: bytes) -> None:
        # The status line comes in the first read; retry: may come in a later one.
        if not self._status_checked:
            self._status_checked = True
            if not buf.startswith(b"HTTP/1.1 200"):
                self.opened.set_result(False)
                if self.transport is not None:
                    self.transport.close()
                return
        if b"\nretry:" in buf:
            self.opened.set_result(True)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_result(False)
        else:
            self.tally.lost += 1


async def open_one(port: int, index: int, tally: Tally, gate: asyncio.Semaphore) -> Subscriber:
    request = f"GET /events?format=json HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
    request += "Accept: text/event-stream\r\n\r\n"
    loop = asyncio.get_running_loop()
    async with gate:
        _, sub = await loop.create_connection(
            lambda: Subscriber(index, tally, request.encode()), "127.0.0.1", port
        )
        # Ready means subscribed: both servers join the fan-out before sending retry:.
        await sub.opened
    return sub


async def open_all(port: int, tally: Tally, within: float) -> list[Subscriber]:
    """Open every subscriber, at most CONNECTS_IN_FLIGHT at a time, within ``within`` s."""
    gate = asyncio.Semaphore(CONNECTS_IN_FLIGHT)
    tasks = [
        asyncio.ensure_future(open_one(port, i, tally, gate)) for i in range(tally.subscribers)
    ]
    _, pending = await asyncio.wait(tasks, timeout=within)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    done = [t for t in tasks if not t.cancelled() and t.exception() is None]
    return [t.result() for t in done]


def emit(message: dict[str, object]) -> None:
    sys.stdout.write(json.dumps(message, separators=(",", ":")) + "\n")
    sys.stdout.flush()


async def stdin_reader() -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


async def run(args: argparse.Namespace) -> None:
    tally = Tally(args.subscribers, args.posts)
    parent = await stdin_reader()
    subs = await open_all(args.port, tally, args.connect_timeout)
    ready = [s for s in subs if s.opened.result()]
    emit({"ready": len(ready), "failed": args.subscribers - len(ready)})
    # The parent is bounded too; these bounds only matter if it is stuck or gone.
    with contextlib.suppress(TimeoutError):
        if await asyncio.wait_for(parent.readline(), args.max_wait):
            await asyncio.wait_for(tally.all_delivered.wait(), args.drain)
    emit({"delivered": tally.delivered, "lost": tally.lost, "latencies_us": tally.latencies_us})
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(parent.readline(), args.max_wait)
    for sub in subs:
        if sub.transport is not None:
            sub.transport.abort()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--subscribers", type=int, required=True)
    parser.add_argument("--posts", type=int, required=True)
    parser.add_argument("--connect-timeout", type=float, default=60.0)
    parser.add_argument("--drain", type=float, default=30.0, help="seconds after the last post")
    parser.add_argument("--max-wait", type=float, default=600.0)
    uvloop.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
