"""The reaction watchers: M JSON streams on raw sockets, each keeping what a screen
would show of one post's reactions (``python -m bench.watchers``).

Conversation with the parent, one line each:

    stdout  {"ready": R}                 every stream has its opening ``retry:``
    stdin   cut K                        close K streams and open them again at once
                                         with Last-Event-ID, as a browser does
    stdout  {"ready": R}
    stdin   final JSON                   the database's counts for the post: wait until
                                         every stream's last counts equal them (or the
                                         settle deadline passes), then report
    stdout  {"exact": E, "frames": [...], "per_second_max": P, "stale_ids": S, ...}

Rationale:

1. Each stream parses whole SSE messages: a ``post-reactions`` event for the post
   counts as a frame, and its counts replace the stream's. Nothing else is kept per
   stream but the last id, the counts and when each frame arrived, bounded by
   ``MAX_TIMES``.
2. A frame whose id is not newer than the stream's last one is stale (a duplicate or
   a replay of what it had): counted, never applied.
3. ``per_second_max`` is the most frames any stream got within one second, over the
   whole run: what a screen sees of the storm.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from typing import Any, cast

HOST = "127.0.0.1"
MAX_TIMES = 10_000


class Watch(asyncio.Protocol):
    def __init__(self, post: int) -> None:
        self.post = post
        self.buffer = b""
        self.last_id = 0
        self.counts: dict[str, int] = {}
        self.times: list[float] = []
        self.stale = 0
        self.ready = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but write the same.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.ready.done() and b"retry:" in self.buffer:
            self.ready.set_result(True)
        # Chunked framing is left in: an event is one chunk, and its lines are whole.
        while b"\n\n" in self.buffer:
            message, self.buffer = self.buffer.split(b"\n\n", 1)
            self._message(message.decode("utf-8", "replace"))

    def _message(self, message: str) -> None:
        fields: dict[str, str] = {}
        for line in message.splitlines():
            name, _, value = line.partition(":")
            fields[name.strip()] = value.strip()
        if fields.get("event") != "post-reactions" or "id" not in fields:
            return
        event_id = int(fields["id"])
        if event_id <= self.last_id:
            self.stale += 1
            return
        self.last_id = event_id
        payload = json.loads(fields["data"])
        if payload["post"]["id"] != self.post:
            return
        self.counts = {r["reaction"]: r["count"] for r in payload["post"].get("reactions", [])}
        if len(self.times) < MAX_TIMES:
            self.times.append(time.monotonic())

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ready.done():
            self.ready.set_result(False)


async def open_watch(port: int, post: int, watch: Watch | None = None) -> Watch:
    """A stream of #general as JSON; ``watch`` resumes from its last id."""
    fresh = watch or Watch(post)
    if watch is not None:
        fresh.ready = asyncio.get_running_loop().create_future()
        fresh.buffer = b""
    loop = asyncio.get_running_loop()
    await loop.create_connection(lambda: fresh, HOST, port)
    resume = f"Last-Event-ID: {fresh.last_id}\r\n" if fresh.last_id else ""
    request = (
        "GET /events?format=json&channel=general HTTP/1.1\r\n"
        f"Host: {HOST}:{port}\r\nAccept: text/event-stream\r\n{resume}\r\n"
    )
    assert fresh.transport is not None
    fresh.transport.write(request.encode())
    return fresh


async def connect(port: int, post: int, count: int, within: float) -> list[Watch]:
    watches = []
    for start in range(0, count, 200):  # within the listen queue
        batch = [open_watch(port, post) for _ in range(min(200, count - start))]
        watches += await asyncio.gather(*batch)
    async with asyncio.timeout(within):
        await asyncio.gather(*(w.ready for w in watches))
    return watches


def per_second_max(times: list[float]) -> int:
    best, first = 0, 0
    for last, at in enumerate(times):
        while at - times[first] >= 1.0:
            first += 1
        best = max(best, last - first + 1)
    return best


async def settle(watches: list[Watch], final: dict[str, int], within: float) -> float:
    started = time.monotonic()
    deadline = started + within
    while time.monotonic() < deadline:
        if all(w.counts == final for w in watches):
            break
        await asyncio.sleep(0.05)  # a load client polls its own state; not a test
    return time.monotonic() - started


async def main(args: argparse.Namespace) -> None:
    watches = await connect(args.port, args.post, args.watchers, args.connect_timeout)
    say({"ready": sum(w.ready.result() for w in watches)})
    reader = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := (await reader.readline()).decode().strip():
        word, _, rest = line.partition(" ")
        if word == "cut":
            cut = watches[: int(rest)]
            for w in cut:
                assert w.transport is not None
                w.transport.close()
            await asyncio.gather(*(open_watch(args.port, args.post, w) for w in cut))
            async with asyncio.timeout(args.connect_timeout):
                await asyncio.gather(*(w.ready for w in cut))
            say({"ready": len(cut)})
        elif word == "final":
            final = json.loads(rest)
            took = await settle(watches, final, args.settle)
            frames = [len(w.times) for w in watches]
            say(
                {
                    "watchers": len(watches),
                    "exact": sum(w.counts == final for w in watches),
                    "settled_s": took,
                    "frames_max": max(frames),
                    "frames_mean": sum(frames) / len(frames),
                    "per_second_max": max(per_second_max(w.times) for w in watches),
                    "stale_ids": sum(w.stale for w in watches),
                }
            )
            return


def say(result: dict[str, Any]) -> None:
    print(json.dumps(result), flush=True)


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.watchers")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--post", type=int, required=True)
    parser.add_argument("--watchers", type=int, required=True)
    parser.add_argument("--connect-timeout", type=float, default=120.0)
    parser.add_argument("--settle", type=float, default=30.0)
    return parser.parse_args()


if __name__ == "__main__":
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    asyncio.run(main(parse()))
