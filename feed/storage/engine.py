"""Engines for the databases feed supports, how store methods reach them, and what a
database's errors mean to a caller.

Rationale for the less obvious choices:

1. Worker threads. Store methods are synchronous and run in a worker thread
   (``in_thread``), so the event loop never waits on the disk. The thread knows the
   loop it was called from (``caller_loop``): a commit it makes is announced there
   (announcements.py, on the commit announcement).
2. Writes begin at once. Write transactions start with ``BEGIN IMMEDIATE`` on SQLite.
   A deferred transaction that reads first and writes later can fail at once with
   "database is locked" when another writer got in between, without waiting for the
   busy timeout.
3. Unavailable, not broken. A database that cannot be reached raises
   ``StoreUnavailable`` (HTTP 503), never a driver error: callers can tell "try
   again" from "you asked for nothing". Its message names the cause a reader can act
   on: busy, refusing writes (read-only or failing storage) or full. Reads use other
   statements than writes, so they keep working while writes are refused.
4. The bound on waiting. Waiting for the write lock is bounded: SQLite's busy timeout
   (``?timeout=`` in the URL, ``BUSY_TIMEOUT`` seconds by default) retries a locked
   database, and the in-process write lock is given up after as long (log.py, on
   writers taking turns). Past that the caller gets ``StoreUnavailable`` (503 with
   Retry-After), never "database is locked". The bound is well below the 30 to 60 s
   after which clients and proxies give up.
5. Unstorable values. A value the driver refuses (a lone surrogate, which
   ``json.loads`` accepts but UTF-8 cannot encode; a number too large for its column)
   is ``Unstorable``, a client's error (422), never a 500. Endpoints refuse such input
   before it gets here; this is the floor under them. In a group of new posts it
   fails only the post that carries it (new_posts.py, on new posts written in groups).
6. Synced commits. A 201 means committed, even across a power cut. SQLite runs with
   ``synchronous=FULL``: in WAL mode, NORMAL syncs only at checkpoints, so an OS crash
   could take back transactions already acknowledged. The sync happens once per
   transaction, and the group commit makes that once per group of posts.
7. The group commit's own thread. The group write of new posts (new_posts.py) runs in
   a thread of its own (``Writer``), handed each group by a queue and answering on
   the caller's loop, not in one of anyio's worker threads: anyio's hand-off, twice
   per group, cost several times the CPU and the wait of a plain queue and
   ``call_soon_threadsafe`` (docs/benchmarks.md), and its threads are shared with
   every read, so reads that filled them held up every post. Calls run one at a time, as
   the group commit sends them; everything else about them is ``in_thread``'s (1, 3,
   5).
8. A lock taken in a thread for a caller that is gone. A write on the event loop
   waits for the in-process write lock in a worker thread (log.py, on writers taking
   turns). Its caller may be cancelled meanwhile (a shutdown cancels the group
   commit's task), and the cancellation reaches it at once while the thread still
   waits: the thread must not then keep the lock for nobody, which would turn every
   later write into a "busy" after the full wait. ``take_in_thread`` hands the lock
   over under a guard: taken after its waiter gave up, it is given back at once.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import importlib.util
import queue
import threading
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import anyio.to_thread
from sqlalchemy import Engine
from sqlalchemy.engine import URL, make_url
from sqlalchemy.event import listens_for
from sqlalchemy.exc import (
    DataError,
    DBAPIError,
    InterfaceError,
    InternalError,
    OperationalError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlmodel import create_engine

from feed.storage.refusals import StoreError, StoreUnavailable, Unstorable

P = ParamSpec("P")
T = TypeVar("T")

# Seconds a write waits for the database's write lock (rationale 4).
BUSY_TIMEOUT = 10.0
# A connection per worker thread that may need one (anyio runs up to 40): opening
# SQLite connections on demand and closing them again cost more than the queries.
SQLITE_POOL = 40


# PostgreSQL's SQLSTATEs for "read-only transaction", "disk full", "out of memory",
# "lock not available" and "query canceled" (statement or lock timeouts).
_PG_UNAVAILABLE = {
    "25006": StoreUnavailable.READ_ONLY,
    "53100": StoreUnavailable.FULL,
    "53200": StoreUnavailable.BUSY,
    "55P03": StoreUnavailable.BUSY,
    "57014": StoreUnavailable.BUSY,
}


def _unavailable(exc: DBAPIError) -> StoreUnavailable | None:
    """The StoreUnavailable a driver error amounts to; None for errors that are bugs."""
    sqlstate = getattr(exc.orig, "sqlstate", None)
    if sqlstate in _PG_UNAVAILABLE:
        return StoreUnavailable(_PG_UNAVAILABLE[sqlstate])
    if not isinstance(exc, OperationalError | InterfaceError):
        return None
    message = str(exc.orig).lower()
    if "locked" in message or "busy" in message:
        return StoreUnavailable(StoreUnavailable.BUSY)
    if "readonly" in message or "read-only" in message or "i/o error" in message:
        return StoreUnavailable(StoreUnavailable.READ_ONLY)
    if "full" in message:
        return StoreUnavailable(StoreUnavailable.FULL)
    return StoreUnavailable()


# The event loop a store method was called from, as its worker thread sees it (1).
_CALLER: ContextVar[asyncio.AbstractEventLoop | None] = ContextVar("feed_caller", default=None)


def caller_loop() -> asyncio.AbstractEventLoop | None:
    """The event loop that called the store method this thread runs; None outside one."""
    return _CALLER.get()


def _on_behalf(loop: asyncio.AbstractEventLoop, call: Callable[[], T]) -> T:
    # The worker thread runs in a copy of the caller's context, made for this call.
    _CALLER.set(loop)
    return call()


def in_thread(fn: Callable[P, T]) -> Callable[P, Coroutine[Any, Any, T]]:
    """``fn`` as a coroutine that runs it in a worker thread (rationale 1), with the
    database's errors as the caller should see them (3, 5)."""

    @functools.wraps(fn)
    async def run(*args: P.args, **kwargs: P.kwargs) -> T:
        call = functools.partial(fn, *args, **kwargs)
        loop = asyncio.get_running_loop()
        with _as_store_errors():
            return await anyio.to_thread.run_sync(_on_behalf, loop, call)

    return run


