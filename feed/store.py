"""Persistence: every query. The tables, and the values the queries return, are in
models.py.

The database is the event log. Each change a reader can see writes an ``events``
row in the same transaction as the change itself; the row's id is the SSE id.

Rationale for the less obvious choices:

1. Event ids must be handed out in commit order, or a client that saw id 42 could
   later miss a 41 that committed after it. SQLite has one writer at a time, so an
   autoincrement key is in commit order there. ``sqlite_autoincrement`` stops SQLite
   from reusing the id of a deleted last row.
2. Write transactions start with ``BEGIN IMMEDIATE``. A deferred transaction that
   reads first and writes later can fail at once with "database is locked" when
   another writer got in between, without waiting for the busy timeout.
3. Writers inside one process also queue on a lock, so they wait their turn in
   Python instead of spinning in SQLite's busy handler.
4. Replay renders the *current* state of a post, so queries return events joined
   with their post as it is now, never a stored copy of the post at the time.
5. A deleted post keeps its row (a tombstone, so replay can remove it from pages)
   but loses its body: deleted text is not served again.
6. Methods are synchronous and run in a worker thread (``_in_thread``), so the
   event loop never waits on the disk.
7. On PostgreSQL, concurrent transactions can commit out of id order. Every write
   transaction therefore first takes one transaction-scoped advisory lock, held
   until commit: writers commit one at a time, so a sequence value handed out
   later always commits later. That is SQLite's rule, made explicit.
8. With the PostgreSQL broker the wake-up hint is a ``pg_notify`` issued inside the
   writing transaction; PostgreSQL delivers it only if the commit happens. One for
   the newest event a transaction wrote, and one that says access changed, if it
   did (rationale 20); the access hint goes first, so a process that hears both
   rechecks its streams before the events reach them.
9. A database that cannot be reached raises ``StoreUnavailable`` (HTTP 503), never
   a driver error: callers can tell "try again" from "you asked for nothing". Its
   message names the cause a reader can act on: busy, refusing writes (read-only
   or failing storage) or full. Reads use other statements than writes, so they
   keep working while writes are refused.
10. Waiting for the write lock is bounded: SQLite's busy timeout (``?timeout=`` in
   the URL, ``BUSY_TIMEOUT`` seconds by default) retries a locked database, and the
   in-process write lock is given up after as long. Past that the caller gets
   ``StoreUnavailable`` (503 with Retry-After), never "database is locked". The
   bound is well below the 30 to 60 s after which clients and proxies give up.
11. An ``Idempotency-Key`` is stored in the same transaction as the post (or
   channel) and its event, with the answer the client got: a crash leaves either
   all three or none. Writers are serialised (1, 7), so a concurrent retry with the
   same key waits, then finds the key and gets the stored answer. A new post with a
   key takes the same road as any new post, the group commit (13): the group's
   transaction looks its keys up and writes them, and a retry that arrives in the
   same group as its first try gets that try's answer. A replayed answer writes no
   post. Only successful writes are remembered: a refused request wrote nothing and
   may simply be retried. Keys expire after ``IDEMPOTENCY_TTL``; expired ones are
   deleted by the next write that uses a key.
12. Tokens are random and long (access.py), so a plain SHA-256 digest is enough to
   keep them: a slow password hash protects guessable secrets, and these are not
   guessable. Looking a token up by its digest needs no secret comparison in Python.
13. New posts are written in groups (commits.py): the posts that arrive while one
   write runs share the next transaction. They are inserted with plain INSERTs,
   not through the ORM's unit of work, which cost more than the rest of a post's
   write. The bound of 10 holds for every post:
   when a group's write fails, the posts that arrived while it was being tried get
   the same 503 at once, instead of a second wait for a database just found locked.
14. A list and the event id it is current up to (a page's posts and where its stream
   resumes) are read in one snapshot. A SQLite read transaction is one already (WAL
   mode). PostgreSQL's default, READ COMMITTED, gives each statement its own: a post
   committed between the two reads would carry an id newer than the list, and the
   page's stream would resume after a post it never showed. Such reads run in
   REPEATABLE READ there. Since writers commit in id order (7), a snapshot always
   holds exactly the events up to some id.
15. A value the driver refuses (a lone surrogate, which ``json.loads`` accepts but
   UTF-8 cannot encode; a number too large for its column) is ``Unstorable``, a
   client's error (422), never a 500. Endpoints refuse such input before it gets
   here; this is the floor under them. In a group of new posts (13) it fails only
   the post that carries it: the group commit writes the others apart from it.
16. A 201 means committed, even across a power cut. SQLite runs with
   ``synchronous=FULL``: in WAL mode, NORMAL syncs only at checkpoints, so an OS
   crash could take back transactions already acknowledged. The sync happens once
   per transaction, and the group commit (13) makes that once per group of posts.
17. An event id once handed out is never handed out again for another event, even
   after the database is restored from a backup or rolled back: a screen holding
   that id would skip the new event for good. Nothing in a restored database can
   tell it was restored, so the guarantee comes from the clock: every start (and
   the relay, when it sees the log go backwards while running) puts the next id
   at the time in microseconds, unless it is past that already. An id handed out
   before is at most the time it was handed out plus the events since the last
   start, which stays below the clock unless events were written faster than one
   a microsecond. Ids are contiguous between starts; a start leaves a gap, which
   readers never assume away. A screen that resumes from an id the log does not
   hold (one from the log before a restore) gets ``resync`` (stream.py).
   A database can also go back under a running process (restored in place, or a
   failover to a replica that had not received the last commits). Each process
   remembers the newest event it saw committed, and every write first checks the
   log still reaches it; if not, it skips ids as a start would, before writing.
18. A body's HTML is rendered when the post is written, off the event loop and
   before the write lock is taken, and stored with it (markdown.py): no reader
   renders Markdown, and no writer waits for another's long one. A new post's body
   longer than ``markdown.RENDER_APART`` is rendered by its own request, in a worker
   thread, before it joins a group commit (13); shorter ones, which cost at most a
   few milliseconds whatever they hold, are rendered by the group's write, which
   spares most posts a thread hop of their own (a hop for every post showed in
   publish throughput: docs/benchmarks.md).
19. Every read of posts for a reader filters private channels in SQL, against the
   channels as they are in that very query, like the event log's reads: the channel
   map behind permission checks (access.py) may be a second old, and a channel made
   private within that second must not show its posts to someone who may not read
   it. Callers pass the private channels the reader may read.
20. Every write transaction goes through one write context (``_write``), which notes
   what the transaction changed: the events it appended, each with its post or
   channel as the transaction left it, and what it changed of access. Once the
   transaction has committed, and while its writer still holds the write lock, the
   store hands that ``Commit`` to its listeners (``on_commit``) on the event loop of
   the caller: the relay (this process's streams), the broker (other processes) and
   the access caches. The lock makes the order of announcements the order of
   commits. Store methods run in worker threads, and their caller resumes through
   the same loop queue, after the announcement: whatever a client asks next of this
   process already reflects its own write. No caller announces a change itself, so a
   new kind of change reaches every screen with no call site to forget.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import logging
import threading
import time
from collections.abc import Callable, Collection, Coroutine, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, ParamSpec, TypeVar

import anyio.to_thread
from sqlalchemy import Connection, Engine, Select, Table, delete, func, insert, or_, text
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
from sqlmodel import Session, col, create_engine, select
from sqlmodel.sql.expression import Select as ModelSelect

from feed import markdown, schema
from feed.brokers import ACCESS_HINT, HINT_CHANNEL
from feed.commits import GroupCommit
from feed.models import (
    NO_ACCESS_CHANGE,
    AccessChange,
    Answer,
    Change,
    Channel,
    ChannelChange,
    ChannelView,
    Claim,
    Commit,
    EndedSession,
    Event,
    EventKind,
    FeedEvent,
    FrontPage,
    IdempotencyKey,
    Member,
    MemberView,
    NewPost,
    Once,
    Post,
    PostView,
    Secret,
    Token,
    TokenView,
    _channel_view,
    _feed_event,
    _post_view,
    _token_view,
)

logger = logging.getLogger("feed.store")

P = ParamSpec("P")
T = TypeVar("T")
Q = TypeVar("Q", bound="Select[*tuple[Any, ...]]")

SEED_CHANNELS = (
    ("general", "General", "Anything and everything."),
    ("announcements", "Announcements", "News from the company."),
)


class StoreError(Exception):
    """Base of the errors a store call reports to its caller."""


class StoreUnavailable(StoreError):
    """The database cannot be reached, is too busy or refuses writes; the same call
    may work later."""

    UNREACHABLE = "The database is unavailable; try again shortly."
    BUSY = "The database is busy with other writers; try again shortly."
    READ_ONLY = (
        "The database refuses writes (it is read-only or its storage is failing); "
        "reading still works. Try again later."
    )
    FULL = (
        "The database is full: nothing new can be stored until space is freed; "
        "reading still works. Try again later."
    )

    def __init__(self, message: str = UNREACHABLE) -> None:
        super().__init__(message)


class Unstorable(StoreError):
    """The database driver refused a value it was given (text it cannot encode, a
    number out of range): the request's fault, never the database's (rationale 15)."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"This cannot be stored: {reason}.")
        self.reason = reason


