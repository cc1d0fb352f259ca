"""PostgreSQL's write from the event loop: the writers' own connection, driven by
psycopg's asynchronous API, and the statements a write sends on it.

The statements and their order are postgres.py's (on pipelined, in order, and on new
posts in one statement); this module holds what differs when they are sent from the
loop instead of a worker thread.

Rationale:

1. New posts on the event loop. A group of new top-level posts (new_posts.py, on the
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
2. The same errors. The driver's errors on the loop's connection become what a worker
   thread's caller gets for them (engine.py, on unavailable, not broken, and on
   unstorable values): the lock's timeout is a 503, and a value the driver refuses
   fails only its own post.
3. Keyed posts and replies on the loop too. New posts with an idempotency key (keys.py,
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
from collections.abc import AsyncIterator, Collection, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import ClauseElement, Dialect, Engine
from sqlalchemy.event import listen
from sqlalchemy.exc import DataError, DBAPIError, InterfaceError, InternalError, OperationalError

from feed.models import Channel, EventKind, IdempotencyKey, Post
from feed.storage import threads
from feed.storage.engine import _first_line, _unavailable, now
from feed.storage.keys import IDEMPOTENCY_TTL
from feed.storage.postgres import (
    CHANNELS,
    LOCK,
    LOG_END,
    NEW_POSTS,
    NOTIFY,
    channel_rows,
    log_end,
    new_posts_values,
    placed,
    rows_of,
)
from feed.storage.refusals import Unstorable
from feed.storage.rows import PostRows
from feed.values import FeedEvent

if TYPE_CHECKING:  # the driver is imported only where PostgreSQL is used
    import psycopg


# Idempotency keys on the loop (3): those past their time go, the others are read, and
# the answers of a group's new keys are kept, each in one statement.
_KEYS_EXPIRED = "DELETE FROM idempotency_keys WHERE created_at < %s"
_KEYS = "SELECT * FROM idempotency_keys WHERE key = ANY(%s)"
# Replies' parents on the loop (3), read with the lock.
_PARENTS = "SELECT * FROM posts WHERE id = ANY(%s)"
_KEEP = """
INSERT INTO idempotency_keys (key, fingerprint, status, body, location, created_at)
SELECT key, fingerprint, status, body, location, %(at)s
FROM unnest(
    %(keys)s::text[], %(fingerprints)s::text[], %(statuses)s::integer[], %(bodies)s::text[],
    %(locations)s::text[]
) AS kept (key, fingerprint, status, body, location)
"""


class LoopWriter:
    """The writers' own connection, driven from the event loop (1): psycopg's
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
        # The engine's arguments, as it opens its own connections (1).
        self._arguments = (list(cargs), dict(cparams))

    def summaries(
        self, posts: Collection[int], parents: Collection[int] = ()
    ) -> list[tuple[str, dict[str, Any]]]:
        """The queries of the threads' summaries of ``posts``, and of the bodies of
        ``parents`` if any (threads.py, on bodies), with their values, for
        ``commit_on_loop`` (3): compiled once, the posts bound as an array."""
        if self._summaries is None:
            queries = [*threads.statements(None), threads.bodies(None)]
            self._summaries = [_compiled(query, self._dialect) for query in queries]
        counts, latest, bodies = self._summaries
        ids = {threads.POSTS.key: sorted(posts)}
        reads = [(sql, values | ids) for sql, values in (counts, latest)]
        if parents:
            sql, values = bodies
            reads.append((sql, values | {threads.POSTS.key: sorted(parents)}))
        return reads

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
        ``keys`` and the replies' ``parents`` read (3). Anything raised rolls it back,
        and the driver's errors come out as a worker thread's would (2)."""
        connection = await self._connected()
        try:
            try:
                begun = await _begin_on_loop(connection, lock_key, channels, keys, parents)
            except self._driver.OperationalError:
                if not connection.broken:
                    raise
                # Gone since the last write (a restart, a failover): nothing was sent
                # but the lock and reads (and expired keys' deletion, undone with it),
                # so the write begins again on a new one (1).
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
        """Leave no transaction behind; a connection in doubt is closed (1)."""
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
    ``parents`` read under the lock (1, 3; postgres.py, on pipelined, in order)."""
    async with connection.pipeline():
        await connection.execute(LOCK, (lock_key,))
        end = await connection.execute(LOG_END)
        named = await connection.execute(CHANNELS, (list(channels),)) if channels else None
        if keys:
            await connection.execute(_KEYS_EXPIRED, (now() - IDEMPOTENCY_TTL,))
            kept = await connection.execute(_KEYS, (list(keys),))
        if parents:
            answered = await connection.execute(_PARENTS, (list(parents),))
    found = channel_rows(named.description, await named.fetchall()) if named else []
    write = LoopWrite(connection, log_end(await end.fetchone()), found)
    if keys:
        rows = rows_of(kept.description, await kept.fetchall())
        write.kept = {row["key"]: IdempotencyKey(**row) for row in rows}
    if parents:
        rows = rows_of(answered.description, await answered.fetchall())
        write.parents = {row["id"]: Post(**row) for row in rows}
    return write


