"""The write transaction on PostgreSQL, in as few round trips as its guarantees allow.

A write's fixed statements (taking the writers' lock, reading where the log ends, the
hints and the commit: log.py, on one writer at a time, on ids never reused, on hints
inside the transaction) cost a round trip each, and under a burst of posts a round
trip costs the writer several times its statement: it sleeps until PostgreSQL
answers, then waits for the interpreter, which the event loop's thread holds while it
serves requests.

Rationale:

1. Pipelined, in order. The statements of each step go out together in psycopg's
   pipeline mode and are answered together: the server still runs them one after
   another, in the order sent, so the lock is held before the log's end is read, and
   the hints are queued before the commit that delivers them. What a write reads
   under the lock before it writes (the channels of new posts) goes out with the
   lock, and is read as the lock left it. A statement that fails makes the server
   skip the rest of its step: a failed hint never lets the commit through.
2. The driver's errors, as every other statement's. Pipelined statements are sent on
   the driver's own connection, past SQLAlchemy, so its errors are turned into
   SQLAlchemy's here, and a connection found dead is invalidated, as SQLAlchemy would:
   the caller sees ``StoreUnavailable`` and the pool opens a fresh connection
   (engine.py, on unavailable, not broken).
3. Nothing the session still holds. The commit is sent by the driver, so the session
   is flushed before it: SQLAlchemy would otherwise send what it still held after the
   commit, in a transaction of its own, outside the lock. The session's own commit
   that follows has nothing left to send.
4. New posts in one statement. A group's posts and their events (new_posts.py) are
   inserted by one statement, fed from arrays, so that its text is the same for any
   size of group and the driver prepares it once. Each row takes its id in the same
   row as its place in the group, so an event can never be joined to another's post.
   Ids are taken in the order of the places, under the writers' lock (log.py, on one
   writer at a time); that order is checked on the ids read back, and a group found
   out of it fails before its commit.
5. New posts on the event loop. A group of new top-level posts (new_posts.py, on the
   write on the loop) is written by psycopg's asynchronous connection, from the event
   loop. Under a burst, a worker thread waited longer than its round trips took: for
   the loop to hand it the group, for the interpreter after each answer, and for the
   loop to take its result back. The connection is the writers' own, kept open
   between writes: no pool, and no ping before each write. It is opened with the
   engine's own arguments (the time zone, the lock's timeout), as the engine last
   opened one of its own. A connection the server closed meanwhile (a restart) is
   found so by the write's first round trip, which only took the lock and read, so
   the write begins again on a new one. After any other error the transaction is
   rolled back, or a connection in doubt closed.
6. The same errors. The driver's errors on the loop's connection become what a worker
   thread's caller gets for them (engine.py, on unavailable, not broken, and on
   unstorable values): the lock's timeout is a 503, and a value the driver refuses
   fails only its own post.
7. Keyed posts and replies on the loop too. New posts with an idempotency key (keys.py,
   on idempotency keys) and replies are written on the loop as the others. The first
   round trip, under the lock, also deletes the keys past their time and reads the
   group's others, and reads the replies' parents; the last keeps the answers of the
   new keys and reads the threads' summaries (threads.py, on summaries) as the
   transaction leaves them, before the hints and the commit. A key, its post and its
   event still commit together or not at all, and neither costs a round trip of its
   own. The summaries' queries are threads.py's own, compiled for the driver once,
   with the posts bound as one array: compiled for each group's posts, they held the
   event loop for over a millisecond a group.
"""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator, Collection, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from itertools import pairwise
from typing import TYPE_CHECKING, Any

from sqlalchemy import ClauseElement, Connection, Dialect, Engine
from sqlalchemy.event import listen
from sqlalchemy.exc import DataError, DBAPIError, InterfaceError, InternalError, OperationalError
from sqlmodel import Session

from feed.models import Channel, EventKind, IdempotencyKey, Post
from feed.storage import threads
from feed.storage.engine import Unstorable, _first_line, _unavailable, now
from feed.storage.keys import IDEMPOTENCY_TTL
from feed.values import FeedEvent

