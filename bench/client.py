"""The load client: holds N SSE subscribers on raw sockets and times every event.

It runs in its own process (``python -m bench.client``): each loopback connection
costs a file descriptor at both ends, the open-files limit is per process, and the
server's RSS must not include the client's buffers.

Conversation with the parent, one JSON object or command per line:

    stdout  {"ready": R, "failed": F, ...}  every subscriber has its opening line (or
                                            the connect deadline passed)
    stdin   posted K                        posts 0..K-1 have been sent
    stdout  {"delivered": ..., ...}         every subscriber has every one of them (or
                                            the drain deadline passed)
    stdin   reconnect                       (after a server restart) open every lost
                                            subscriber again, with Last-Event-ID
    stdout  {"ready": R, "failed": F, ...}
    stdin   close (or EOF)                  the parent has read the server's RSS: hang up

``posted`` without K means all ``--posts``. ``posted`` and ``reconnect`` may repeat.

Rationale:

1. An ``asyncio.Protocol`` on uvloop rather than a reader task per connection: nothing
   lives per subscriber but the protocol object and a short tail of bytes, and the
   receive time is taken in ``data_received``, the moment the loop hands the bytes over.
2. The send time travels inside the post body as CLOCK_MONOTONIC nanoseconds, which is
   one clock for every process on the machine. The client needs no event ids and no
   JSON parsing, so feed, Nchan and the baseline are measured by exactly the same code:
   Nchan relays the POST body as the event's data, feed and the baseline put it in
   their JSON.
3. The marker is searched for in the raw bytes, chunked framing and all (the servers
   send each event as one chunk); the tail kept between reads catches a marker that a
   read boundary split in two. feed's JSON carries the body twice (``body`` and
   ``html``), Nchan's data once: the search skips from an event's first marker to the
   end of that event, so every target costs the client one match per event.
4. Each socket is made here, not by ``create_connection``: a source address other than
   127.0.0.1 (each loopback address has its own ephemeral ports), and for the slow
   readers a small receive buffer and a network-sized MSS, must be set before
   ``connect``.
   ``IP_BIND_ADDRESS_NO_PORT`` leaves the port choice to ``connect``.
5. Slow readers (``--slow``, the first S subscribers) read their opening and then stop
   reading; they count neither towards delivery nor latency. The server should drop
   them. A socket that is not read never reports its end either, so after the posts
   they read again, only to see whether the server hung up: ``dropped_slow``.
6. With ``--track-ids`` each subscriber remembers the last ``id:`` it saw and counts
   ids that do not increase (a replayed or duplicated event); a reconnect sends the
   last id as ``Last-Event-ID``, as a browser does.
7. With ``--runs`` (the throughput scenario, hundreds of thousands of events a second)
   a subscriber does not look at each event: it proves each read's events a run of ids
   from the first, the last and their count, and samples latency once a read; one
   subscriber per process reads every event as the witness (bench/runs.py). The
   fan-out keeps timing every (subscriber, post) pair, which costs about 1.7 µs of
   CPU a pair: nothing at 20 posts, more than the server at thousands a second.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import re
import socket
import sys
import time
import typing

import uvloop

from bench import runs

MARKER = re.compile(rb"bench post (\d+) at (\d+);")
EVENT_ID = re.compile(rb"\nid: ?(\d+)\r?\n")
# An opening's position: a message with only an id (feed's, when not resuming).
POSITION = re.compile(rb"(?:\r?\n)?id: ?([^\r\n]*)\r?\n\r?\n")
TAIL = 128  # longer than any marker or opening line
CONNECTS_IN_FLIGHT = 200  # stays well under uvicorn's accept backlog (2048)
IP_BIND_ADDRESS_NO_PORT = 24  # from linux/in.h; Python's socket module lacks it
SLOW_RCVBUF = 4096  # the kernel doubles it; a few KiB in flight, then the window closes
# A network's segment size, not loopback's 64 KiB: the kernel sizes the server's send
# buffer from it (about 20 segments), and a loopback-sized one would hold megabytes.
SLOW_MSS = 1400
SLOW_CHECK = 3.0  # seconds for a dropped slow reader's socket to report its end


def marker(post: int, pad: int = 0) -> str:
    """A post body the client recognises; the timestamp is taken now. ``pad``
    characters of filler make the event bigger (the slow-reader scenario)."""
    filler = f" {'x' * (pad - 1)}" if pad > 0 else ""
    return f"bench post {post} at {time.monotonic_ns()};{filler}"


class Tally:
    """What the subscribers of this process have received, each pair counted once."""

    def __init__(self, subscribers: int, posts: int, slow: int, by_runs: bool = False) -> None:
        self.subscribers = subscribers
        self.slow = slow
        self.fast = subscribers - slow
        self.posts = posts
        self.expected = self.fast * posts
        self.by_runs = by_runs  # (7)
        self.seen = [] if by_runs else [bytearray(posts) for _ in range(subscribers)]
        self.latencies_us: list[list[int]] = [] if by_runs else [[] for _ in range(posts)]
        # (7) Sampled latencies: microseconds, to three digits, and how many pairs each.
        self.latency_counts: collections.Counter[int] = collections.Counter()
        self.delivered = 0
        self.lost = 0
        self.dropped_slow = 0
        self.stale_ids = 0  # with --track-ids: ids that did not increase
        self.last_at_ns = 0  # when the latest pair was counted
        self.all_delivered = asyncio.Event()

    def expect(self, posts: int) -> None:
        """From now on, delivery is complete once every fast subscriber has posts 0..posts-1."""
        self.expected = self.fast * posts
        self.all_delivered.clear()
        if self.delivered >= self.expected:
            self.all_delivered.set()

    def record(self, subscriber: int, post: int, latency_ns: int, now: int) -> None:
        seen = self.seen[subscriber]
        if post >= len(seen) or seen[post]:
            return
        seen[post] = 1
        self.latencies_us[post].append(latency_ns // 1000)
        self.delivered += 1
        self.last_at_ns = now
        if self.delivered == self.expected:
            self.all_delivered.set()

    def add(self, pairs: int, now: int) -> None:
        """``pairs`` more delivered, proved as a run (7)."""
        self.delivered += pairs
        self.last_at_ns = now
        if self.delivered >= self.expected:
            self.all_delivered.set()

    def run(self, index: int) -> runs.Run | None:
        """Subscriber ``index``'s run check, when counting by runs; the first fast
        subscriber is the witness (7)."""
        if not self.by_runs or index < self.slow:
            return None
        return runs.Run(self.posts, witness=index == self.slow)


class Subscriber(asyncio.Protocol):
    """One ``GET /events`` connection."""

    def __init__(
        self, index: int, tally: Tally, request: bytes, ready: bytes, last_id: int | None
    ) -> None:
        self.index = index
        self.tally = tally
        self.request = request
        self.ready = ready
        self.slow = index < tally.slow
        self.last_id = last_id  # None: ids are not tracked
        loop = asyncio.get_running_loop()
        self.opened: asyncio.Future[bool] = loop.create_future()
        self.ended: asyncio.Future[None] = loop.create_future()
        self.transport: asyncio.Transport | None = None
        self.lost = False
        self.why = "closed before its opening"  # if it never opens
        self._tail = b""
        self._status_checked = False
        self.run = tally.run(index)  # (7)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = typing.cast(asyncio.Transport, transport)
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        now = time.monotonic_ns()
        if self.run is not None and self.opened.done():
            self._read_runs(data, now)
            return
        buf = self._tail + data if self._tail else data
        if not self.opened.done():
            self._check_opening(buf)
            if self.slow and self.opened.done() and self.transport is not None:
                self.transport.pause_reading()  # until the end, to see if it was dropped
            elif self.run is not None:
                self._tail = b"" if self.opened.done() else buf[-TAIL:]
                if self.opened.done() and self.opened.result():
                    self._read_runs(self._after_opening(buf), now)
                return
        if self.slow:
            return
        end = 0
        match = MARKER.search(buf)
        while match is not None:
            self.tally.record(self.index, int(match[1]), now - int(match[2]), now)
            end = match.end()
            # The first marker of an event is enough (see 3): go on at the next event.
            boundary = buf.find(b"\n\n", end)
            match = None if boundary < 0 else MARKER.search(buf, boundary)
        if self.last_id is not None:
            end = max(end, self._track_ids(buf))
        self._tail = buf[end:][-TAIL:]

    def _after_opening(self, buf: bytes) -> bytes:
        """What follows the stream's opening; a position in it starts the run (7).
        What is kept starts with the newline before it, as every line after the
        first does: the runs look for ``\nid:``."""
        at = buf.find(self.ready)
        end = buf.find(b"\n\n", at)
        rest = buf[end + 2 :] if at >= 0 and end >= 0 else b""
        position = POSITION.match(rest)
        if position is not None and self.run is not None:
            # feed's position is 0 while its log is empty: then any first id will do.
            self.run.last = runs.event_id(position[1]) if position[1] != b"0" else None
            rest = rest[position.end() :]
        return b"\n" + rest

    def _read_runs(self, data: bytes, now: int) -> None:
        """Check the whole events in ``data`` as runs, after the one the last read left
        unfinished; keep the rest for the next read (7). ``data`` itself is not copied:
        only that one event, and what is left over."""
        start = 0
        if self._tail.strip():  # not only the line ends after the last whole event
            # Where the unfinished event ends: its blank line may straddle the reads,
            # or be in a later read.
            if self._tail[-1:] == data[:1] == b"\n":
                ends = 1
            else:
                ends = data.find(b"\n\n") + 2
                if ends < 2:
                    self._tail = self._pending(self._tail + data)
                    return
            head = self._tail + data[:ends]
            self._count(head, 0, len(head), now)
            start = ends - 1  # from the newline that ends that event, as every line has
        end = data.rfind(b"\n\n", start) + 2
        if end < 2:
            self._tail = self._pending(data[start:])
            return
        self._count(data, start, end, now)
        self._tail = data[end - 1 :]  # from the newline that ends the last event

    def _count(self, buf: bytes, start: int, end: int, now: int) -> None:
        assert self.run is not None
        got = self.run.read(buf, start, end, now, self.tally.latency_counts)
        if got:
            self.tally.add(got, now)

    def _pending(self, unfinished: bytes) -> bytes:
        """An event not finished yet, unless it is longer than any event (7)."""
        if len(unfinished) <= runs.MAX_PENDING:
            return unfinished
        assert self.run is not None
        self.run.broken += 1  # no event ends: this is not a stream of events
        return b""

    def _track_ids(self, buf: bytes) -> int:
        end = 0
        for match in EVENT_ID.finditer(buf):
            event_id = int(match[1])
            assert self.last_id is not None
            if event_id <= self.last_id:
                self.tally.stale_ids += 1
            else:
                self.last_id = event_id
            end = match.end()
        return end

    def _check_opening(self, buf: bytes) -> None:
        # The status line comes in the first read; the opening line may come later.
        if not self._status_checked:
            self._status_checked = True
            if not buf.startswith(b"HTTP/1.1 200"):
                self.why = buf[:12].decode(errors="replace")
                self.opened.set_result(False)
                if self.transport is not None:
                    self.transport.close()
                return
        if self.ready in buf:
            self.opened.set_result(True)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.ended.set_result(None)
        if not self.opened.done():
            self.opened.set_result(False)
        elif self.slow:
            self.tally.dropped_slow += 1
        else:
            self.tally.lost += 1


class Connector:
    """Opens subscribers to one server from one source address."""

    def __init__(self, args: argparse.Namespace, tally: Tally) -> None:
        self.host, self.port, self.source = "127.0.0.1", args.port, args.source
        self.path = args.path
        self.tally = tally
        self.ready = args.ready.encode().decode("unicode_escape").encode()
        self.track_ids = args.track_ids
        self.opened_at_ns = 0
        self.errors: collections.Counter[str] = collections.Counter()  # why opens failed

    def request(self, last_id: int | None) -> bytes:
        lines = [
            f"GET {self.path} HTTP/1.1",
            f"Host: {self.host}:{self.port}",
            "Accept: text/event-stream",
        ]
        if last_id:
            lines.append(f"Last-Event-ID: {last_id}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    def _socket(self, slow: bool) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
            if slow:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SLOW_RCVBUF)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, SLOW_MSS)
            sock.bind((self.source, 0))
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        return sock

    async def open_one(
        self, index: int, last_id: int | None, gate: asyncio.Semaphore
    ) -> Subscriber:
        loop = asyncio.get_running_loop()
        slow = index < self.tally.slow
        async with gate:
            sock = self._socket(slow)
            try:
                await loop.sock_connect(sock, (self.host, self.port))
            except BaseException:
                sock.close()
                raise
            tracked = (last_id or 0) if self.track_ids else None
            request = self.request(last_id)
            _, sub = await loop.create_connection(
                lambda: Subscriber(index, self.tally, request, self.ready, tracked), sock=sock
            )
            # Ready means subscribed: every target joins the fan-out before its opening.
            await sub.opened
        self.opened_at_ns = max(self.opened_at_ns, time.monotonic_ns())
        return sub

    async def open_all(
        self, wanted: dict[int, int | None], within: float, in_flight: int
    ) -> list[Subscriber]:
        """Open ``wanted`` (index: Last-Event-ID) within ``within`` s, ``in_flight`` at a
        time (0: all at once)."""
        gate = asyncio.Semaphore(in_flight or len(wanted) or 1)
        tasks = [asyncio.ensure_future(self.open_one(i, last, gate)) for i, last in wanted.items()]
        _, pending = await asyncio.wait(tasks, timeout=within)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for task in tasks:
            if not task.cancelled() and task.exception() is not None:
                self.errors[type(task.exception()).__name__] += 1
        self.errors["connect timeout"] += len(pending)
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


def results(tally: Tally, subs: dict[int, Subscriber]) -> dict[str, object]:
    found: dict[str, object] = {
        "delivered": tally.delivered,
        "expected": tally.expected,
        "lost": tally.lost,
        "dropped_slow": tally.dropped_slow,
        "open_slow": sum(1 for s in subs.values() if s.slow and not s.lost),
        "stale_ids": tally.stale_ids,
        "last_at_ns": tally.last_at_ns,
        "latencies_us": tally.latencies_us,
    }
    return found | (checked_runs(tally, subs) if tally.by_runs else {})


def checked_runs(tally: Tally, subs: dict[int, Subscriber]) -> dict[str, object]:
    """What the runs prove (7, bench/runs.py): ``broken`` counts ids that did not
    follow, posts the witness saw twice or not at all, and subscribers that did not
    end on the witness's last id with as many events."""
    checked = [s.run for s in subs.values() if s.run is not None]
    witness = next((r for r in checked if r.witness), None)
    if witness is None:
        return {"broken": len(checked) or 1, "run": "", "latency_counts": {}}
    posts = tally.expected // max(1, tally.fast)
    astray = sum(1 for r in checked if (r.last, r.count) != (witness.last, witness.count))
    broken = sum(r.broken for r in checked) + witness.missing(posts) + astray
    return {
        "broken": broken,
        "run": f"{runs.shown(witness.first)}..{runs.shown(witness.last)}",
        "latency_counts": {str(us): n for us, n in tally.latency_counts.items()},
    }


