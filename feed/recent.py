"""Recent answers: what was read from the database a moment ago, kept for a moment.

The gate keeps the answers behind permission checks (tokens, revocations, sign-outs,
memberships) this way, so that a burst of requests costs one query rather than one
each (access.py, on recent answers).

Rationale:

1. Reading again ahead of time. An answer asked for in the second half of its life is
   still used, and read again meanwhile, in a task of its own (``ReadsAhead``).
   Otherwise, once a second, the request that found it too old waited for the read:
   a thread hop and a query on a post's path, a few milliseconds of its latency,
   for a script that posts steadily. No answer older than ``RECENT_TTL`` is ever
   used; a request after a quiet spell still reads on its own path. The gate's reads
   ahead go one at a time (one ``ReadsAhead`` for all its answers): a post's token,
   channels and memberships age together, and read at once they took three worker
   threads and three database connections where one does, each with its memory.
   Those still queued or under way when the app stops are ended before the store
   they read closes (``close``). At most ``READS_AHEAD_MOST`` wait or run at once:
   many answers aging together (thousands of tokens in use) would otherwise queue a
   task each, to run long after they could help; past it an answer is read by the
   request that finds it too old.
2. Nothing kept from before a change. A read that began before answers were dropped
   or learnt (a change of access announced meanwhile) may have read what the change
   undid, so what it found is used by its own request at most, never kept: a token
   revoked here would otherwise be let in again, for up to ``RECENT_TTL``, by a read
   that overlapped its revocation. An answer is as old as its read's start.
3. After the answer. A read ahead of time asked for while a request is being answered
   (``after_answer``, around every request but the feed's streams) starts once that
   request's answer begins, not beside it. A post's answer begins after the post has
   gone out to every stream; a long-lived answer (the admin stream) begins at once,
   so none holds reads ahead for its life. Run seldom, such a read is several times slower
   than run often (its code out of the processor's caches: about 1 ms of CPU rather
   than 0.2 for a token's), and in a worker thread it took the interpreter from the
   post that asked for it while that post committed and went out to every stream
   (docs/benchmarks.md, the fan-out to 1,000). Waiting costs nothing: the answer it
   renews is still good, and the request did not wait for it anyway. A task the
   request started that asks after it has ended starts its read at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Hashable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Generic, TypeVar

logger = logging.getLogger("feed.recent")

# How long an answer is kept, in seconds: how late a change made elsewhere may be
# seen by a check that uses it.
RECENT_TTL = 1.0
# Past this age an answer asked for is read again ahead of time (1).
READ_AHEAD_AFTER = RECENT_TTL / 2
# At most this many reads ahead wait or run at once; an answer aging past it is read
# by the request that finds it too old, as before reads ahead (1).
READS_AHEAD_MOST = 64
# At most this many answers are kept; past it they are all let go.
RECENT_MAX = 10_000


class Missing:
    """What ``RecentAnswers.get`` answers for a key it has no recent answer for."""


MISSING = Missing()
K = TypeVar("K")
V = TypeVar("V")


class _Held:
    """The reads ahead asked for while one request is answered (3)."""

    __slots__ = ("open", "starts")

    def __init__(self) -> None:
        self.open = True
        self.starts: list[Callable[[], None]] = []

    def release(self) -> None:
        """Start those held, and any asked for from now on at once."""
        if self.open:
            self.open = False
            starts, self.starts = self.starts, []
            for start in starts:
                start()


_held: ContextVar[_Held | None] = ContextVar("feed_reads_held", default=None)


@contextmanager
def after_answer() -> Iterator[Callable[[], None]]:
    """Reads ahead of time asked for inside wait until the answer begins (call what
    this gives) or the block ends, whichever is first (3)."""
    held = _Held()
    token = _held.set(held)
    try:
        yield held.release
    finally:
        _held.reset(token)
        held.release()


class ReadsAhead:
    """Reads ahead of time (1), at most one per key and ``READS_AHEAD_MOST`` in all
    queued, run one at a time; each one's task is held here until it ends."""

    def __init__(self) -> None:
        self._tasks: dict[Hashable, asyncio.Task[None]] = {}
        self._turn = asyncio.Lock()

    def start(self, key: Hashable, read: Callable[[], Awaitable[None]]) -> None:
        held = _held.get()
        if held is not None and held.open:
            held.starts.append(lambda: self.start(key, read))
            return
        if key in self._tasks or len(self._tasks) >= READS_AHEAD_MOST:
            return
        task = asyncio.get_running_loop().create_task(self._run(read), name="feed-read-ahead")
        self._tasks[key] = task
        task.add_done_callback(lambda _task: self._tasks.pop(key, None))

    async def _run(self, read: Callable[[], Awaitable[None]]) -> None:
        async with self._turn:
            try:
                await read()
            except Exception:  # the answer ages as it would have; a request reads it then
                logger.debug("a read ahead of time failed", exc_info=True)

    async def close(self) -> None:
        """End the reads queued or under way, before the store they read closes."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class Reading:
    """When a read began, and how many changes its answers had seen then (2)."""

    __slots__ = ("began", "changes")

    def __init__(self, began: float, changes: int) -> None:
        self.began = began
        self.changes = changes


class RecentAnswers(Generic[K, V]):
    """Answers younger than ``RECENT_TTL`` seconds, at most ``RECENT_MAX`` of them."""

    def __init__(self, ahead: ReadsAhead | None = None) -> None:
        self._answers: dict[K, tuple[float, V]] = {}
        self._changes = 0  # answers dropped or learnt: a read begun before keeps nothing (2)
        self._ahead = ReadsAhead() if ahead is None else ahead

    def get(self, key: K) -> V | Missing:
        found = self._answers.get(key)
        if found is None or time.monotonic() - found[0] > RECENT_TTL:
            return MISSING
        return found[1]

    def aging(self, key: K) -> bool:
        """Whether ``key``'s answer is recent but due to be read again (1)."""
        found = self._answers.get(key)
        return found is not None and time.monotonic() - found[0] > READ_AHEAD_AFTER

    async def get_or_load(self, key: K, load: Callable[[], Awaitable[V]]) -> V:
        """The recent answer for ``key``, or ``load()``'s, kept for next time; an
        aging one is read again ahead of time (1)."""
        found = self.get(key)
        if isinstance(found, Missing):
            return await self.load(key, load)
        if self.aging(key):
            self.read_ahead(key, load)
        return found

    async def load(self, key: K, load: Callable[[], Awaitable[V]]) -> V:
        """``load()``'s answer for ``key``, kept unless answers changed while it read (2)."""
        reading = self.reading()
        found = await load()
        self.keep(key, found, reading)
        return found

    def reading(self) -> Reading:
        """Taken as a read begins, for ``keep`` (2)."""
        return Reading(time.monotonic(), self._changes)

    def keep(self, key: K, value: V, reading: Reading) -> None:
        """What a read that began at ``reading`` found, unless answers changed since (2)."""
        if reading.changes == self._changes:
            self._store(key, value, reading.began)

    def read_ahead(self, key: K, load: Callable[[], Awaitable[V]]) -> None:
        """Read ``key``'s answer again in a task of its own (1)."""

        async def read() -> None:
            await self.load(key, load)

        self._ahead.start((id(self), key), read)

    def put(self, key: K, value: V) -> None:
        """An answer learnt now, from a change: newer than any read in flight (2)."""
        self._changes += 1
        self._store(key, value, time.monotonic())

    def _store(self, key: K, value: V, at: float) -> None:
        if len(self._answers) >= RECENT_MAX:
            self._answers.clear()  # rare, and only costs queries
        self._answers[key] = (at, value)

    def clear(self) -> None:
        self._changes += 1
        self._answers.clear()

    def drop(self, which: Callable[[V], bool]) -> None:
        self._changes += 1
        for key in [k for k, (_at, v) in self._answers.items() if which(v)]:
            del self._answers[key]