@contextmanager
def _as_store_errors() -> Iterator[None]:
    """The database's errors as the caller should see them (3, 4, 5)."""
    try:
        yield
    except (OperationalError, InterfaceError, InternalError) as exc:
        unavailable = _unavailable(exc)
        if unavailable is None:
            raise
        raise unavailable from exc
    except PoolTimeout as exc:
        # Every connection is busy: the database is, for this process (rationale 4).
        raise StoreUnavailable(StoreUnavailable.BUSY) from exc
    except UnicodeEncodeError as exc:
        reason = f"the text holds characters that are not Unicode ({exc.reason})"
        raise Unstorable(reason) from exc
    except OverflowError as exc:  # SQLite's driver, for an integer past 64 bits
        raise Unstorable("a number is too large") from exc
    except DataError as exc:
        raise Unstorable(_first_line(exc.orig)) from exc


# A call for a ``Writer``: the caller's loop, its future, its context, and the call.
_Call = tuple[
    asyncio.AbstractEventLoop, "asyncio.Future[Any]", contextvars.Context, Callable[[], Any]
]


class Writer:
    """A thread of its own that runs one kind of call, one at a time, handed over by a
    queue and answered on the caller's loop (rationale 7)."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._calls: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        # Held to start or stop the thread and to hand it a call, so that no call is
        # handed to a thread already told to stop.
        self._starting = threading.Lock()

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """``fn(*args, **kwargs)`` in the thread, with the database's errors as the
        caller should see them, as ``in_thread`` gives them."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        call = functools.partial(fn, *args, **kwargs)
        with self._starting:
            if self._thread is None:
                self._start()
            self._calls.put((loop, future, contextvars.copy_context(), call))
        with _as_store_errors():
            return await future

    def stop(self) -> None:
        """End the thread once the calls already handed over are done; a later call
        starts another."""
        with self._starting:
            if self._thread is not None:
                self._calls.put(None)
                self._thread = None

    def _start(self) -> None:
        # Each thread has its own queue, so that a stopped one's end mark never stops
        # the next.
        self._calls = queue.SimpleQueue()
        thread = threading.Thread(
            target=self._serve, args=(self._calls,), name=self._name, daemon=True
        )
        thread.start()
        self._thread = thread

    def _serve(self, calls: queue.SimpleQueue[_Call | None]) -> None:
        while (item := calls.get()) is not None:
            loop, future, context, call = item
            try:
                result = context.run(_on_behalf, loop, call)
            except BaseException as exc:  # the caller's to see, not this thread's
                _answer(loop, future, None, exc)
            else:
                _answer(loop, future, result, None)