class IdempotencyKeyReused(StoreError):
    def __init__(self, key: str) -> None:
        super().__init__(
            f"The Idempotency-Key {key!r} was already used for a different request; "
            "send a new key with a new request."
        )
        self.key = key


class ChannelNotFound(StoreError):
    def __init__(self, name: str) -> None:
        super().__init__(f"There is no channel named {name!r}.")
        self.name = name


class ChannelExists(StoreError):
    def __init__(self, name: str) -> None:
        super().__init__(f"A channel named {name!r} already exists.")
        self.name = name


class ChannelArchived(StoreError):
    def __init__(self, name: str) -> None:
        super().__init__(f"The channel {name!r} is archived; restore it to post there.")
        self.name = name


class TokenNotFound(StoreError):
    def __init__(self, token_id: int) -> None:
        super().__init__(f"There is no token with id {token_id}.")
        self.token_id = token_id


class PostNotFound(StoreError):
    def __init__(self, post_id: int) -> None:
        super().__init__(f"There is no post with id {post_id}.")
        self.post_id = post_id


class PostDeleted(StoreError):
    def __init__(self, post_id: int) -> None:
        super().__init__(f"Post {post_id} has been deleted.")
        self.post_id = post_id


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


# The event loop a store method was called from, as its worker thread sees it: where
# the commit it makes is announced (rationale 20).
_CALLER: ContextVar[asyncio.AbstractEventLoop | None] = ContextVar("feed_caller", default=None)


def _on_behalf(loop: asyncio.AbstractEventLoop, call: Callable[[], T]) -> T:
    # The worker thread runs in a copy of the caller's context, made for this call.
    _CALLER.set(loop)
    return call()


def _in_thread(fn: Callable[P, T]) -> Callable[P, Coroutine[Any, Any, T]]:
    @functools.wraps(fn)
    async def run(*args: P.args, **kwargs: P.kwargs) -> T:
        call = functools.partial(fn, *args, **kwargs)
        loop = asyncio.get_running_loop()
        try:
            return await anyio.to_thread.run_sync(_on_behalf, loop, call)
        except (OperationalError, InterfaceError, InternalError) as exc:
            unavailable = _unavailable(exc)
            if unavailable is None:
                raise
            raise unavailable from exc
        except PoolTimeout as exc:
            # Every connection is busy: the database is, for this process (rationale 10).
            raise StoreUnavailable(StoreUnavailable.BUSY) from exc
        except UnicodeEncodeError as exc:
            reason = f"the text holds characters that are not Unicode ({exc.reason})"
            raise Unstorable(reason) from exc
        except OverflowError as exc:  # SQLite's driver, for an integer past 64 bits
            raise Unstorable("a number is too large") from exc
        except DataError as exc:
            raise Unstorable(_first_line(exc.orig)) from exc

    return run