if TYPE_CHECKING:  # the driver is imported only where PostgreSQL is used
    import psycopg

_LOCK = "SELECT pg_advisory_xact_lock(%s)"
_LOG_END = "SELECT max(id) FROM events"
_NOTIFY = "SELECT pg_notify(%s, %s)"
_CHANNELS = "SELECT * FROM channels WHERE name = ANY(%s)"
# Idempotency keys on the loop (7): those past their time go, the others are read, and
# the answers of a group's new keys are kept, each in one statement.
_KEYS_EXPIRED = "DELETE FROM idempotency_keys WHERE created_at < %s"
_KEYS = "SELECT * FROM idempotency_keys WHERE key = ANY(%s)"
# Replies' parents on the loop (7), read with the lock.
_PARENTS = "SELECT * FROM posts WHERE id = ANY(%s)"
_KEEP = """
INSERT INTO idempotency_keys (key, fingerprint, status, body, location, created_at)
SELECT key, fingerprint, status, body, location, %(at)s
FROM unnest(
    %(keys)s::text[], %(fingerprints)s::text[], %(statuses)s::integer[], %(bodies)s::text[],
    %(locations)s::text[]
) AS kept (key, fingerprint, status, body, location)
"""


# A group of new posts and their events (4). Each row takes its id from the sequence
# with its place beside it, so the two never part, whatever order they are taken in;
# ``of_post`` is an event's post, by its place.
_NEW_POSTS = """
WITH new_posts AS MATERIALIZED (
    SELECT nextval(pg_get_serial_sequence('posts', 'id')) AS id, new.*
    FROM (
        SELECT * FROM unnest(
            %(channels)s::integer[], %(parents)s::integer[], %(authors)s::text[],
            %(bodies)s::text[], %(htmls)s::text[]
        ) WITH ORDINALITY AS new (channel_id, parent_id, author, body, html, place)
        ORDER BY place
    ) AS new
), new_events AS MATERIALIZED (
    SELECT nextval(pg_get_serial_sequence('events', 'id')) AS id, planned.*
    FROM (
        SELECT planned.*, new_posts.id AS post_id, new_posts.channel_id
        FROM unnest(%(of)s::bigint[], %(kinds)s::text[], %(recipients)s::text[])
            WITH ORDINALITY AS planned (of_post, kind, recipient, place)
        JOIN new_posts ON new_posts.place = planned.of_post
        ORDER BY planned.place
    ) AS planned
), posts_written AS (
    INSERT INTO posts
        (id, channel_id, parent_id, author, body, html, created_at, edited_at, pinned, deleted)
    SELECT id, channel_id, parent_id, author, body, html, %(at)s, NULL, false, false
    FROM new_posts
), events_written AS (
    INSERT INTO events (id, kind, channel_id, post_id, created_at, recipient)
    SELECT id, kind, channel_id, post_id, %(at)s, recipient FROM new_events
)
SELECT place, of_post, id, post_id FROM new_events ORDER BY place
"""


def insert_posts(
    connection: Connection,
    posts: Sequence[dict[str, Any]],
    events: Sequence[tuple[int, EventKind, str | None]],
) -> tuple[list[int], list[int]]:
    """Insert ``posts`` (rows of the posts table, all made at one time) and their
    ``events`` (each as its post's place in ``posts``, kind and recipient, every post
    with one at least), in one statement (4): the posts' ids and the events', in
    order."""
    rows = connection.exec_driver_sql(_NEW_POSTS, _new_posts(posts, events)).all()
    return _placed(rows, len(posts), events)


def _new_posts(
    posts: Sequence[dict[str, Any]], events: Sequence[tuple[int, EventKind, str | None]]
) -> dict[str, Any]:
    """The values of the statement that inserts ``posts`` and ``events`` (4)."""
    return {
        "at": posts[0]["created_at"],
        "channels": [row["channel_id"] for row in posts],
        "parents": [row["parent_id"] for row in posts],
        "authors": [row["author"] for row in posts],
        "bodies": [row["body"] for row in posts],
        "htmls": [row["html"] for row in posts],
        "of": [place + 1 for place, _, _ in events],
        "kinds": [kind.value for _, kind, _ in events],
        "recipients": [recipient for _, _, recipient in events],
    }