async def check_slow(tally: Tally, subs: dict[int, Subscriber]) -> None:
    """Read the slow sockets again until each has ended, or SLOW_CHECK seconds."""
    slow = [s for s in subs.values() if s.slow and not s.lost and s.transport is not None]
    for sub in slow:
        assert sub.transport is not None
        sub.transport.resume_reading()
    if slow:
        await asyncio.wait([s.ended for s in slow], timeout=SLOW_CHECK)


async def connect(
    connector: Connector,
    subs: dict[int, Subscriber],
    wanted: dict[int, int | None],
    args: argparse.Namespace,
    in_flight: int,
    retry: float = 0.0,
) -> None:
    """Open ``wanted``; with ``retry`` > 0, try the failed ones again after ``retry`` s, as
    an EventSource does, until all are open or the connect deadline passes."""
    started = time.monotonic_ns()
    deadline = time.monotonic() + args.connect_timeout
    connector.errors.clear()
    attempts = 0
    while wanted:
        attempts += 1
        within = max(0.1, deadline - time.monotonic())
        opened = await connector.open_all(wanted, within, in_flight)
        subs.update((s.index, s) for s in opened)
        connector.errors.update(s.why for s in opened if not s.opened.result())
        good = {s.index for s in opened if s.opened.result()}
        wanted = {i: last for i, last in wanted.items() if i not in good}
        if not retry or not wanted or time.monotonic() + retry >= deadline:
            break
        await asyncio.sleep(retry)  # the EventSource retry interval, not a wait for state
    emit(
        {
            "ready": sum(
                1 for s in subs.values() if s.opened.done() and s.opened.result() and not s.lost
            ),
            "failed": len(wanted),
            "why": dict(connector.errors),  # every failed attempt, retried or not
            "attempts": attempts,
            "connect_s": max(0, connector.opened_at_ns - started) / 1e9,
        }
    )