def _first_line(error: BaseException | None) -> str:
    return str(error).strip().splitlines()[0].rstrip(".") if str(error).strip() else "bad value"


def _now() -> datetime:
    return datetime.now(UTC)


# For the plain INSERTs of new posts (rationale 13).
POSTS: Table = Post.__table__  # type: ignore[attr-defined]
EVENTS: Table = Event.__table__  # type: ignore[attr-defined]

# The same lock that serialises migrations (schema.py): one per database.
WRITE_LOCK_KEY = schema.LOCK_KEY
# What a write transaction notes in its session's ``info``: the log's last event id
# when it began, the events it wrote (rationale 20) and what it changed of access.
LOG_END = "feed.log_end"
WRITTEN = "feed.events_written"
ACCESS = "feed.access_changed"
WENT_BACK = "feed.log_went_back"

SUPPORTED_DATABASES = ("sqlite", "postgresql")
# Seconds a write waits for the database's write lock (rationale 10).
BUSY_TIMEOUT = 10.0
IDEMPOTENCY_TTL = timedelta(hours=24)

# The next event id becomes at least the time in microseconds (rationale 17); never lower.
_PG_SKIP_EVENT_IDS = """
SELECT setval(seq, GREATEST(:floor, COALESCE(pg_sequence_last_value(seq), 0)))
FROM (SELECT CAST(pg_get_serial_sequence('events', 'id') AS regclass) AS seq) AS events_seq
"""
_SQLITE_SKIP_EVENT_IDS = (
    "UPDATE sqlite_sequence SET seq = :floor WHERE name = 'events' AND seq < :floor"
)
_SQLITE_START_EVENT_IDS = """
INSERT INTO sqlite_sequence (name, seq) SELECT 'events', :floor
WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'events')
"""


def make_engine(url: str) -> Engine:
    """An engine for ``url`` with the connection settings feed relies on."""
    parsed: URL = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return _sqlite_engine(parsed)
    if backend == "postgresql":
        return _postgres_engine(parsed)
    raise StoreError(f"Unsupported database {backend!r}; use sqlite:/// or postgresql://.")


def busy_timeout(engine: Engine) -> float:
    """How long a write waits for its turn: ``?timeout=`` in a SQLite URL, else the default."""
    raw = engine.url.query.get("timeout")
    return float(raw) if isinstance(raw, str) else BUSY_TIMEOUT


SQLITE_POOL = 40


def _sqlite_engine(url: URL) -> Engine:
    raw = url.query.get("timeout")
    timeout = float(raw) if isinstance(raw, str) else BUSY_TIMEOUT
    # A connection per worker thread that may need one (anyio runs up to 40): opening
    # SQLite connections on demand and closing them again cost more than the queries.
    engine = create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": timeout},
        pool_size=SQLITE_POOL,
        max_overflow=0,
        pool_timeout=timeout,
    )

    @listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" hook below decide how transactions start.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        # A 201 means committed, even across a power cut (rationale 16).
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        write = connection.get_execution_options().get("feed_write", False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

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
        # (the writers' advisory lock among them) is bounded, as on SQLite (rationale 10).
        connect_args={
            "options": f"-c timezone=UTC -c lock_timeout={round(BUSY_TIMEOUT * 1000)}",
            "connect_timeout": 5,
        },
    )