def _placed(
    rows: Sequence[Sequence[Any]], posts: int, events: Sequence[tuple[int, EventKind, str | None]]
) -> tuple[list[int], list[int]]:
    """The ids of the ``posts`` new posts and of their ``events``, from the rows the
    statement read back, checked to be in the group's order (4)."""
    post_ids = {of_post - 1: post_id for _, of_post, _, post_id in rows}
    posts_in_order = [post_ids.get(place, 0) for place in range(posts)]
    event_ids = [event_id for _, _, event_id, _ in rows]
    placed = [(place - 1, of_post - 1) for place, of_post, _, _ in rows]
    if (
        placed != [(n, e[0]) for n, e in enumerate(events)]
        or not _rising(posts_in_order)
        or not _rising(event_ids)
    ):
        # Ids out of the group's order: fail before anything commits.
        raise RuntimeError(f"new posts: ids out of order: {rows}")
    return posts_in_order, event_ids


def _rising(ids: Sequence[int]) -> bool:
    """Whether ``ids`` are all there (none is 0) and in ascending order."""
    return all(a < b for a, b in pairwise([0, *ids]))


def begin_write(
    session: Session, lock_key: int, channels: Sequence[str] = ()
) -> tuple[int, list[Channel]]:
    """Begin the write transaction with the writers' lock; the id the log ends at (0
    if empty), and the rows of the ``channels`` named, as the lock found them: one
    round trip (1)."""
    with _pipelined(session.connection()) as driver:
        driver.execute(_LOCK, (lock_key,))
        end = driver.execute(_LOG_END)
        named = driver.execute(_CHANNELS, (list(channels),)) if channels else None
    found = _channel_rows(named.description, named.fetchall()) if named is not None else []
    return _end(end.fetchone()), found


def _end(last: Sequence[Any] | None) -> int:
    """The log's end from its row (0 if the log is empty)."""
    return int(last[0]) if last is not None and last[0] is not None else 0


def _channel_rows(
    description: Sequence[Any] | None, rows: Sequence[Sequence[Any]]
) -> list[Channel]:
    return [Channel(**row) for row in _rows(description, rows)]


def _rows(description: Sequence[Any] | None, rows: Sequence[Sequence[Any]]) -> list[dict[str, Any]]:
    columns = [column.name for column in description or ()]
    return [dict(zip(columns, row, strict=True)) for row in rows]


def commit_write(session: Session, channel: str, hints: Sequence[str]) -> None:
    """Send ``hints`` on ``channel`` and commit: one round trip (1, 3)."""
    session.flush()
    with _pipelined(session.connection()) as driver:
        for hint in hints:
            driver.execute(_NOTIFY, (channel, hint))
        driver.commit()
    session.commit()


@contextmanager
def _pipelined(connection: Connection) -> Iterator[Any]:
    """The driver's connection in pipeline mode (1), with its errors as SQLAlchemy's (2)."""
    driver = connection.connection.driver_connection
    assert driver is not None
    dialect = connection.dialect
    dbapi = dialect.loaded_dbapi
    try:
        with driver.pipeline():
            yield driver
    except dbapi.Error as exc:
        invalidated = dialect.is_disconnect(exc, connection.connection.dbapi_connection, None)
        if invalidated:
            connection.invalidate(exc)
        raise DBAPIError.instance(
            None, None, exc, dbapi.Error, connection_invalidated=invalidated, dialect=dialect
        ) from exc