def _answer(
    loop: asyncio.AbstractEventLoop,
    future: asyncio.Future[Any],
    result: Any,
    error: BaseException | None,
) -> None:
    def settle() -> None:
        if future.done():  # its caller has gone
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)

    with suppress(RuntimeError):  # the loop is closed: nobody is waiting any more
        loop.call_soon_threadsafe(settle)


async def take_in_thread(lock: threading.Lock, seconds: float) -> bool:
    """Take ``lock`` from the event loop by waiting for it in a worker thread, for at
    most ``seconds``; whether it was taken (rationale 8)."""
    turn = _Turn(lock, seconds)
    try:
        return await anyio.to_thread.run_sync(turn.wait)
    except BaseException:
        turn.abandon()
        raise


class _Turn:
    """One wait for a lock in a worker thread, which its waiter may give up (8)."""

    def __init__(self, lock: threading.Lock, timeout: float) -> None:
        self._lock = lock
        self._timeout = timeout
        self._guard = threading.Lock()
        self._taken = False
        self._abandoned = False

    def wait(self) -> bool:
        taken = self._lock.acquire(timeout=self._timeout)
        with self._guard:
            if taken and self._abandoned:
                self._lock.release()  # taken for nobody
                return False
            self._taken = taken
        return taken

    def abandon(self) -> None:
        with self._guard:
            self._abandoned = True
            if self._taken:  # taken, but the waiter never got the answer
                self._taken = False
                self._lock.release()


def _first_line(error: BaseException | None) -> str:
    return str(error).strip().splitlines()[0].rstrip(".") if str(error).strip() else "bad value"


def now() -> datetime:
    return datetime.now(UTC)


def make_engine(url: str) -> Engine:
    """An engine for ``url`` with the connection settings feed relies on."""
    parsed: URL = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return _sqlite_engine(parsed)
    if backend == "postgresql":
        return _postgres_engine(parsed)
    raise StoreError(f"Unsupported database {backend!r}; use sqlite:/// or postgresql://.")


def sqlite_file(url: str) -> Path | None:
    """The file an SQLite ``url`` names, absolute (a relative one is relative to the
    current directory); None for another database, or one in memory."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    if parsed.query.get("mode") == "memory":
        return None
    return Path(parsed.database).absolute()


def busy_timeout(url: URL) -> float:
    """How long a write waits for its turn (rationale 4): ``?timeout=`` in a SQLite
    URL, else the default."""
    raw = url.query.get("timeout")
    return float(raw) if isinstance(raw, str) else BUSY_TIMEOUT


def _sqlite_engine(url: URL) -> Engine:
    timeout = busy_timeout(url)
    engine = create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": timeout},
        pool_size=SQLITE_POOL,
        # The connection given back last is handed out next: its page cache still
        # holds what the last transaction touched, and its statements are prepared.
        # Handed out in turn, each came to a write cold (docs/benchmarks.md, on a lone
        # post's write).
        pool_use_lifo=True,
        max_overflow=0,
        pool_timeout=timeout,
    )

    @listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" hook below decide how transactions start.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        # A 201 means committed, even across a power cut (rationale 6).
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        # Rationale 2.
        options = connection.get_execution_options()
        if options.get("feed_begun", False):
            # Joined to a transaction begun on the driver's cursor (log.py, on the
            # plain write): begun already.
            return
        connection.exec_driver_sql("BEGIN IMMEDIATE" if options.get("feed_write") else "BEGIN")

    return engine


def _postgres_engine(url: URL) -> Engine:
    if url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    if importlib.util.find_spec("psycopg") is None:
        raise StoreError("PostgreSQL needs the psycopg driver: pip install 'feed[postgresql]'.")
    return create_engine(
        url,
        # A restarted server leaves dead connections in the pool; test each one first.
        pool_pre_ping=True,
        pool_size=10,
        max_overflow=10,
        pool_timeout=10,
        # Timestamps are stored without a zone and always mean UTC. Waiting for a lock
        # (the writers' advisory lock among them) is bounded, as on SQLite (rationale 4).
        connect_args={
            "options": f"-c timezone=UTC -c lock_timeout={round(BUSY_TIMEOUT * 1000)}",
            "connect_timeout": 5,
        },
    )
