"""Broadcast inside one process: subscribers and the hub.

The messages themselves are built in sse.py; the hub hands out their bytes.

The hot path, and why it looks the way it does:

1. The hub encodes each event once per output format, and frames it once more as
   an HTTP/1.1 chunk (sse.py's ``chunk``). Every subscriber of that format gets the
   same two ``bytes`` objects; nothing is rendered, encoded or copied per subscriber.
2. ``Hub.publish`` never awaits, and for most subscribers it does the write
   itself. Once a stream has written its opening (and replay) and nothing is
   pending, it *attaches* its connection's transport (stream.py, on the pre-framed
   chunk), and the hub writes the shared chunk straight to it: no task wake-up, no
   ASGI message, no per-subscriber ``b"".join``. A stream that is not attached
   (still catching up, or on a server where the transport cannot be found safely)
   gets a backlog item, and its writer task is woken to send it through ASGI.
   Profiled at 10,000 subscribers, the server's time went from mostly uvicorn
   framing and writing one chunk per subscriber, each after a task wake-up, to
   mostly the ``send`` syscall of one write per subscriber (docs/benchmarks.md, the
   path of each write).
3. A backlog is bounded in bytes. For an attached stream the backlog *is* the
   transport's write buffer; otherwise it is the item list. A subscriber that
   falls more than one message behind ``limit`` is marked ``overflowed`` and its
   connection dropped without a final chunk (an attached one is aborted, since a
   polite close would keep the unread bytes until the client read them); it
   reconnects with ``Last-Event-ID`` and the store replays what it missed.
   Nothing is lost, and memory stays bounded however many clients stall.
4. Items carry the event id, and the id filter runs on both paths, so a writer
   drops what a replay already sent: a subscriber registers *before* its replay
   query runs, so an event that commits during the replay arrives both ways. Such
   events wait as items until the writer has sent the replay, then go out once,
   in id order; only then may the stream attach, so direct writes never overtake
   or interleave with the writer's own.
5. Under a burst of posts the relay hands over several events at once
   (``publish_many``): each attached subscriber gets them in one write, and
   subscribers who get the same events share that one joined chunk. With many
   clients posting as fast as they can, the per-event writes had been most of the
   server's time after the write transactions (docs/benchmarks.md, publish
   throughput); joined, they are a small part of it, and the group commit
   (storage/posts.py, on new posts written in groups) took care of the transactions.
6. Heartbeats come from one hub-wide timer, not one timer per connection; what each
   format gets is encoded once, in sse.py (on heartbeats).
7. ``/metrics`` and ``/api/presence`` need no credential, so nothing they ask of
   the hub may cost a walk over every open stream per request: a few pollers at
   thousands of streams slowed delivery several times over. Open streams by
   channel and format are counted as streams subscribe and unsubscribe; what
   only a walk can tell (events written, the largest backlog, the oldest stream)
   is walked at most once per ``STATS_MAX_AGE`` however often it is asked.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from feed.sse import HEARTBEATS, Format, chunk

# Seconds a walk over every subscriber answers ``Hub.stats`` for (7): scrapes come
# every 15 s or more, presence and the workers' metrics share every second or more.
STATS_MAX_AGE = 1.0
# The channel label of a stream of every channel, in counts by channel and format.
EVERY_CHANNEL = "*"

# An item of a backlog: (event id, or None for a message without one; the encoded
# SSE bytes; the same bytes framed as one HTTP/1.1 chunk, for direct writes).
Item = tuple[int | None, bytes, bytes]


def item(event_id: int | None, data: bytes) -> Item:
    return (event_id, data, chunk(data))


# Chunks joined from several items in one ``publish_many``, by format and event ids.
Joined = dict[tuple[Format, tuple[int | None, ...]], bytes]

# Each format's heartbeat, as the one item every subscriber of it shares (6).
BEATS: Mapping[Format, Item] = {fmt: item(None, beat) for fmt, beat in HEARTBEATS.items()}


class Outgoing(NamedTuple):
    """One log event on its way to the hub, encoded for the formats wanted."""

    id: int
    channel: str
    frames: Mapping[Format, bytes]
    private: bool = False


class Transport(Protocol):
    """What a direct write needs of an asyncio transport."""

    def write(self, data: bytes) -> None: ...
    def get_write_buffer_size(self) -> int: ...
    def is_closing(self) -> bool: ...
    def abort(self) -> None: ...


# Shared: since Python 3.10 every ``frozenset()`` is a new object, and there is one
# Subscriber per open stream.
NO_CHANNELS: frozenset[str] = frozenset()


class Subscriber:
    """One open stream: what it wants, what it has been sent, what is pending."""

    __slots__ = (
        "_interrupt",
        "_pending",
        "_pending_bytes",
        "_transport",
        "_waiter",
        "channels",
        "closed",
        "format",
        "last_id",
        "limit",
        "on_overflow",
        "opened_at",
        "overflowed",
        "private",
        "sent",
        "who",
    )

    def __init__(
        self, fmt: Format, channels: frozenset[str] | None, *, last_id: int, limit: int
    ) -> None:
        self.format = fmt
        self.channels = channels
        self.last_id = last_id
        self.limit = limit
        self.closed = False
        self.overflowed = False
        # Called once when the backlog overflows: the stream uses it to abandon a
        # write that is stuck behind a full socket.
        self.on_overflow: Callable[[], object] | None = None
        self._pending: list[Item] = []
        self._pending_bytes = 0
        self._waiter: asyncio.Future[None] | None = None
        # Set once the stream's opening (and replay) is on the wire and its writer is
        # idle: from then on the hub writes to the connection itself.
        self._transport: Transport | None = None
        self._interrupt: Callable[[], object] | None = None
        self.opened_at = time.time()
        self.sent = 0  # events written, heartbeats not counted
        # The private channels this stream may read; None: all of them. Checked for
        # every private event, so a grant taken away mid-stream stops the next one.
        self.private: frozenset[str] | None = NO_CHANNELS
        # Who opened the stream (access.py), so a revoked credential can end it.
        self.who: object = None

    def offer(self, item: Item) -> None:
        """Write ``item`` or queue it, without waiting; drop the subscriber if it is
        too far behind."""
        if self.closed:
            return
        if self._transport is not None:
            self._write(item, self._transport)
            return
        self._pending.append(item)
        self._pending_bytes += len(item[1])
        # One event larger than the limit on its own still goes out: only a client
        # that falls behind by more than one message is dropped.
        if self._pending_bytes > self.limit and len(self._pending) > 1:
            self._overflow()
        else:
            self._wake()

    def offer_many(self, items: list[Item], joined: Joined) -> None:
        """``offer`` for several events in id order, written as one chunk when attached.
        ``joined`` keeps the chunks already made in this batch, by format and ids."""
        transport = self._transport
        if self.closed or transport is None:
            for each in items:
                self.offer(each)
            return
        if transport.is_closing():
            return
        fresh = [each for each in items if each[0] is None or each[0] > self.last_id]
        if not fresh:
            return
        key = (self.format, tuple(each[0] for each in fresh))
        data = joined.get(key)
        if data is None:
            data = joined[key] = chunk(b"".join(each[1] for each in fresh))
        last = fresh[-1][0]
        if last is not None:
            self.last_id = last
        self.sent += sum(1 for each in fresh if each[0] is not None)
        transport.write(data)
        waiting = transport.get_write_buffer_size()
        if waiting > self.limit and waiting > len(data):
            self._overflow()

    def _write(self, item: Item, transport: Transport) -> None:
        if transport.is_closing():
            return  # the client left; the stream's disconnect watcher closes us
        event_id = item[0]
        if event_id is not None:
            if event_id <= self.last_id:
                return
            self.last_id = event_id
            self.sent += 1
        data = item[2]
        transport.write(data)
        # The transport's buffer is the backlog. More waiting than this one message
        # means the client was already behind when it came.
        waiting = transport.get_write_buffer_size()
        if waiting > self.limit and waiting > len(data):
            self._overflow()

    def _overflow(self) -> None:
        self.overflowed = True
        self._pending, self._pending_bytes = [], 0
        transport = self._transport
        self.close()
        if transport is not None:
            # Cut at once: a polite close would hold the unsent bytes until the
            # client reads them, which it is not doing.
            transport.abort()
        elif self.on_overflow is not None:
            self.on_overflow()

    def attach(self, transport: Transport, interrupt: Callable[[], object]) -> bool:
        """Let the hub write straight to ``transport`` from now on. Only while
        nothing is pending, so the writer's bytes and the hub's never interleave.

        The writer then waits on its connection, not on this subscriber, so
        ``close`` calls ``interrupt`` (once) instead of waking it."""
        if self._pending or self.closed:
            return False
        self._transport = transport
        self._interrupt = interrupt
        return True

    @property
    def attached(self) -> bool:
        return self._transport is not None

    def close(self) -> None:
        """End the stream after what is already pending (or at once if overflowed)."""
        if self.closed:
            return
        self.closed = True
        if self._interrupt is not None:
            self._interrupt()
        else:
            self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait(self) -> None:
        """Sleep until something is pending or the subscriber closes."""
        if self._pending or self.closed:
            return
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    def take(self) -> bytes:
        """Everything pending that this subscriber has not been sent yet, as one chunk."""
        items, self._pending, self._pending_bytes = self._pending, [], 0
        last = self.last_id
        chunks = []
        for event_id, data, _ in items:
            if event_id is None:
                chunks.append(data)
            elif event_id > last:
                chunks.append(data)
                last = event_id
                self.sent += 1
        self.last_id = last
        return b"".join(chunks)

    @property
    def backlog_bytes(self) -> int:
        if self._transport is not None:
            return self._transport.get_write_buffer_size()
        return self._pending_bytes


@dataclass(frozen=True, slots=True)
class HubStats:
    """What the hub holds right now, for /metrics, /readyz, presence and /admin."""

    subscribers: int
    # (channel, or "*" for a stream of every channel; format) -> open streams
    by_channel_format: dict[tuple[str, str], int]
    oldest_opened_at: float | None
    largest_backlog_bytes: int
    # Totals since start: events written to streams, slow streams dropped.
    events_sent: int
    dropped: int


class Hub:
    """Fans encoded events out to the subscribers of one process."""

    def __init__(self, heartbeat: float) -> None:
        self.heartbeat = heartbeat
        self._by_channel: dict[str | None, set[Subscriber]] = {}
        self._formats: dict[Format, int] = dict.fromkeys(Format, 0)
        self._ticker: asyncio.Task[None] | None = None
        self.closing = False
        # Counts from streams that have ended; live ones are summed when asked.
        self._sent_by_closed = 0
        self.dropped = 0
        # Kept as streams subscribe and unsubscribe (7).
        self._count = 0
        self._counts: dict[tuple[str, str], int] = {}
        # The last walk (oldest stream, largest backlog, events sent) and its time (7).
        self._walked: tuple[float | None, int, int] | None = None
        self.walked_at = 0.0

    def __len__(self) -> int:
        return self._count

    def subscribers(self) -> set[Subscriber]:
        # A subscriber to several channels is in several sets.
        everyone: set[Subscriber] = set().union(*self._by_channel.values())
        return everyone

    def by_channel_format(self) -> dict[tuple[str, str], int]:
        """Open streams by (channel, or ``*`` for every channel; format), from the
        running counts (7): no walk."""
        return dict(self._counts)

    def stats(self) -> HubStats:
        """Counts kept as streams come and go, and what a walk over them tells, walked
        at most once per ``STATS_MAX_AGE`` (7)."""
        walked = self._walked
        if walked is None or time.monotonic() - self.walked_at > STATS_MAX_AGE:
            walked = self._walked = self._walk()
            self.walked_at = time.monotonic()
        oldest, largest, sent = walked
        return HubStats(
            subscribers=self._count,
            by_channel_format=self.by_channel_format(),
            oldest_opened_at=oldest,
            largest_backlog_bytes=largest,
            events_sent=sent,
            dropped=self.dropped,
        )

    def _walk(self) -> tuple[float | None, int, int]:
        everyone = self.subscribers()
        return (
            min((s.opened_at for s in everyone), default=None),
            max((s.backlog_bytes for s in everyone), default=0),
            self._sent_by_closed + sum(s.sent for s in everyone),
        )

    def _count_in(self, subscriber: Subscriber, step: int) -> None:
        fmt = subscriber.format.value
        for name in subscriber.channels or (EVERY_CHANNEL,):
            key = (name, fmt)
            left = self._counts.get(key, 0) + step
            if left:
                self._counts[key] = left
            else:
                del self._counts[key]
        self._count += step

    def formats_wanted(self) -> set[Format]:
        return {fmt for fmt, count in self._formats.items() if count}

    def subscribe(self, subscriber: Subscriber) -> None:
        keys: Iterable[str | None] = subscriber.channels or (None,)
        for key in keys:
            self._by_channel.setdefault(key, set()).add(subscriber)
        self._formats[subscriber.format] += 1
        self._count_in(subscriber, 1)
        if self.closing:
            subscriber.close()

    def unsubscribe(self, subscriber: Subscriber) -> None:
        keys: Iterable[str | None] = subscriber.channels or (None,)
        for key in keys:
            subs = self._by_channel.get(key)
            if subs is not None:
                subs.discard(subscriber)
                if not subs:
                    del self._by_channel[key]
        self._formats[subscriber.format] -= 1
        self._count_in(subscriber, -1)
        self._sent_by_closed += subscriber.sent
        self.dropped += subscriber.overflowed

    def publish(
        self,
        event_id: int,
        channel: str,
        frames: Mapping[Format, bytes],
        *,
        private: bool = False,
    ) -> None:
        """Hand one encoded event to everyone who may see it. Never waits.

        An event of a ``private`` channel reaches only subscribers whose ``private``
        set names it (or is None), whether they asked for that channel or for all."""
        self.publish_many([Outgoing(event_id, channel, frames, private)])

    def publish_many(self, events: Sequence[Outgoing]) -> None:
        """``publish`` for several events, in id order, with one write per attached
        subscriber for all of them (5). Never waits."""
        per_sub: dict[Subscriber, list[Item]] = {}
        for event in events:
            items = {fmt: item(event.id, data) for fmt, data in event.frames.items()}
            channel, private = event.channel, event.private
            for key in (None, channel):
                for subscriber in self._by_channel.get(key, ()):
                    found = items.get(subscriber.format)
                    if found is None:
                        continue
                    if (
                        private
                        and subscriber.private is not None
                        and channel not in subscriber.private
                    ):
                        continue
                    queued = per_sub.get(subscriber)
                    if queued is None:
                        per_sub[subscriber] = [found]
                    else:
                        queued.append(found)
        # Subscribers who get the same events share one joined chunk.
        joined: Joined = {}
        for subscriber, queued in per_sub.items():
            if len(queued) == 1:
                subscriber.offer(queued[0])
            else:
                subscriber.offer_many(queued, joined)

    def broadcast(self, frames: Mapping[Format, bytes]) -> None:
        """Hand a message that is not a log event (no id) to every subscriber of the
        formats in ``frames``. Never waits."""
        items = {fmt: item(None, data) for fmt, data in frames.items()}
        for subscriber in self.subscribers():
            found = items.get(subscriber.format)
            if found is not None:
                subscriber.offer(found)

    def broadcast_to_readers(
        self, fmt: Format, message: Callable[[frozenset[str] | None], bytes]
    ) -> None:
        """``broadcast`` of a message that depends on which private channels a
        subscriber may read (``Subscriber.private``): made and framed once per distinct
        set, not once per subscriber. Never waits."""
        items: dict[frozenset[str] | None, Item] = {}
        for subscriber in self.subscribers():
            if subscriber.format is not fmt:
                continue
            found = items.get(subscriber.private)
            if found is None:
                found = items[subscriber.private] = item(None, message(subscriber.private))
            subscriber.offer(found)

    def _beat(self) -> None:
        # A subscriber to several channels is in several sets; it gets one beat.
        for subscriber in self.subscribers():
            subscriber.offer(BEATS[subscriber.format])

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat)
            self._beat()

    def start(self) -> None:
        self.closing = False
        if self._ticker is None:
            self._ticker = asyncio.get_running_loop().create_task(self._tick())

    def end_streams(self) -> None:
        """End every open stream; clients reconnect and resume. New ones are welcome."""
        for subscriber in self.subscribers():
            subscriber.close()

    def close(self) -> None:
        """End every stream promptly (server shutdown); clients reconnect and resume."""
        self.closing = True
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None
        for subs in tuple(self._by_channel.values()):
            for subscriber in tuple(subs):
                subscriber.close()