class Store:
    """The feed's tables and queries. Public methods are coroutines."""

    def __init__(self, engine: Engine, *, notify: bool = False) -> None:
        self._engine = engine
        self._writer = engine.execution_options(feed_write=True)
        # Rationale 14: one snapshot for reads that must agree with each other.
        self._postgres = engine.dialect.name == "postgresql"
        self._snapshots = (
            engine.execution_options(isolation_level="REPEATABLE READ")
            if self._postgres
            else engine
        )
        self._write_lock = threading.Lock()
        self._write_wait = busy_timeout(engine)
        if notify and not self._postgres:
            raise StoreError("Hints by NOTIFY need a PostgreSQL database.")
        self._notify = notify
        self._new_posts: GroupCommit[NewPost, Change | Once] = GroupCommit(
            self._insert_posts, isolate=lambda exc: isinstance(exc, Unstorable)
        )
        self._listeners: list[Callable[[Commit], object]] = []
        # The newest event this process saw committed, written or read (rationale 17).
        self._high_water = 0
        self._high_water_lock = threading.Lock()
        # Times a write found the log gone back and skipped ids: the relay ends the
        # streams that hold what is lost (relay.py).
        self.rollbacks = 0

    def on_commit(self, listener: Callable[[Commit], object]) -> None:
        """Call ``listener`` with what each transaction changed, on the event loop of
        the write's caller, in commit order, as soon as it is committed (rationale 20).
        It must not wait or raise: the change is committed whatever it does."""
        self._listeners.append(listener)

    @classmethod
    def from_url(cls, url: str, *, notify: bool = False) -> Store:
        """A store on ``url``; ``notify`` sends a NOTIFY hint inside each write."""
        return cls(make_engine(url), notify=notify)

    @property
    def backend(self) -> str:
        return self._engine.dialect.name

    def close(self) -> None:
        self._engine.dispose()

    @contextmanager
    def _write(self) -> Iterator[Session]:
        if not self._write_lock.acquire(timeout=self._write_wait):
            raise StoreUnavailable(StoreUnavailable.BUSY)
        try:
            with Session(self._writer, expire_on_commit=False) as session:
                if self._postgres:
                    session.execute(
                        text("SELECT pg_advisory_xact_lock(:key)"), {"key": WRITE_LOCK_KEY}
                    )
                self._guard_log(session)
                yield session
                written: list[FeedEvent] = session.info.get(WRITTEN, [])
                access: AccessChange = session.info.get(ACCESS, NO_ACCESS_CHANGE)
                if self._notify:
                    self._hint(session, access, written)
                session.commit()
                if session.info.get(WENT_BACK):
                    self._went_back(session.info[LOG_END])
                if written:
                    self.saw(written[-1].id)
                if written or access:
                    # Still under the write lock: announced in commit order (rationale 20).
                    self._announce(Commit(session.info[LOG_END], written, access))
        finally:
            self._write_lock.release()

    @staticmethod
    def _hint(session: Session, access: AccessChange, written: Sequence[FeedEvent]) -> None:
        """The other processes' hints, sent only if the transaction commits (rationale 8)."""
        hints = [ACCESS_HINT] if access else []
        hints += [str(written[-1].id)] if written else []
        for hint in hints:
            session.execute(
                text("SELECT pg_notify(:channel, :payload)"),
                {"channel": HINT_CHANNEL, "payload": hint},
            )

    def _announce(self, commit: Commit) -> None:
        loop = _CALLER.get()
        if loop is None:  # called outside any event loop: nobody awaits an answer
            self._tell(commit)
        else:
            loop.call_soon_threadsafe(self._tell, commit)

    def _tell(self, commit: Commit) -> None:
        for listener in self._listeners:
            try:
                listener(commit)
            except Exception:  # committed: a listener's bug must not say otherwise
                logger.exception("a commit listener failed")

    @staticmethod
    def _noted(session: Session, events: Sequence[FeedEvent]) -> None:
        """Note ``events``, in id order, as written by this transaction."""
        session.info.setdefault(WRITTEN, []).extend(events)

    @staticmethod
    def _access_changed(session: Session, change: AccessChange) -> None:
        session.info[ACCESS] = session.info.get(ACCESS, NO_ACCESS_CHANGE) | change

    def saw(self, event_id: int) -> None:
        """Note that ``event_id`` is committed and may be on screens (rationale 17)."""
        with self._high_water_lock:
            self._high_water = max(self._high_water, event_id)

    def _guard_log(self, session: Session) -> None:
        """Before a write: if the log ends before an event this process saw committed,
        it went back (a restore, a failover): skip ids past it first (rationale 17)."""
        end = session.exec(select(func.max(Event.id))).one() or 0
        session.info[LOG_END] = end
        if end < self._high_water:
            logger.error(
                "the event log ends at %d, before event %d that was committed: the "
                "database was restored or rolled back. New events skip past it.",
                end,
                self._high_water,
            )
            self._skip_event_ids(session)
            session.info[WENT_BACK] = True

    def _went_back(self, end: int) -> None:
        """The skip of ``_guard_log`` is committed: the log ends at ``end`` now."""
        with self._high_water_lock:
            self._high_water = end
            self.rollbacks += 1

    def _read(self) -> Session:
        return Session(self._engine)

    @contextmanager
    def _snapshot(self) -> Iterator[Session]:
        """A read transaction whose statements all see the same committed state
        (rationale 14)."""
        with Session(self._snapshots) as session, session.begin():
            yield session

    # -- schema -----------------------------------------------------------------

    @_in_thread
    def create_schema(self) -> None:
        """Bring the tables up to date, create the channels every feed starts with, and
        put the next event id past any this log may have handed out (rationale 17)."""
        schema.upgrade(self._writer)
        with self._write() as session:
            existing = set(session.exec(select(Channel.name)).all())
            for name, title, description in SEED_CHANNELS:
                if name not in existing:
                    session.add(Channel(name=name, title=title, description=description))
            self._skip_event_ids(session)

    @_in_thread
    def check_log(self) -> None:
        """Whether the log still reaches the newest event this process saw committed; if
        not, skip ids as a write would (rationale 17), and count it in ``rollbacks``."""
        with self._read() as session:
            end = session.exec(select(func.max(Event.id))).one() or 0
        if end < self._high_water:
            with self._write():
                pass  # ``_guard_log`` finds it so, and does the rest

    def _skip_event_ids(self, session: Session) -> None:
        floor = {"floor": time.time_ns() // 1000}
        if self._postgres:
            session.execute(text(_PG_SKIP_EVENT_IDS), floor)
            return
        session.execute(text(_SQLITE_SKIP_EVENT_IDS), floor)
        session.execute(text(_SQLITE_START_EVENT_IDS), floor)

    # -- channels ---------------------------------------------------------------

    @_in_thread
    def list_channels(self, *, archived: bool = True) -> list[ChannelView]:
        """Channels by name; ``archived=False`` leaves out the archived ones."""
        query = select(Channel).order_by(col(Channel.name))
        if not archived:
            query = query.where(col(Channel.archived).is_(False))
        with self._read() as session:
            return [_channel_view(c) for c in session.exec(query).all()]

    @_in_thread
    def channel_names(self) -> set[str]:
        with self._read() as session:
            return set(session.exec(select(Channel.name)).all())

    @_in_thread
    def create_channel(
        self,
        name: str,
        title: str,
        description: str,
        *,
        private: bool = False,
        announcement_only: bool = False,
    ) -> ChannelChange:
        with self._write() as session:
            return self._add_channel(session, name, title, description, private, announcement_only)

    @_in_thread
    def create_channel_once(
        self,
        claim: Claim,
        name: str,
        title: str,
        description: str,
        answer: Callable[[ChannelChange], Answer],
        *,
        private: bool = False,
        announcement_only: bool = False,
    ) -> Once:
        """``create_channel``, answered once per ``claim`` (rationale 11)."""
        with self._write() as session:
            return self._once(
                session,
                claim,
                lambda: self._add_channel(
                    session, name, title, description, private, announcement_only
                ),
                answer,
            )

    def _add_channel(
        self,
        session: Session,
        name: str,
        title: str,
        description: str,
        private: bool = False,
        announcement_only: bool = False,
    ) -> ChannelChange:
        if session.exec(select(Channel.id).where(Channel.name == name)).first() is not None:
            raise ChannelExists(name)
        channel = Channel(
            name=name,
            title=title,
            description=description,
            private=private,
            announcement_only=announcement_only,
        )
        session.add(channel)
        session.flush()
        event_id = self._log_channel(session, EventKind.CHANNEL_CREATED, channel)
        return ChannelChange(_channel_view(channel), event_id)

    @_in_thread
    def update_channel(
        self,
        name: str,
        *,
        title: str | None = None,
        description: str | None = None,
        private: bool | None = None,
        announcement_only: bool | None = None,
    ) -> ChannelChange:
        """Change a channel's title, description or access; its name, used in links, stays."""
        with self._write() as session:
            channel = self._channel(session, name)
            before = _channel_view(channel)
            channel.title = title if title is not None else channel.title
            channel.description = description if description is not None else channel.description
            channel.private = private if private is not None else channel.private
            if announcement_only is not None:
                channel.announcement_only = announcement_only
            if _channel_view(channel) == before:
                return ChannelChange(_channel_view(channel), None)
            event_id = self._log_channel(session, EventKind.CHANNEL_UPDATED, channel)
            return ChannelChange(_channel_view(channel), event_id)

    @_in_thread
    def set_archived(self, name: str, archived: bool) -> ChannelChange:
        """An archived channel keeps its posts but takes no new ones."""
        with self._write() as session:
            channel = self._channel(session, name)
            if channel.archived == archived:
                return ChannelChange(_channel_view(channel), None)
            channel.archived = archived
            kind = EventKind.CHANNEL_ARCHIVED if archived else EventKind.CHANNEL_RESTORED
            event_id = self._log_channel(session, kind, channel)
            return ChannelChange(_channel_view(channel), event_id)

    @staticmethod
    def _channel(session: Session, name: str) -> Channel:
        channel = session.exec(select(Channel).where(Channel.name == name)).first()
        if channel is None:
            raise ChannelNotFound(name)
        return channel

    # -- posts ------------------------------------------------------------------

    async def create_post(self, channel: str, author: str, body: str) -> Change:
        """A new post and its event, committed with the others waiting (rationale 13)."""
        written = await self._new_post(NewPost(channel, author, body))
        assert isinstance(written, Change)
        return written

    async def create_post_once(
        self, claim: Claim, channel: str, author: str, body: str, answer: Callable[[Change], Answer]
    ) -> Once:
        """``create_post``, answered once per ``claim`` (rationale 11)."""
        written = await self._new_post(NewPost(channel, author, body, claim=claim, answer=answer))
        assert isinstance(written, Once)
        return written

    async def _new_post(self, new: NewPost) -> Change | Once:
        # A long body is rendered by its own request, before it joins a group: nobody
        # waits for its Markdown but itself (rationale 18).
        if len(new.body) > markdown.RENDER_APART:
            new = replace(new, html=await _in_thread(markdown.to_html)(new.body))
        return await self._new_posts.submit(new)

    @_in_thread
    def _insert_posts(self, batch: Sequence[NewPost]) -> list[Change | Once | StoreError]:
        """Write a group of new posts in one transaction; each one's own outcome."""
        # Short bodies, rendered here, before the lock (rationale 18).
        htmls = [markdown.to_html(new.body) if new.html is None else new.html for new in batch]
        with self._write() as session:
            names = sorted({new.channel for new in batch})
            found = session.exec(select(Channel).where(col(Channel.name).in_(names))).all()
            channels = {c.name: c for c in found}
            settled, repeats = self._settle(session, batch, channels)
            accepted = [(n, new) for n, new in enumerate(batch) if n not in settled | repeats]
            written: dict[int, Change | Once] = {}
            if accepted:
                changes = self._insert_new(session, accepted, channels, htmls)
                written = self._keep_answers(session, changes, batch)
            for n, first in repeats.items():
                # A retry that came with its first try: that try's answer, replayed.
                kept = written[first]
                assert isinstance(kept, Once)
                written[n] = Once(kept.answer, None, True)
        return [written.get(n) or settled[n] for n in range(len(batch))]

    def _settle(
        self, session: Session, batch: Sequence[NewPost], channels: dict[str, Channel]
    ) -> tuple[dict[int, Once | StoreError], dict[int, int]]:
        """The posts of ``batch`` that write nothing, each with its outcome: refused, or
        a retry answered as before (rationale 11); and the retries of a post in this
        very group, each with the place of its first try."""
        kept = self._kept_answers(session, [new.claim for new in batch if new.claim])
        settled: dict[int, Once | StoreError] = {}
        repeats: dict[int, int] = {}
        first_tries: dict[str, int] = {}
        for n, new in enumerate(batch):
            claim = new.claim
            if claim is not None:
                before, first = kept.get(claim.key), first_tries.get(claim.key)
                if before is not None:
                    answer = Answer(before.status, before.body, before.location)
                    same = before.fingerprint == claim.fingerprint
                    settled[n] = (
                        Once(answer, None, True) if same else IdempotencyKeyReused(claim.key)
                    )
                    continue
                if first is not None:
                    if batch[first].claim == claim:
                        repeats[n] = first
                    else:
                        settled[n] = IdempotencyKeyReused(claim.key)
                    continue
            chan = channels.get(new.channel)
            if chan is None:
                settled[n] = ChannelNotFound(new.channel)
            elif chan.archived:
                settled[n] = ChannelArchived(new.channel)
            elif claim is not None:
                first_tries[claim.key] = n
        return settled, repeats

    def _insert_new(
        self,
        session: Session,
        accepted: Sequence[tuple[int, NewPost]],
        channels: dict[str, Channel],
        htmls: Sequence[str],
    ) -> dict[int, Change]:
        """Insert the ``accepted`` posts and their events; each one's change, by place."""
        now = _now()
        connection = session.connection()
        post_rows = [
            {"channel_id": channels[new.channel].id, "author": new.author, "body": new.body}
            | {"html": htmls[n], "created_at": now, "edited_at": None}
            | {"pinned": False, "deleted": False}
            for n, new in accepted
        ]
        post_ids = self._insert_many(connection, POSTS, post_rows)
        event_rows = [
            {
                "kind": EventKind.POST_CREATED.value,
                "channel_id": row["channel_id"],
                "post_id": post_id,
                "created_at": now,
            }
            for row, post_id in zip(post_rows, post_ids, strict=True)
        ]
        event_ids = self._insert_many(connection, EVENTS, event_rows)
        written: dict[int, Change] = {}
        events = []
        for (n, new), post_id, event_id in zip(accepted, post_ids, event_ids, strict=True):
            view = PostView(
                post_id, new.channel, new.author, new.body, now, None, False, False, htmls[n]
            )
            written[n] = Change(view, event_id)
            chan = channels[new.channel]
            events.append(
                FeedEvent(
                    event_id, EventKind.POST_CREATED, chan.name, view, None, now, chan.private
                )
            )
        # Not read back: made here as a reader would get them (rationale 4).
        self._noted(session, events)
        return written

    @staticmethod
    def _insert_many(connection: Connection, table: Table, rows: list[dict[str, Any]]) -> list[int]:
        """Insert ``rows``; their new ids, in the order of ``rows``."""
        returning = insert(table).returning(table.c.id, sort_by_parameter_order=True)
        return list(connection.execute(returning, rows).scalars())

    # -- idempotency keys -------------------------------------------------------

    def _once(
        self,
        session: Session,
        claim: Claim,
        write: Callable[[], ChannelChange],
        answer: Callable[[ChannelChange], Answer],
    ) -> Once:
        """The stored answer for ``claim``, or ``write`` and its answer stored with it."""
        found = self._kept_answers(session, [claim]).get(claim.key)
        if found is not None:
            if found.fingerprint != claim.fingerprint:
                raise IdempotencyKeyReused(claim.key)
            return Once(Answer(found.status, found.body, found.location), None, True)
        change = write()
        given = answer(change)
        session.add(_key_row(claim, given))
        return Once(given, change.event_id, False)

    @staticmethod
    def _kept_answers(session: Session, claims: Sequence[Claim]) -> dict[str, IdempotencyKey]:
        """The answers kept for ``claims``, by key; expired ones are deleted first."""
        if not claims:
            return {}
        expired = col(IdempotencyKey.created_at) < _now() - IDEMPOTENCY_TTL
        session.execute(delete(IdempotencyKey).where(expired))
        keys = sorted({claim.key for claim in claims})
        found = session.exec(select(IdempotencyKey).where(col(IdempotencyKey.key).in_(keys)))
        return {row.key: row for row in found.all()}

    @staticmethod
    def _keep_answers(
        session: Session, changes: dict[int, Change], batch: Sequence[NewPost]
    ) -> dict[int, Change | Once]:
        """``changes``, with the answer of each that came with a claim kept beside it
        (rationale 11): those are answered with it."""
        written: dict[int, Change | Once] = {}
        for n, change in changes.items():
            new = batch[n]
            if new.claim is None or new.answer is None:
                written[n] = change
                continue
            given = new.answer(change)
            session.add(_key_row(new.claim, given))
            written[n] = Once(given, change.event_id, False)
        return written

    @_in_thread
    def edit_post(self, post_id: int, body: str) -> Change:
        html = markdown.to_html(body)  # before the write lock (rationale 18)
        with self._write() as session:
            post, channel = self._live_post(session, post_id)
            if post.body == body:
                return Change(_post_view(post, channel.name), None)
            post.body, post.html = body, html
            post.edited_at = _now()
            event_id = self._log(session, EventKind.POST_UPDATED, post, channel)
            return Change(_post_view(post, channel.name), event_id)

    @_in_thread
    def delete_post(self, post_id: int) -> Change:
        with self._write() as session:
            post, channel = self._live_post(session, post_id)
            post.deleted = True
            post.pinned = False
            post.body = post.html = ""
            event_id = self._log(session, EventKind.POST_DELETED, post, channel)
            return Change(_post_view(post, channel.name), event_id)

    @_in_thread
    def set_pinned(self, post_id: int, pinned: bool) -> Change:
        with self._write() as session:
            post, channel = self._live_post(session, post_id)
            if post.pinned == pinned:
                return Change(_post_view(post, channel.name), None)
            post.pinned = pinned
            kind = EventKind.POST_PINNED if pinned else EventKind.POST_UNPINNED
            event_id = self._log(session, kind, post, channel)
            return Change(_post_view(post, channel.name), event_id)

    @_in_thread
    def ping(self) -> None:
        """Raise ``StoreUnavailable`` unless the database answers."""
        with self._engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    @_in_thread
    def get_post(self, post_id: int, *, private: Collection[str] | None = None) -> PostView:
        """The post, if a reader of the private channels ``private`` (None: all) may see
        it: one in another private channel is not found (rationale 19)."""
        with self._read() as session:
            query = select(Post, Channel.name).join(
                Channel, col(Channel.id) == col(Post.channel_id)
            )
            row = session.exec(_readable(query.where(Post.id == post_id), private)).first()
            if row is None:
                raise PostNotFound(post_id)
            return _post_view(*row)

    @_in_thread
    def list_posts(
        self,
        channels: Sequence[str] | None = None,
        *,
        before: int | None = None,
        limit: int = 50,
        pinned: bool | None = None,
        private: Collection[str] | None = None,
    ) -> list[PostView]:
        """Live posts, newest first; ``before`` is a post id to page back from.
        ``private`` names the private channels the reader may see (rationale 19)."""
        with self._read() as session:
            return self._posts(session, channels, before, limit, pinned, private)

    @_in_thread
    def front_page(
        self,
        channels: Sequence[str] | None,
        limit: int,
        *,
        private: Collection[str] | None = None,
    ) -> FrontPage:
        """What a page shows first, and the event id it is current up to.

        One snapshot (rationale 14), so the posts and the id agree: the page's stream
        then resumes exactly after what the page shows. ``private`` names the private
        channels the reader may see (rationale 19).
        """
        with self._snapshot() as session:
            recent = self._posts(session, channels, None, limit, False, private)
            pinned = self._posts(session, channels, None, limit, True, private)
            last = session.exec(select(func.max(Event.id))).one() or 0
        posts = sorted([*recent, *pinned], key=lambda p: p.id, reverse=True)
        older = recent[-1].id if len(recent) == limit else None
        return FrontPage(posts, older, last)

    @staticmethod
    def _posts(
        session: Session,
        channels: Sequence[str] | None,
        before: int | None,
        limit: int,
        pinned: bool | None,
        private: Collection[str] | None,
    ) -> list[PostView]:
        query = (
            select(Post, Channel.name)
            .join(Channel, col(Channel.id) == col(Post.channel_id))
            .where(col(Post.deleted).is_(False))
        )
        query = _readable(query, private)
        if channels is not None:
            query = query.where(col(Channel.name).in_(channels))
        if before is not None:
            query = query.where(col(Post.id) < before)
        if pinned is not None:
            query = query.where(col(Post.pinned).is_(pinned))
        query = query.order_by(col(Post.id).desc()).limit(limit)
        return [_post_view(post, name) for post, name in session.exec(query).all()]

    @staticmethod
    def _post(session: Session, post_id: int) -> tuple[Post, Channel]:
        row = session.exec(
            select(Post, Channel)
            .join(Channel, col(Channel.id) == col(Post.channel_id))
            .where(Post.id == post_id)
        ).first()
        if row is None:
            raise PostNotFound(post_id)
        return row[0], row[1]

    def _live_post(self, session: Session, post_id: int) -> tuple[Post, Channel]:
        post, channel = self._post(session, post_id)
        if post.deleted:
            raise PostDeleted(post_id)
        return post, channel

    # -- tokens, kiosk links, memberships and keys -------------------------------

    @_in_thread
    def add_token(
        self, name: str, role: str, kind: str, channels: Sequence[str] | None, digest: str
    ) -> TokenView:
        """Keep a new token's digest; unknown ``channels`` raise ChannelNotFound."""
        with self._write() as session:
            for channel in channels or ():
                self._channel(session, channel)
            token = Token(
                name=name,
                role=role,
                kind=kind,
                channels=None if channels is None else ",".join(channels),
                digest=digest,
                created_at=_now(),
            )
            session.add(token)
            session.flush()
            # A process may remember that this digest named no token a moment ago.
            self._access_changed(session, AccessChange(tokens=True))
            return _token_view(token)

    @_in_thread
    def tokens(self, kind: str | None = None) -> list[TokenView]:
        query = select(Token).order_by(col(Token.id))
        if kind is not None:
            query = query.where(Token.kind == kind)
        with self._read() as session:
            return [_token_view(t) for t in session.exec(query).all()]

    @_in_thread
    def token_by_digest(self, digest: str) -> TokenView | None:
        """The token with this digest, revoked or not; None if there is none."""
        with self._read() as session:
            found = session.exec(select(Token).where(Token.digest == digest)).first()
            return None if found is None else _token_view(found)

    @_in_thread
    def revoke_token(self, token_id: int) -> TokenView:
        with self._write() as session:
            token = session.get(Token, token_id)
            if token is None:
                raise TokenNotFound(token_id)
            if token.revoked_at is None:
                token.revoked_at = _now()
                self._access_changed(session, AccessChange(revoked=frozenset({token_id})))
            return _token_view(token)

    @_in_thread
    def revoked_tokens(self, ids: Sequence[int]) -> set[int]:
        """Which of ``ids`` are revoked or gone."""
        if not ids:
            return set()
        query = select(Token.id).where(col(Token.id).in_(ids), col(Token.revoked_at).is_(None))
        with self._read() as session:
            live = set(session.exec(query).all())
        return set(ids) - live

    @_in_thread
    def end_session(self, digest: str, expires_at: datetime) -> None:
        """Refuse the session ``digest`` names from now on (access.py, 4), and forget
        sessions ended earlier that have expired since."""
        with self._write() as session:
            session.execute(delete(EndedSession).where(col(EndedSession.expires_at) < _now()))
            if session.get(EndedSession, digest) is None:
                session.add(EndedSession(digest=digest, expires_at=expires_at))
                self._access_changed(session, AccessChange(ended=frozenset({digest})))

    @_in_thread
    def ended_sessions(self, digests: Sequence[str]) -> set[str]:
        """Which of ``digests`` name sessions that were signed out of."""
        if not digests:
            return set()
        query = select(EndedSession.digest).where(col(EndedSession.digest).in_(digests))
        with self._read() as session:
            return set(session.exec(query).all())

    @_in_thread
    def set_member(self, channel: str, name: str, *, may_post: bool) -> MemberView:
        with self._write() as session:
            chan = self._channel(session, channel)
            found = session.exec(
                select(Member).where(Member.channel_id == chan.id, Member.name == name)
            ).first()
            if found is None:
                assert chan.id is not None
                session.add(Member(channel_id=chan.id, name=name, may_post=may_post))
            elif found.may_post != may_post:
                found.may_post = may_post
            else:
                return MemberView(chan.name, name, may_post)  # as it was: nothing to tell
            self._access_changed(session, AccessChange(members=True))
            return MemberView(chan.name, name, may_post)

    @_in_thread
    def remove_member(self, channel: str, name: str) -> bool:
        """Take a grant away; False if there was none."""
        with self._write() as session:
            chan = self._channel(session, channel)
            found = session.exec(
                select(Member).where(Member.channel_id == chan.id, Member.name == name)
            ).first()
            if found is None:
                return False
            session.delete(found)
            self._access_changed(session, AccessChange(members=True))
            return True

    @_in_thread
    def members(
        self, *, channel: str | None = None, names: Sequence[str] | None = None
    ) -> list[MemberView]:
        """Grants by channel and name, of one channel or of some names."""
        query = select(Member, Channel.name).join(
            Channel, col(Channel.id) == col(Member.channel_id)
        )
        if channel is not None:
            query = query.where(Channel.name == channel)
        if names is not None:
            query = query.where(col(Member.name).in_(names))
        query = query.order_by(col(Channel.name), col(Member.name))
        with self._read() as session:
            return [MemberView(c, m.name, m.may_post) for m, c in session.exec(query).all()]

    @_in_thread
    def secret(self, name: str, make: Callable[[], str]) -> str:
        """The shared secret ``name``, made with ``make`` the first time it is asked for."""
        with self._read() as session:
            found = session.get(Secret, name)
            if found is not None:
                return found.value
        with self._write() as session:
            # Another process may have made it while this one waited for the lock.
            found = session.get(Secret, name)
            if found is None:
                found = Secret(name=name, value=make())
                session.add(found)
            return found.value

    # -- the event log ----------------------------------------------------------

    def _log(self, session: Session, kind: EventKind, post: Post, channel: Channel) -> int:
        row = Event(kind=kind.value, channel_id=post.channel_id, post_id=post.id, created_at=_now())
        return self._append(session, row, post, channel)

    def _log_channel(self, session: Session, kind: EventKind, channel: Channel) -> int:
        assert channel.id is not None
        row = Event(kind=kind.value, channel_id=channel.id, post_id=None, created_at=_now())
        # Which channels are private, and who may post where, are access (rationale 20).
        self._access_changed(session, AccessChange(channels=True))
        return self._append(session, row, None, channel)

    def _append(self, session: Session, row: Event, post: Post | None, channel: Channel) -> int:
        session.add(row)
        session.flush()
        assert row.id is not None
        # The event as a reader of the log would get it once this commits (rationale 4).
        self._noted(session, [_feed_event(row, post, channel)])
        return row.id

    @_in_thread
    def latest_event_id(self) -> int:
        with self._read() as session:
            return session.exec(select(func.max(Event.id))).one() or 0

    @_in_thread
    def newest_events(self, limit: int) -> tuple[list[FeedEvent], int]:
        """The newest ``limit`` events, oldest first, and the id the log ends at, from
        one snapshot (rationale 14). Ids have gaps (17): count rows, not ids."""
        query = _events_after(0, None, None).order_by(col(Event.id).desc()).limit(limit)
        with self._snapshot() as session:
            rows = session.exec(query).all()
            events = [_feed_event(ev, post, channel) for ev, post, channel in reversed(rows)]
            return events, session.exec(select(func.max(Event.id))).one() or 0

    @_in_thread
    def has_event(self, event_id: int) -> bool:
        """Whether ``event_id`` is in the log (0, the start of the log, always is)."""
        if event_id == 0:
            return True
        with self._read() as session:
            return session.get(Event, event_id) is not None

    @_in_thread
    def events_after(
        self,
        after: int,
        channels: Sequence[str] | None = None,
        *,
        limit: int = 1000,
        private: Sequence[str] | None = None,
    ) -> list[FeedEvent]:
        """Events with id > ``after``, oldest first, at most ``limit`` of them.

        ``private`` names the private channels the reader may see; None: all of them."""
        query = _events_after(after, channels, private).order_by(col(Event.id)).limit(limit)
        with self._read() as session:
            return [
                _feed_event(ev, post, channel) for ev, post, channel in session.exec(query).all()
            ]

    @_in_thread
    def count_events_after(
        self,
        after: int,
        channels: Sequence[str] | None = None,
        *,
        limit: int,
        private: Sequence[str] | None = None,
    ) -> int:
        """How many events ``events_after`` would return with the same arguments, without
        reading them: a replay knows whether it is too long before it starts."""
        ids = _readable_after(select(Event.id), after, channels, private)
        found = ids.order_by(col(Event.id)).limit(limit).subquery()
        with self._read() as session:
            return session.exec(select(func.count()).select_from(found)).one()


def _key_row(claim: Claim, given: Answer) -> IdempotencyKey:
    return IdempotencyKey(
        key=claim.key,
        fingerprint=claim.fingerprint,
        status=given.status,
        body=given.body,
        location=given.location,
        created_at=_now(),
    )


def _readable_after(
    query: Q, after: int, channels: Sequence[str] | None, private: Sequence[str] | None
) -> Q:
    """``query`` narrowed to the events after ``after`` in ``channels`` (None: all) that a
    reader of the private channels ``private`` (None: all) may see."""
    query = query.join(Channel, col(Channel.id) == col(Event.channel_id))
    query = query.where(col(Event.id) > after)
    if channels is not None:
        query = query.where(col(Channel.name).in_(channels))
    return _readable(query, private)


def _events_after(
    after: int, channels: Sequence[str] | None, private: Sequence[str] | None
) -> ModelSelect[Event, Post, Channel]:
    """Events after ``after``, each with its post and channel as they are now, that a
    reader may see (``_readable_after``)."""
    query = _readable_after(select(Event, Post, Channel), after, channels, private)
    return query.outerjoin(Post, col(Post.id) == col(Event.post_id))


def _readable(query: Q, private: Collection[str] | None) -> Q:
    """``query``, joined with its channels, narrowed to what a reader of the private
    channels ``private`` (None: all of them) may see, as the channels are now."""
    if private is None:
        return query
    readable = col(Channel.name).in_(sorted(private))
    return query.where(or_(col(Channel.private).is_(False), readable))