async def run(args: argparse.Namespace) -> None:
    tally = Tally(args.subscribers, args.posts, args.slow, args.runs)
    connector = Connector(args, tally)
    parent = await stdin_reader()
    subs: dict[int, Subscriber] = {}
    await connect(connector, subs, dict.fromkeys(range(args.subscribers)), args, args.in_flight)
    # The parent is bounded too; these bounds only matter if it is stuck or gone.
    while True:
        try:
            line = (await asyncio.wait_for(parent.readline(), args.max_wait)).split()
        except TimeoutError:
            break
        if not line or line[0] == b"close":
            break
        if line[0] == b"posted":
            tally.expect(int(line[1]) if len(line) > 1 else args.posts)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(tally.all_delivered.wait(), args.drain)
            if tally.slow:
                await check_slow(tally, subs)
            emit(results(tally, subs))
        elif line[0] == b"reconnect":
            wanted = {i: s.last_id for i, s in subs.items() if s.lost}
            await connect(connector, subs, wanted, args, args.reconnect_in_flight, args.retry)
    for sub in subs.values():
        if sub.transport is not None:
            sub.transport.abort()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--subscribers", type=int, required=True)
    parser.add_argument("--posts", type=int, required=True)
    parser.add_argument("--source", default="127.0.0.1", help="a loopback source address")
    parser.add_argument("--path", default="/events?format=json")
    parser.add_argument(
        "--ready", default="\\nretry:", help="the bytes that say a stream is subscribed"
    )
    parser.add_argument("--slow", type=int, default=0, help="subscribers that never read")
    parser.add_argument("--track-ids", action="store_true")
    parser.add_argument("--runs", action="store_true", help="prove runs of ids, sample latency")
    parser.add_argument("--in-flight", type=int, default=CONNECTS_IN_FLIGHT)
    parser.add_argument(
        "--reconnect-in-flight", type=int, default=0, help="0: every reconnect at once"
    )
    parser.add_argument(
        "--retry", type=float, default=0.0, help="seconds before a failed reconnect is retried"
    )
    parser.add_argument("--connect-timeout", type=float, default=60.0)
    parser.add_argument("--drain", type=float, default=30.0, help="seconds after the last post")
    parser.add_argument("--max-wait", type=float, default=600.0)
    uvloop.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
