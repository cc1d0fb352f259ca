"""The event log: ids, the one write context every change goes through, and the
announcement of what each transaction committed.

The database is the event log. Each change a reader can see writes an ``events`` row
in the same transaction as the change itself; the row's id is the SSE id.

Rationale for the less obvious choices:

1. Ids in commit order. Event ids must be handed out in commit order, or a client that
   saw id 42 could later miss a 41 that committed after it. SQLite has one writer at a
   time, so an autoincrement key is in commit order there. ``sqlite_autoincrement``
   stops SQLite from reusing the id of a deleted last row.
2. Writers taking turns. Writers inside one process queue on a lock, so they wait their
   turn in Python instead of spinning in SQLite's busy handler, for as long as the
   busy timeout at most (engine.py, on the bound on waiting).
3. One writer at a time on PostgreSQL too. There, concurrent transactions can commit
   out of id order. Every write transaction therefore first takes one
   transaction-scoped advisory lock, held until commit: writers commit one at a time,
   so a sequence value handed out later always commits later. That is SQLite's rule,
   made explicit.
4. Hints inside the transaction. With the PostgreSQL broker the other processes' hints
   are ``pg_notify`` calls issued inside the writing transaction; PostgreSQL delivers
   them only if the commit happens. One for the newest event a transaction wrote, and
   one that says access changed, if it did (8); the access hint goes first, so a
   process that hears both rechecks its streams before the events reach them.
5. The current state. Replay renders the *current* state of a post, so reads return
   events joined with their post (or channel) as it is now, never a stored copy of it
   at the time. A write notes its events as a read right after its commit would
   return them.
6. One snapshot. A list and the event id it is current up to (a page's posts and where
   its stream resumes) are read in one snapshot, with everything the page carries
   about its posts (summaries, reactions, the events its reader's page reports read:
   lists.py, on a page's posts' events), so no id it carries is newer than its
   position. A SQLite read transaction is one already (WAL mode). PostgreSQL's
   default, READ COMMITTED, gives each statement its own: a post committed between
   the two reads would carry an id newer than the list, and the page's stream would
   resume after a post it never showed. Such reads run in REPEATABLE READ there.
   Since writers commit in id order (3), a snapshot always holds exactly the events
   up to some id.
7. Ids never reused. An event id once handed out is never handed out again for another
   event, even after the database is restored from a backup or rolled back: a screen
   holding that id would skip the new event for good. Nothing in a restored database
   can tell it was restored, so the guarantee comes from the clock: every start (and
   the relay, when it sees the log go backwards while running) puts the next id at the
   time in microseconds, unless it is past that already. An id handed out before is at
   most the time it was handed out plus the events since the last start, which stays
   below the clock unless events were written faster than one a microsecond. Ids are
   contiguous between starts; a start leaves a gap, which readers never assume away. A
   screen that resumes from an id the log does not hold (one from the log before a
   restore) gets ``resync`` (resume.py). A database can also go back under a running
   process (restored in place, or a failover to a replica that had not received the
   last commits). Each process remembers the newest event it saw committed, and every
   write first checks the log still reaches it; if not, it skips ids as a start would,
   before writing.
8. The commit announcement, and our own hints heard first: announcements.py. Every
   write below ends in it, under the write lock, so announcements keep the order of
   commits.
9. The plain write. On SQLite the group write of new posts (new_posts.py) runs on the
   driver's own cursor (``PlainWrite``), from ``BEGIN IMMEDIATE`` to ``COMMIT``, with no
   ``Session``, no SQLAlchemy connection and none of their transaction events: those
   cost more than the statements of a small group. Everything else about a write is
   ``_write``'s: the same lock, the log's guard (7), the same commit and announcement
   (8). The parts of a group that read or write through the ORM (idempotency keys,
   replies' parents, thread summaries) get a ``Session`` joined to the same
   transaction, made only when a group needs one. The driver's errors are raised as
   SQLAlchemy raises them, so that the caller sees what any other write's would be
   (engine.py, on unavailable, not broken). Its connection is kept from write to
   write (sqlite.py, on the kept connection); ``close`` gives it back once the write
   under way, if any, has ended.
10. The write on the loop. New posts on PostgreSQL are written from the event loop
   (storage/loop_writer.py, on new posts on the event loop) by ``_write_on_loop``, with
   the lock, the guard of the log, the hints, the threads' summaries, the note and
   the announcement of ``_write``. The in-process lock is taken at once when it is
   free, else waited for in a worker thread. The announcement is queued on the loop
   (``call_soon``), as a worker thread's is, not told at once: a commit that a
   thread made just before, whose announcement the loop has not run yet, is still
   told first.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any, TypeVar

from sqlalchemy import Engine, Select, func
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session, select

from feed import schema
from feed.brokers import ACCESS_HINT, HINT_CHANNEL
from feed.models import Channel, Event, EventKind, Post
from feed.storage import loop_writer, postgres, tallies, threads
from feed.storage.announcements import Announcer
from feed.storage.engine import busy_timeout, in_thread, now, take_in_thread
from feed.storage.high_water import HighWater, skip_event_ids
from feed.storage.refusals import StoreError, StoreUnavailable
from feed.storage.sqlite import KeptConnection, PlainWrite, orm
from feed.values import NO_ACCESS_CHANGE, AccessChange, Commit, FeedEvent, _feed_event

logger = logging.getLogger("feed.store")

Q = TypeVar("Q", bound="Select[*tuple[Any, ...]]")

# The same lock that serialises migrations (schema.py): one per database.
WRITE_LOCK_KEY = schema.LOCK_KEY
# What a write transaction notes in its session's ``info``: the log's last event id
# when it began, the events it wrote and what it changed of access (8).
LOG_END = "feed.log_end"
WRITTEN = "feed.events_written"
ACCESS = "feed.access_changed"
WENT_BACK = "feed.log_went_back"
CHANNELS = "feed.channels_read"


class EventLog:
    """The part of the store every other part writes through. Public methods are
    coroutines."""

    def __init__(self, engine: Engine, *, notify: bool = False) -> None:
        self._engine = engine
        self._writer = engine.execution_options(feed_write=True)
        # One snapshot for reads that must agree with each other (6).
        self._postgres = engine.dialect.name == "postgresql"
        self._snapshots = (
            engine.execution_options(isolation_level="REPEATABLE READ")
            if self._postgres
            else engine
        )
        self._write_lock = threading.Lock()
        self._write_wait = busy_timeout(engine.url)
        if notify and not self._postgres:
            raise StoreError("Hints by NOTIFY need a PostgreSQL database.")
        self._notify = notify
        # The newest event this process saw committed, written or read (7).
        self._high_water = HighWater()
        self._announcer = Announcer()  # (8)
        # New posts' own connection, on the event loop (10).
        self._loop_writer = loop_writer.LoopWriter(engine) if self._postgres else None
        # The plain write's connection, kept from write to write under the lock (9).
        self._plain = KeptConnection(self._writer)

    def on_commit(self, listener: Callable[[Commit], object]) -> None:
        """Call ``listener`` with what each transaction changed, on the event loop of
        the write's caller, in commit order, as soon as it is committed (8). It must not
        wait or raise: the change is committed whatever it does."""
        self._announcer.listen(listener)

    @property
    def backend(self) -> str:
        return self._engine.dialect.name

    def close(self) -> None:
        self._plain.closing = True
        # After the write under way, if any: a write that begins from now on gives
        # its connection back itself (9). Only SQLite keeps one, and its writes hold
        # the lock in threads, never on the loop this may be called from.
        if self._plain.held and self._write_lock.acquire(timeout=self._write_wait):
            try:
                self._plain.give_back()
            finally:
                self._write_lock.release()
        if self._loop_writer is not None:
            self._loop_writer.close()
        self._engine.dispose()

    # -- writing ----------------------------------------------------------------

    @contextmanager
    def _write(self, channels: Sequence[str] = ()) -> Iterator[Session]:
        """The one write transaction (2, 3, 7), announced once committed (8). On
        PostgreSQL, the rows of ``channels`` are read with the lock, into the session's
        ``info`` (``CHANNELS``)."""
        if not self._write_lock.acquire(timeout=self._write_wait):
            raise StoreUnavailable(StoreUnavailable.BUSY)
        try:
            with Session(self._writer, expire_on_commit=False) as session:
                if self._postgres:  # the lock, the log's end and channels: one round trip
                    end, found = postgres.begin_write(session, WRITE_LOCK_KEY, channels)
                    session.info[CHANNELS] = found
                    self._guard_log(session, end)
                else:
                    self._guard_log(session, _log_end(session))
                yield session
                self._finish(session)
        finally:
            self._write_lock.release()

    @contextmanager
    def _write_plain(self) -> Iterator[PlainWrite]:
        """``_write`` on SQLite's own cursor (9)."""
        if not self._write_lock.acquire(timeout=self._write_wait):
            raise StoreUnavailable(StoreUnavailable.BUSY)
        try:
            raw = self._plain.take()
            write: PlainWrite | None = None
            done = False
            try:
                write = PlainWrite(self._writer, raw)
                write.cursor.execute("BEGIN IMMEDIATE")
                end = write.cursor.execute("SELECT max(id) FROM events").fetchone()[0]
                self._guard_log(write, int(end or 0))
                yield write
                self._finish(write)
                done = True
            finally:
                try:
                    if write is not None:
                        write.close()
                finally:
                    if not done or self._plain.closing:
                        self._plain.give_back()
        except sqlite3.Error as exc:  # opening the connection included
            raise DBAPIError.instance(None, None, exc, sqlite3.Error) from exc
        finally:
            self._write_lock.release()

    def _finish(self, write: Session | PlainWrite) -> None:
        """Commit ``write`` and announce it (8)."""
        written: list[FeedEvent] = write.info.get(WRITTEN, [])
        if threads.wanted(written, new=True):
            # Replies and their threads' summaries as this transaction leaves them
            # (threads.py, on summaries).
            written = threads.with_threads(orm(write), written, new=True)
        access: AccessChange = write.info.get(ACCESS, NO_ACCESS_CHANGE)
        took = self._commit(write, access, written)
        if write.info.get(WENT_BACK):
            self._high_water.went_back(write.info[LOG_END])
        if written:
            self.saw(written[-1].id)
        if written or access:
            # Still under the write lock: announced in commit order (8).
            self._announcer.announce(Commit(write.info[LOG_END], written, access, took))

    def _commit(
        self, session: Session | PlainWrite, access: AccessChange, written: list[FeedEvent]
    ) -> float:
        """Commit, with the other processes' hints (4); the seconds it took."""
        started = time.perf_counter()
        with self._announcer.committing(session.info[LOG_END], written):
            if isinstance(session, PlainWrite):
                session.commit()
            elif self._postgres:  # the hints and the commit in one round trip
                hints = _hints(access, written) if self._notify else []
                postgres.commit_write(session, HINT_CHANNEL, hints)
            else:
                session.commit()
        return time.perf_counter() - started

    @asynccontextmanager
    async def _write_on_loop(
        self, channels: Sequence[str], keys: Sequence[str] = (), parents: Sequence[int] = ()
    ) -> AsyncIterator[loop_writer.LoopWrite]:
        """``_write`` for new posts on PostgreSQL, on the event loop (10): the writers'
        lock, the log's guard, the commit with its hints, the threads' summaries and
        the announcement, as there; the idempotency ``keys`` and the replies'
        ``parents`` read with the lock. What it writes is noted in
        ``LoopWrite.written``, the answers it keeps in ``LoopWrite.keeping``."""
        assert self._loop_writer is not None
        await self._write_turn()
        try:
            begun = self._loop_writer.transaction(WRITE_LOCK_KEY, channels, keys, parents)
            async with begun as write:
                connection, end = write.connection, write.end
                went_back = self._high_water.gone_back(end)
                if went_back:
                    floor = {"floor": time.time_ns() // 1000}
                    await connection.execute(postgres.SKIP_EVENT_IDS, floor)
                yield write
                written = write.written
                # Replies' threads, as this transaction leaves them (threads.py, on
                # summaries): read in the commit's own round trip.
                wanted = threads.wanted(written, new=True)
                bodies = threads.parents(written)
                reads = self._loop_writer.summaries(wanted, bodies) if wanted else []
                started = time.perf_counter()
                with self._announcer.committing(end, written):
                    hints = _hints(NO_ACCESS_CHANGE, written) if self._notify else []
                    found = await loop_writer.commit_on_loop(
                        connection, HINT_CHANNEL, hints, write.keeping, reads
                    )
                took = time.perf_counter() - started
                if wanted:
                    written = threads.with_found(written, threads.from_rows(*found))
            if went_back:
                self._high_water.went_back(end)
            if written:
                self.saw(written[-1].id)
                self._announcer.announce(Commit(end, written, took=took))
        finally:
            self._write_lock.release()

    async def _write_turn(self) -> None:
        """Take the in-process write lock from the event loop (2): at once if it is
        free, else waiting in a worker thread, as long as a write may wait."""
        if self._write_lock.acquire(blocking=False):
            return
        if not await take_in_thread(self._write_lock, self._write_wait):
            raise StoreUnavailable(StoreUnavailable.BUSY)

    def announces(self, event_id: int) -> bool:
        """Whether this process's commit announcements bring ``event_id`` to its
        listeners, or a reason to read it (announcements.py, on our own hints): a hint
        of it needs no read."""
        return self._announcer.brings(event_id)

    @staticmethod
    def _noted(session: Session | PlainWrite, events: Sequence[FeedEvent]) -> None:
        """Note ``events``, in id order, as written by this transaction (5)."""
        session.info.setdefault(WRITTEN, []).extend(events)

    @staticmethod
    def _access_changed(session: Session, change: AccessChange) -> None:
        """Note what this transaction changed of access (8)."""
        session.info[ACCESS] = session.info.get(ACCESS, NO_ACCESS_CHANGE) | change

    def _log(
        self,
        session: Session,
        kind: EventKind,
        post: Post,
        channel: Channel,
        *,
        recipient: str | None = None,
    ) -> int:
        row = Event(
            kind=kind.value,
            channel_id=post.channel_id,
            post_id=post.id,
            created_at=now(),
            recipient=recipient,
        )
        return self._append(session, row, post, channel)

    def _log_channel(self, session: Session, kind: EventKind, channel: Channel) -> int:
        assert channel.id is not None
        row = Event(kind=kind.value, channel_id=channel.id, post_id=None, created_at=now())
        # Which channels are private, and who may post where, are access (8).
        self._access_changed(session, AccessChange(channels=True))
        return self._append(session, row, None, channel)

    def _append(self, session: Session, row: Event, post: Post | None, channel: Channel) -> int:
        session.add(row)
        session.flush()
        assert row.id is not None
        self._noted(session, tallies.on_events(session, [_feed_event(row, post, channel)]))
        return row.id

    # -- ids that never go back ---------------------------------------------------

    @property
    def rollbacks(self) -> int:
        """Times a write found the log gone back and skipped ids (7)."""
        return self._high_water.rollbacks

    def saw(self, event_id: int) -> None:
        """Note that ``event_id`` is committed and may be on screens (7)."""
        self._high_water.saw(event_id)

    def _guard_log(self, session: Session | PlainWrite, end: int) -> None:
        """Before a write: if the log ends (at ``end``) before an event this process saw
        committed, it went back (a restore, a failover): skip ids past it first (7)."""
        session.info[LOG_END] = end
        if self._high_water.gone_back(end):
            self._skip_event_ids(session)
            session.info[WENT_BACK] = True

    @in_thread
    def check_log(self) -> None:
        """Whether the log still reaches the newest event this process saw committed; if
        not, skip ids as a write would (7), and count it in ``rollbacks``."""
        with self._read() as session:
            end = session.exec(select(func.max(Event.id))).one() or 0
        if end < self._high_water.value:
            with self._write():
                pass  # ``_guard_log`` finds it so, and does the rest

    def _skip_event_ids(self, session: Session | PlainWrite) -> None:
        skip_event_ids(session, self._postgres)

    # -- reading ----------------------------------------------------------------

    def _read(self) -> Session:
        return Session(self._engine)

    @contextmanager
    def _snapshot(self) -> Iterator[Session]:
        """A read transaction whose statements all see the same committed state (6)."""
        with Session(self._snapshots) as session, session.begin():
            yield session

    @in_thread
    def latest_event_id(self) -> int:
        with self._read() as session:
            return session.exec(select(func.max(Event.id))).one() or 0


def _log_end(session: Session) -> int:
    # A plain statement: the ORM's select cost more than the rest of the guard.
    end = session.connection().exec_driver_sql("SELECT max(id) FROM events").scalar()
    return int(end or 0)


def _hints(access: AccessChange, written: Sequence[FeedEvent]) -> list[str]:
    """The other processes' hints, to be sent only if the transaction commits (4)."""
    hints = [ACCESS_HINT] if access else []
    return hints + ([str(written[-1].id)] if written else [])
