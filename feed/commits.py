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
results come back in the same order, each its own.

The writer is a thread of the group's own, not a task that hands each write to a
worker thread (docs/benchmarks.md, the write cycle). Handed over by the event loop,
a write started only when the loop came back to it: after it had delivered the
previous group to every stream and answered its requests, and after one more turn
of the loop: together a large part of every write cycle. The thread
takes the next group as soon as the last one has committed, while the loop delivers
and answers; only a writer that waits is woken from the loop, after the turn in which
the request came, as the task was. Each write runs in the context of the first request it carries
(``contextvars``), as a worker thread's call would. Results go back to the loop of
each request, in the order of the commits, after whatever the write itself queued
there (a commit's announcement comes before its answers). The thread ends when
nothing has come for ``LINGER`` seconds, and starts again with the next request.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

logger = logging.getLogger("feed.commits")

R = TypeVar("R")
A = TypeVar("A")

# Long enough to make a burst cheap, short enough that one transaction stays short.
BATCH_LIMIT = 200
# Seconds the writer thread waits for more before it ends: a burst keeps one thread,
# an idle store none.
LINGER = 1.0

# A request, where its result goes, and the context its write runs in.
_Waiting = tuple[R, "asyncio.Future[A]", contextvars.Context]


class GroupCommit(Generic[R, A]):
    """Batches submitted requests for ``write``, which runs on the group's own thread;
    one batch is written at a time."""

    def __init__(
        self,
        write: Callable[[Sequence[R]], Sequence[A | Exception]],
        *,
        limit: int = BATCH_LIMIT,
        isolate: Callable[[Exception], bool] = lambda _exc: False,
        name: str = "feed-group-commit",
    ) -> None:
        self._write = write
        self._limit = limit
        self._isolate = isolate
        self._name = name
        self._lock = threading.Lock()
        self._more = threading.Condition(self._lock)
        self._waiting: list[_Waiting[R, A]] = []
        self._writer: threading.Thread | None = None
        self._wake_due = False

    async def submit(self, request: R) -> A:
        """Write ``request`` with whatever else is waiting; its own result, once committed."""
        (future,) = self._enqueue([request])
        # A caller that goes away (its client disconnected) leaves the write going:
        # shield it, so cancelling the caller never cancels the batch.
        return await asyncio.shield(future)

    async def submit_all(self, requests: Sequence[R]) -> list[A | Exception]:
        """``submit`` for each of ``requests``, queued together; each one's result or
        error, in order, once all are settled."""
        futures = self._enqueue(requests)
        settled = asyncio.gather(*futures, return_exceptions=True)
        results: list[A | BaseException] = await asyncio.shield(settled)
        return [_error(r) if isinstance(r, BaseException) else r for r in results]

    def _enqueue(self, requests: Sequence[R]) -> list[asyncio.Future[A]]:
        loop = asyncio.get_running_loop()
        context = contextvars.copy_context()
        futures: list[asyncio.Future[A]] = []
        queued: list[_Waiting[R, A]] = []
        for request in requests:
            future: asyncio.Future[A] = loop.create_future()
            # Marks an error as seen even when the caller has gone and never will.
            future.add_done_callback(_seen)
            queued.append((request, future, context))
            futures.append(future)
        with self._lock:
            self._waiting += queued
            wake = not self._wake_due
            self._wake_due = True
        if wake:
            # After this turn of the loop: what else it submits joins the same write.
            loop.call_soon(self._wake)
        return futures

    def _wake(self) -> None:
        """Start the writer, or wake it if it waits; a busy one takes what waits when
        its write is done, with no call from here."""
        with self._lock:
            self._wake_due = False
            if self._writer is None:
                self._writer = threading.Thread(target=self._drain, name=self._name, daemon=True)
                self._writer.start()
            else:
                self._more.notify()

    def _drain(self) -> None:
        while True:
            with self._lock:
                if not self._waiting:
                    self._more.wait(LINGER)
                if not self._waiting:
                    self._writer = None
                    return
                batch = self._waiting[: self._limit]
                del self._waiting[: self._limit]
            try:
                self._write_apart(batch)
            except Exception as exc:
                # Those that came while it was tried get the same answer now: they have
                # waited for the same database, and another full try would double
                # their wait (storage/engine.py, on the bound on waiting).
                with self._lock:
                    batch += self._waiting
                    self._waiting = []
                _answer(batch, [exc] * len(batch))

    def _write_apart(self, batch: list[_Waiting[R, A]]) -> None:
        """Write ``batch``; if one request in it fails the whole write (``isolate``),
        write its halves apart, until the request at fault stands alone. Raises the
        errors of the write as a whole."""
        requests = [r for r, _, _ in batch]
        try:
            results: Sequence[A | Exception] = batch[0][2].run(self._write, requests)
        except Exception as exc:
            if not self._isolate(exc):
                raise
            if len(batch) == 1:
                results = [exc]
            else:
                middle = len(batch) // 2
                self._write_apart(batch[:middle])
                self._write_apart(batch[middle:])
                return
        if len(results) != len(batch):  # a bug in ``write``: say so to everyone
            error = RuntimeError(f"{len(results)} results for {len(batch)} requests")
            logger.error("group commit: %s", error)
            results = [error] * len(batch)
        _answer(batch, results)


def _answer(batch: Sequence[_Waiting[Any, Any]], results: Sequence[Any]) -> None:
    """Hand each request its result on its own event loop."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], Any]]] = {}
    for (_, future, _), result in zip(batch, results, strict=True):
        by_loop.setdefault(future.get_loop(), []).append((future, result))
    for loop, settled in by_loop.items():
        # A closed loop raises: nobody waits for these any more.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(_settle, settled)


def _settle(settled: Sequence[tuple[asyncio.Future[Any], Any]]) -> None:
    for future, result in settled:
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


def _seen(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()