class LoopWriter:
    """The writers' own connection, driven from the event loop (5): psycopg's
    asynchronous connection, opened with the engine's own connection arguments, kept
    open between writes and opened again after an error."""

    def __init__(self, engine: Engine) -> None:
        self._dialect = engine.dialect
        self._arguments: tuple[list[Any], dict[str, Any]] | None = None
        self._connection: psycopg.AsyncConnection[Any] | None = None
        self._summaries: list[tuple[str, dict[str, Any]]] | None = None
        self._driver = importlib.import_module("psycopg")
        listen(engine, "do_connect", self._saw_connect)

    def _saw_connect(self, _dialect: Any, _record: Any, cargs: Any, cparams: Any) -> None:
        # The engine's arguments, as it opens its own connections (5).
        self._arguments = (list(cargs), dict(cparams))

    def summaries(self, posts: Collection[int]) -> list[tuple[str, dict[str, Any]]]:
        """The queries of the threads' summaries of ``posts`` with their values, for
        ``commit_on_loop`` (7): compiled once, the posts bound as an array."""
        if self._summaries is None:
            queries = threads.statements(None)
            self._summaries = [_compiled(query, self._dialect) for query in queries]
        ids = {threads.POSTS.key: sorted(posts)}
        return [(sql, values | ids) for sql, values in self._summaries]

    @property
    def ready(self) -> bool:
        """Whether the engine has opened a connection, so its arguments are known."""
        return self._arguments is not None

    @asynccontextmanager
    async def transaction(
        self,
        lock_key: int,
        channels: Sequence[str],
        keys: Sequence[str] = (),
        parents: Sequence[int] = (),
    ) -> AsyncIterator[LoopWrite]:
        """The connection, in a transaction begun as ``begin_write`` begins it, which
        the caller commits; with the log's end, the ``channels``, the idempotency
        ``keys`` and the replies' ``parents`` read (7). Anything raised rolls it back,
        and the driver's errors come out as a worker thread's would (6)."""
        connection = await self._connected()
        try:
            try:
                begun = await _begin_on_loop(connection, lock_key, channels, keys, parents)
            except self._driver.OperationalError:
                if not connection.broken:
                    raise
                # Gone since the last write (a restart, a failover): nothing was sent
                # but the lock and reads (and expired keys' deletion, undone with it),
                # so the write begins again on a new one (5).
                self.close()
                connection = await self._connected()
                begun = await _begin_on_loop(connection, lock_key, channels, keys, parents)
            yield begun
        except BaseException as exc:
            await self._roll_back(connection, exc)
            if isinstance(exc, self._driver.Error | UnicodeEncodeError):
                raise store_error(exc, self._dialect) from exc
            raise

    async def _connected(self) -> psycopg.AsyncConnection[Any]:
        connection = self._connection
        if connection is None or connection.closed or connection.broken:
            assert self._arguments is not None
            cargs, cparams = self._arguments
            try:
                connection = await self._driver.AsyncConnection.connect(*cargs, **cparams)
            except self._driver.Error as exc:
                raise store_error(exc, self._dialect) from exc
            self._connection = connection
        return connection

    async def _roll_back(
        self, connection: psycopg.AsyncConnection[Any], exc: BaseException
    ) -> None:
        """Leave no transaction behind; a connection in doubt is closed (5)."""
        try:
            if isinstance(exc, Exception) and not connection.broken and not connection.closed:
                await connection.rollback()
                return
        except (self._driver.Error, OSError):
            pass
        self.close()

    def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            # Closing sends nothing and waits for nothing: no event loop is needed.
            connection.pgconn.finish()


async def _begin_on_loop(
    connection: psycopg.AsyncConnection[Any],
    lock_key: int,
    channels: Sequence[str],
    keys: Sequence[str],
    parents: Sequence[int],
) -> LoopWrite:
    """``begin_write`` on the loop's connection, with the idempotency ``keys`` and the
    ``parents`` read under the lock (1, 5, 7)."""
    async with connection.pipeline():
        await connection.execute(_LOCK, (lock_key,))
        end = await connection.execute(_LOG_END)
        named = await connection.execute(_CHANNELS, (list(channels),)) if channels else None
        if keys:
            await connection.execute(_KEYS_EXPIRED, (now() - IDEMPOTENCY_TTL,))
            kept = await connection.execute(_KEYS, (list(keys),))
        if parents:
            answered = await connection.execute(_PARENTS, (list(parents),))
    found = _channel_rows(named.description, await named.fetchall()) if named else []
    write = LoopWrite(connection, _end(await end.fetchone()), found)
    if keys:
        rows = _rows(kept.description, await kept.fetchall())
        write.kept = {row["key"]: IdempotencyKey(**row) for row in rows}
    if parents:
        rows = _rows(answered.description, await answered.fetchall())
        write.parents = {row["id"]: Post(**row) for row in rows}
    return write