async def insert_posts_on_loop(
    connection: psycopg.AsyncConnection[Any],
    posts: PostRows,
    events: Sequence[tuple[int, EventKind, str | None]],
) -> tuple[list[int], list[int]]:
    """``insert_posts`` on the loop's connection (1; postgres.py, on new posts in one statement)."""
    found = await connection.execute(NEW_POSTS, new_posts_values(posts, events))
    return placed(await found.fetchall(), len(posts.bodies), events)


async def commit_on_loop(
    connection: psycopg.AsyncConnection[Any],
    channel: str,
    hints: Sequence[str],
    keeping: Sequence[IdempotencyKey] = (),
    reads: Sequence[tuple[str, dict[str, Any]]] = (),
) -> list[list[tuple[Any, ...]]]:
    """``commit_write`` on the loop's connection (1; postgres.py, on pipelined, in
    order), with the answers ``keeping`` kept first and the ``reads``
    (``LoopWriter.summaries``) read last before the commit (3): their rows, in order."""
    async with connection.pipeline():
        if keeping:
            await connection.execute(_KEEP, _kept(keeping))
        cursors = [await connection.execute(sql, values) for sql, values in reads]
        for hint in hints:
            await connection.execute(NOTIFY, (channel, hint))
        await connection.commit()
    return [await cursor.fetchall() for cursor in cursors]


def _compiled(statement: ClauseElement, dialect: Dialect) -> tuple[str, dict[str, Any]]:
    """``statement``, built with SQLAlchemy, as the text and values the loop's
    connection sends (3)."""
    done = statement.compile(dialect=dialect)
    return str(done), dict(done.params)


def _kept(keeping: Sequence[IdempotencyKey]) -> dict[str, Any]:
    """The values of the statement that keeps the answers ``keeping`` (3)."""
    return {
        "at": keeping[0].created_at,
        "keys": [row.key for row in keeping],
        "fingerprints": [row.fingerprint for row in keeping],
        "statuses": [row.status for row in keeping],
        "bodies": [row.body for row in keeping],
        "locations": [row.location for row in keeping],
    }


def store_error(exc: BaseException, dialect: Dialect) -> BaseException:
    """The error a worker thread's caller would get for ``exc``, the driver's (2)."""
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


@dataclass
class LoopWrite:
    """A write on the event loop (log.py, on the write on the loop): its connection,
    where the log ended when it took the lock, the channels, the idempotency keys and
    the replies' parents read with the lock (3), the events it wrote, in id order, as
    ``_noted`` keeps them in a session, and the answers it keeps, written before its
    commit."""

    connection: Any
    end: int
    channels: list[Channel]
    kept: dict[str, IdempotencyKey] = field(default_factory=dict)
    parents: dict[int, Post] = field(default_factory=dict)
    written: list[FeedEvent] = field(default_factory=list)
    keeping: list[IdempotencyKey] = field(default_factory=list)
