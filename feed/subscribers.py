"""One open stream, as the hub sees it: what it wants, what it has been sent, and what
waits for it, within its bound.

Rationale:

1. On attaching. Once a stream has written its opening (and replay) and nothing is
   pending, it *attaches* its connection's transport (stream.py, on the pre-framed
   chunk), and the hub writes the shared chunk straight to it (events.py, on the
   hot path). A stream that is not attached (still catching up, or on a server where
   the transport cannot be found safely) gets a backlog item, and its writer task is
   woken to send it through ASGI.
2. On the bound. A backlog is bounded in bytes. For an attached stream the backlog
   *is* the transport's write buffer; otherwise it is the item list. A subscriber
   that falls more than one message behind ``limit`` is marked ``overflowed`` and
   its connection dropped without a final chunk (an attached one is aborted, since a
   polite close would keep the unread bytes until the client read them); it
   reconnects with ``Last-Event-ID`` and the store replays what it missed. Nothing
   is lost, and memory stays bounded however many clients stall.
3. On the id filter. Items carry the event id, and the id filter runs on both paths,
   so a writer drops what a replay already sent: a subscriber registers *before* its
   replay query runs, so an event that commits during the replay arrives both ways.
   Such events wait as items until the writer has sent the replay, then go out once,
   in id order; only then may the stream attach, so direct writes never overtake or
   interleave with the writer's own.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Protocol

from feed.search import Query
from feed.sse import Format, chunk, ended_frame

# An item of a backlog: (event id, or None for a message without one; the encoded
# SSE bytes; the same bytes framed as one HTTP/1.1 chunk, for direct writes).
Item = tuple[int | None, bytes, bytes]


def item(event_id: int | None, data: bytes) -> Item:
    return (event_id, data, chunk(data))


# Chunks joined from several items in one ``publish_many``, by format and event ids.
Joined = dict[tuple[Format, tuple[int | None, ...]], bytes]


class Run:
    """A run of events every subscriber of one format gets alike (events.py, on runs):
    its items, and the chunk of all of them, joined once for all those subscribers."""

    __slots__ = ("count", "data", "first", "items", "joined", "last")

    def __init__(self, items: list[Item], joined: Joined) -> None:
        self.items = items
        self.first = items[0][0]
        self.last = items[-1][0]
        self.count = len(items)
        self.data = chunk(b"".join(each[1] for each in items))
        # For a subscriber that has some of them already (a replay's overlap).
        self.joined = joined


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
        "beat",
        "channels",
        "closed",
        "ends_at",
        "format",
        "last_id",
        "limit",
        "on_overflow",
        "only",
        "opened_at",
        "overflowed",
        "person",
        "private",
        "search",
        "sent",
        "thread",
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
        self.beat = 0  # its heartbeat turn (heartbeats.py, on one timer, in turns)
        self.opened_at = time.time()
        self.sent = 0  # events written, heartbeats not counted
        # The private channels this stream may read; None: all of them. Checked for
        # every private event, so a grant taken away mid-stream stops the next one.
        self.private: frozenset[str] | None = NO_CHANNELS
        # Who opened the stream (access.py), so a revoked credential can end it.
        self.who: object = None
        # The identity whose personal events this stream gets (events.py, on personal
        # events); None: nobody's. And the one kind of them it wants, if only one.
        self.person: str | None = None
        self.only: str | None = None
        # A thread's stream (``/events?thread=``): the top-level post whose events, and
        # whose replies' events, it follows, in its one channel (events.py).
        self.thread: int | None = None
        # The last event it is to send, once known (events.py, on a thread's end).
        self.ends_at: int | None = None
        # A live search: only changes to posts that match it, and to their replies
        # (post_words.py and events.py, on live searches).
        self.search: Query | None = None

    def offer(self, item: Item) -> None:
        """Write ``item`` or queue it, without waiting; drop the subscriber if it is
        too far behind."""
        if self.closed:
            return
        transport = self._transport
        if transport is not None:
            # The hot path (events.py): inline, one frame per subscriber per event.
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
        self._write(transport, data)

    def offer_run(self, run: Run) -> None:
        """``offer_many`` for a run (events.py, on runs): its ids rise and each has one,
        so a subscriber that has none of them yet is written its one shared chunk with
        nothing compared, counted or looked up."""
        transport = self._transport
        first = run.first
        if self.closed or transport is None or first is None or first <= self.last_id:
            self.offer_many(run.items, run.joined)
            return
        if transport.is_closing():
            return
        self.last_id = run.last  # type: ignore[assignment]  # ids rise: the last has one
        self.sent += run.count
        self._write(transport, run.data)

    def _write(self, transport: Transport, data: bytes) -> None:
        transport.write(data)
        # The transport's buffer is the backlog (2).
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

    def end(self, why: str) -> None:
        """``close``, after an ``ended`` message saying ``why`` (sse.py, on messages
        that tell)."""
        self.offer(item(None, ended_frame(self.format, why)))
        self.close()

    @property
    def thread_over(self) -> bool:
        """It has sent its thread's tombstone (``end_at``): nothing more will come."""
        return self.ends_at is not None and self.last_id >= self.ends_at

    def end_at(self, event_id: int) -> None:
        """End the stream once it has sent ``event_id``: now, if it has."""
        if self.ends_at is None or event_id < self.ends_at:
            self.ends_at = event_id
        if self.thread_over:
            self.close()

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
        if self.thread_over:
            self.close()  # after this chunk, its last
        return b"".join(chunks)

    def discard(self) -> None:
        """Forget what is pending, unsent: the client will be sent it on its resume."""
        self._pending, self._pending_bytes = [], 0

    @property
    def backlog_bytes(self) -> int:
        if self._transport is not None:
            return self._transport.get_write_buffer_size()
        return self._pending_bytes