async def insert_posts_on_loop(
    connection: psycopg.AsyncConnection[Any],
    posts: Sequence[dict[str, Any]],
    events: Sequence[tuple[int, EventKind, str | None]],
) -> tuple[list[int], list[int]]:
    """``insert_posts`` on the loop's connection (4, 5)."""
    found = await connection.execute(_NEW_POSTS, _new_posts(posts, events))
    return _placed(await found.fetchall(), len(posts), events)


async def commit_on_loop(
    connection: psycopg.AsyncConnection[Any],
    channel: str,
    hints: Sequence[str],
    keeping: Sequence[IdempotencyKey] = (),
    reads: Sequence[tuple[str, dict[str, Any]]] = (),
) -> list[list[tuple[Any, ...]]]:
    """``commit_write`` on the loop's connection (1, 5), with the answers ``keeping``
    kept first and the ``reads`` (``LoopWriter.summaries``) read last before the
    commit (7): their rows, in order."""
    async with connection.pipeline():
        if keeping:
            await connection.execute(_KEEP, _kept(keeping))
        cursors = [await connection.execute(sql, values) for sql, values in reads]
        for hint in hints:
            await connection.execute(_NOTIFY, (channel, hint))
        await connection.commit()
    return [await cursor.fetchall() for cursor in cursors]


def _compiled(statement: ClauseElement, dialect: Dialect) -> tuple[str, dict[str, Any]]:
    """``statement``, built with SQLAlchemy, as the text and values the loop's
    connection sends (7)."""
    done = statement.compile(dialect=dialect)
    return str(done), dict(done.params)


def _kept(keeping: Sequence[IdempotencyKey]) -> dict[str, Any]:
    """The values of the statement that keeps the answers ``keeping`` (7)."""
    return {
        "at": keeping[0].created_at,
        "keys": [row.key for row in keeping],
        "fingerprints": [row.fingerprint for row in keeping],
        "statuses": [row.status for row in keeping],
        "bodies": [row.body for row in keeping],
        "locations": [row.location for row in keeping],
    }


def store_error(exc: BaseException, dialect: Dialect) -> BaseException:
    """The error a worker thread's caller would get for ``exc``, the driver's (6)."""
    if isinstance(exc, UnicodeEncodeError):
        return Unstorable(f"the text holds characters that are not Unicode ({exc.reason})")
    if not isinstance(exc, Exception):
        return exc
    error = DBAPIError.instance(None, None, exc, dialect.loaded_dbapi.Error, dialect=dialect)
    if isinstance(error, DataError):
        return Unstorable(_first_line(exc))
    if isinstance(error, OperationalError | InterfaceError | InternalError):
        return _unavailable(error) or error
    return error


# The next event id becomes at least the time in microseconds (log.py, on ids never
# reused); never lower.
SKIP_EVENT_IDS = """
SELECT setval(seq, GREATEST(%(floor)s, COALESCE(pg_sequence_last_value(seq), 0)))
FROM (SELECT CAST(pg_get_serial_sequence('events', 'id') AS regclass) AS seq) AS events_seq
"""


@dataclass
class LoopWrite:
    """A write on the event loop (log.py, on the write on the loop): its connection,
    where the log ended when it took the lock, the channels, the idempotency keys and
    the replies' parents read with the lock (7), the events it wrote, in id order, as
    ``_noted`` keeps them in a session, and the answers it keeps, written before its
    commit."""

    connection: Any
    end: int
    channels: list[Channel]
    kept: dict[str, IdempotencyKey] = field(default_factory=dict)
    parents: dict[int, Post] = field(default_factory=dict)
    written: list[FeedEvent] = field(default_factory=list)
    keeping: list[IdempotencyKey] = field(default_factory=list)
