"""Group commit: requests that arrive while a write is running are written together.

Writers take turns (storage/log.py, on writers taking turns), so under a burst of
posts most of the time went to each post's own turn: a thread hop, a transaction, a
commit and, on PostgreSQL, an advisory lock and a NOTIFY. A ``GroupCommit`` keeps one
write in flight. Whatever is submitted meanwhile waits, and goes in the next write as one
batch: one transaction for all of it, at most ``limit`` requests long.

Nothing is answered before its batch has committed, so "201 means stored" still
holds. Each request gets its own answer: ``write`` returns one result per request,
in order, and a request it refuses (an unknown channel, say) gets its own error
without failing the others. An error of the write as a whole (the database is
busy, full or gone) is the answer of every request in the batch, since none of
them was stored, and of every request that arrived while it was being tried, so
that no request waits for the database longer than one write may.

Some errors that fail a whole write are one request's fault: a value the database
driver cannot take, say (what ``isolate`` says, raised before anything commits).
One request must never fail the others, so then the batch is split in halves and
each half written on its own, again and again, until the request at fault is alone
and gets the error alone. Each failing request costs about two writes per halving,
which only a bad request pays for in full; honest requests in its batch wait that
much longer, and are written. Any other error is the whole write's: splitting on
an error no request caused would only multiply it, and one raised after a commit
would write the same requests twice.

Several requests may also be submitted together (``submit_all``: the posts of one
batch). They wait in the order given, with nothing between them, so that unless the
queue ahead of them fills part of a write, they share one transaction, and their
results come back in the same order, each its own. They share one future as well:
each has a place in a list of results (``Together``), and the future is settled once
every place is. A future of its own for each, with its callback and its place in a
gather, was most of what the group commit cost a batch on the event loop.

Under a burst the writes come back to back, and each takes what has arrived since
the last began: with sixteen posters, a write of a few posts, then another of a few.
A write's fixed cost (the thread hop, the transaction, the commit, the announcement)
is then paid every few posts. So once a write has taken everything that waited, and
that was the requests of at least ``burst`` submissions (a burst is on; posts
submitted together, one client's batch, count once), the next write waits up to
``gather_s`` for ``gather_full`` requests, and starts as soon as that many wait.
Nothing else waits: a request that finds no write running starts one at once, as
does one after a write of fewer submissions, so a quiet feed answers as fast as
before; nor does a backlog wait (what a write of ``limit`` left behind). The wait is
bounded, short against a write's own time (two milliseconds against three or so on
SQLite), and paid only by requests that arrived during a burst's write.

When the writer is cancelled (its loop ends), the requests still waiting were never
written, and each is answered so (``unwritten``); one being written is left to its
write, as before.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, Protocol, TypeVar

logger = logging.getLogger("feed.commits")

R = TypeVar("R")
A = TypeVar("A")
A_contra = TypeVar("A_contra", contravariant=True)

# Long enough to make a burst cheap, short enough that one transaction stays short.
BATCH_LIMIT = 200
# A write of this many submissions means a burst is on: the next one gathers first...
BURST = 4
# ...for at most this long (about two thirds of a single post's commit on SQLite)...
GATHER_S = 0.002
# ...or until this many wait: most of what sixteen busy posters send in a write's time.
GATHER_FULL = 16
# The answer of a request still waiting when the group commit stops (its loop ends).
UNWRITTEN = "The server stopped before this was stored; nothing was stored. Try again."


class GroupCommit(Generic[R, A]):
    """Batches submitted requests for ``write``; one batch is written at a time."""

    def __init__(
        self,
        write: Callable[[Sequence[R]], Awaitable[Sequence[A | Exception]]],
        *,
        limit: int = BATCH_LIMIT,
        isolate: Callable[[Exception], bool] = lambda _exc: False,
        burst: int = BURST,
        gather_s: float = GATHER_S,
        gather_full: int = GATHER_FULL,
        unwritten: Callable[[], Exception] = lambda: RuntimeError(UNWRITTEN),
    ) -> None:
        self._write = write
        self._limit = limit
        self._isolate = isolate
        self._burst = burst
        self._gather_s = gather_s
        self._gather_full = min(gather_full, limit)
        self._unwritten = unwritten
        self._waiting: list[tuple[R, Answerable[A]]] = []
        self._writer: asyncio.Task[None] | None = None
        # Set while the writer gathers: settled once ``gather_full`` requests wait.
        self._gathering: asyncio.Future[None] | None = None

    async def submit(self, request: R) -> A:
        """Write ``request`` with whatever else is waiting; its own result, once committed."""
        (future,) = self._enqueue([request])
        # A caller that goes away (its client disconnected) leaves the write going:
        # shield it, so cancelling the caller never cancels the batch.
        return await asyncio.shield(future)

    async def submit_all(self, requests: Sequence[R]) -> list[A | Exception]:
        """``submit`` for each of ``requests``, queued together; each one's result or
        error, in order, once all are settled."""
        if not requests:
            return []
        together: Together[A] = Together(asyncio.get_running_loop(), len(requests))
        self._waiting += zip(requests, together.places(), strict=True)
        self._start()
        self._gathered()
        return await asyncio.shield(together.future)

    def _enqueue(self, requests: Sequence[R]) -> list[asyncio.Future[A]]:
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[A]] = []
        for request in requests:
            future: asyncio.Future[A] = loop.create_future()
            # Marks an error as seen even when the caller has gone and never will.
            future.add_done_callback(_seen)
            self._waiting.append((request, future))
            futures.append(future)
        self._start()
        self._gathered()
        return futures

    def _gathered(self) -> None:
        if self._gathering is not None and len(self._waiting) >= self._gather_full:
            _settle(self._gathering)

    def _start(self) -> None:
        if self._writer is None or self._writer.done():
            loop = asyncio.get_running_loop()
            self._writer = loop.create_task(self._drain(), name="feed-group-commit")

    async def _drain(self) -> None:
        # Whether the write before was a burst's, and took everything that waited: what
        # waits now arrived during it, and more is likely on the way.
        gather = False
        try:
            while self._waiting:
                if gather and len(self._waiting) < self._gather_full:
                    await self._gather()
                batch = self._waiting[: self._limit]
                del self._waiting[: self._limit]
                gather = not self._waiting and _from_many(batch, self._burst)
                try:
                    await self._write_apart(batch)
                except Exception as exc:
                    # Those that came while it was tried get the same answer now: they
                    # have waited for the same database, and another full try would
                    # double their wait (storage/engine.py, on the bound on waiting).
                    batch += self._waiting
                    self._waiting = []
                    _answer(batch, [exc] * len(batch))
        except asyncio.CancelledError:
            # The loop is ending. What waits was never written: say so while its loop
            # can still hear it, rather than leave it to a later writer, on a loop
            # where its answer cannot be given and would fail the others'.
            waiting, self._waiting = self._waiting, []
            _answer(waiting, [self._unwritten()] * len(waiting))
            raise

    async def _gather(self) -> None:
        """Wait until ``gather_full`` requests wait, or ``gather_s`` has gone by."""
        loop = asyncio.get_running_loop()
        gathering: asyncio.Future[None] = loop.create_future()
        self._gathering = gathering
        # A timer settling a future costs less than ``asyncio.wait_for``'s task.
        timer = loop.call_later(self._gather_s, _settle, gathering)
        try:
            await gathering
        finally:
            timer.cancel()
            self._gathering = None

    async def _write_apart(self, batch: list[tuple[R, Answerable[A]]]) -> None:
        """Write ``batch``; if one request in it fails the whole write (``isolate``),
        write its halves apart, until the request at fault stands alone. Raises the
        errors of the write as a whole."""
        try:
            results: Sequence[A | Exception] = await self._write([r for r, _ in batch])
        except Exception as exc:
            if not self._isolate(exc):
                raise
            if len(batch) == 1:
                results = [exc]
            else:
                middle = len(batch) // 2
                await self._write_apart(batch[:middle])
                await self._write_apart(batch[middle:])
                return
        if len(results) != len(batch):  # a bug in ``write``: say so to everyone
            error = RuntimeError(f"{len(results)} results for {len(batch)} requests")
            logger.error("group commit: %s", error)
            results = [error] * len(batch)
        _answer(batch, results)


# What a place of a ``Together`` holds until its result is in.
_UNSETTLED: Any = object()


class Answerable(Protocol[A_contra]):
    """Where one request's result goes: its own future, or its place among others'."""

    def done(self) -> bool: ...
    def set_result(self, result: A_contra, /) -> None: ...
    def set_exception(self, exception: BaseException, /) -> None: ...


class Together(Generic[A]):
    """The results of requests submitted together, in order: one future, settled with
    every result (an error among them, each its own) once the last place is."""

    def __init__(self, loop: asyncio.AbstractEventLoop, count: int) -> None:
        self.future: asyncio.Future[list[A | Exception]] = loop.create_future()
        self._results: list[A | Exception] = [_UNSETTLED] * count
        self._left = count

    def places(self) -> list[Place[A]]:
        return [Place(self, n) for n in range(len(self._results))]

    def settled(self, n: int) -> bool:
        return self._results[n] is not _UNSETTLED

    def settle(self, n: int, result: A | Exception) -> None:
        self._results[n] = result
        self._left -= 1
        # Shielded, so never cancelled; checked all the same, since raising here would
        # leave the write's other requests unanswered.
        if not self._left and not self.future.done():
            self.future.set_result(self._results)


class Place(Generic[A]):
    """One request's place in a ``Together``."""

    __slots__ = ("_n", "together")

    def __init__(self, together: Together[A], n: int) -> None:
        self.together, self._n = together, n

    def done(self) -> bool:
        return self.together.settled(self._n)

    def set_result(self, result: A) -> None:
        self.together.settle(self._n, result)

    def set_exception(self, exception: BaseException) -> None:
        self.together.settle(self._n, _error(exception))


def _answer(batch: Sequence[tuple[Any, Answerable[Any]]], results: Sequence[Any]) -> None:
    for (_, future), result in zip(batch, results, strict=True):
        if future.done():
            continue
        if isinstance(result, Exception):
            future.set_exception(result)
        else:
            future.set_result(result)


def _error(raised: BaseException) -> Exception:
    """An error a result may be; anything else (a cancellation) goes on up."""
    if isinstance(raised, Exception):
        return raised
    raise raised


def _from_many(batch: Sequence[tuple[Any, Answerable[Any]]], at_least: int) -> bool:
    """Whether ``batch`` holds requests of at least ``at_least`` submissions: posts
    submitted together (one client's batch) are one."""
    if len(batch) < at_least:
        return False
    seen: set[int] = set()
    for _, answer in batch:
        seen.add(id(answer.together if isinstance(answer, Place) else answer))
        if len(seen) >= at_least:
            return True
    return False


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _seen(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()
