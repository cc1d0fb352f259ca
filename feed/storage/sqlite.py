"""SQLite's own statements for the group write of new posts: the transaction on the
driver's cursor, the channels and the rows' INSERTs, each as plain as SQLite allows
(storage/postgres.py is PostgreSQL's counterpart).

Rationale:

1. The plain write. On SQLite the group write of new posts runs on the driver's own
   cursor (``PlainWrite``), from ``BEGIN IMMEDIATE`` to ``COMMIT`` (log.py, on the
   plain write): SQLAlchemy's session, its connection and their transaction events
   cost more than the statements of a small group. The parts of a group that read or
   write through the ORM (idempotency keys, replies' parents, thread summaries) get a
   ``Session`` joined to the same transaction (``orm``), made only when a group needs
   one.
2. Rows in statements of many. A group's rows are inserted by plain INSERTs of many
   rows each (VALUES of up to ``MOST_ROWS`` rows, a power of two, so that a table has a
   handful of statements whatever the group's size, each compiled once by the driver
   and kept), not by one statement run for each row, nor by SQLAlchemy's INSERT ...
   RETURNING of many VALUES, which cost most of a 1,000-post group's write in building
   and reading back its statement. Run for each row, a statement was reset and stepped
   once a row, and the events table's AUTOINCREMENT wrote its counter once a row as
   well (docs/benchmarks.md, batch publishing: toward 40 µs a post). The ids are the
   run that ends at ``last_insert_rowid()``: the writer holds the only write lock, and
   SQLite gives each new row one more than the largest id, in the order of the VALUES,
   so they are consecutive; a count over that range checks it before anything is
   announced. The columns' list and the dialect's conversions of its values are made
   once per table and columns, not once per group: compiling them again for every group
   was a noticeable part of a small group's write (docs/benchmarks.md, the write
   cycle).
3. Shared values, once. What every row of a group shares (its time, its flags) is given
   once a statement: those values are its first parameters, numbered, and every row
   names them again by number. So a value the dialect converts before the driver takes
   it (a datetime, a boolean) is converted once a group, not once a row (SQLAlchemy's
   converters are a Python call each), and bound once a statement. The rows' own values
   (ids, names, text) are taken by the driver as they are.
4. The channels, read plainly. The group's channels are read by one plain
   statement, as on PostgreSQL (storage/postgres.py), not by an ORM select: compiling
   the select and loading its rows through the session was a large part of a small
   group's write. Only the columns a group uses are read, into a plain tuple
   (``ChannelRow``): building a ``Channel`` model of every column cost more than the
   statement itself.
5. The kept connection. The plain write keeps one connection from write to write
   (``KeptConnection``), used only under the writers' lock: a connection from the pool
   came to each write with its page cache made stale by other connections' commits
   and its statements not prepared, which cost a lone post about 0.1 ms
   (docs/benchmarks.md, on a lone post's write). A write that fails gives it back to
   the pool, which rolls back whatever the write left, and the next write takes one
   from the pool again.
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Callable, Sequence
from itertools import chain
from typing import Any, NamedTuple

from sqlalchemy import Connection, Dialect, Engine, Table, insert
from sqlalchemy.pool import PoolProxiedConnection
from sqlmodel import Session

# The next event id becomes at least the time in microseconds (log.py, on ids never
# reused); never lower.
SKIP_EVENT_IDS = "UPDATE sqlite_sequence SET seq = :floor WHERE name = 'events' AND seq < :floor"
START_EVENT_IDS = """
INSERT INTO sqlite_sequence (name, seq) SELECT 'events', :floor
WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'events')
"""
# Rows one INSERT takes at most; a group's rows go in statements of a power of two
# rows each, so that each table has a handful of statements, compiled once (2).
MOST_ROWS = 256


class KeptConnection:
    """The plain write's connection (5): taken from the pool the first time, and
    given back when a write fails or the store closes."""

    def __init__(self, writer: Engine) -> None:
        self._writer = writer
        self._raw: PoolProxiedConnection | None = None
        self.closing = False  # the store is closing: each write gives it back

    @property
    def held(self) -> bool:
        return self._raw is not None

    def take(self) -> PoolProxiedConnection:
        if self._raw is None:
            self._raw = self._writer.raw_connection()
        return self._raw

    def give_back(self) -> None:
        raw, self._raw = self._raw, None
        if raw is not None:
            raw.close()  # to the pool, which rolls back whatever is left


class PlainWrite:
    """A SQLite write transaction on the driver's own cursor (1), with what it notes
    in ``info`` as a session would."""

    def __init__(self, writer: Engine, raw: PoolProxiedConnection) -> None:
        self._writer = writer
        self._raw = raw
        self.cursor: sqlite3.Cursor = raw.driver_connection.cursor()  # type: ignore[union-attr]
        self.info: dict[str, Any] = {}
        self._session: Session | None = None

    def session(self) -> Session:
        """A session in this transaction, for the parts of a write that use the ORM."""
        if self._session is None:
            # The transaction is begun already: the engine's hook must not begin another.
            joined = Connection(self._writer, self._raw).execution_options(feed_begun=True)
            self._session = Session(joined, expire_on_commit=False)
        return self._session

    def commit(self) -> None:
        if self._session is not None:
            self._session.flush()
        self.cursor.execute("COMMIT")

    def close(self) -> None:
        if self._session is not None:
            self._session.close()  # after COMMIT or ROLLBACK: nothing left to undo
        self.cursor.close()


def orm(write: Session | PlainWrite) -> Session:
    """The session of ``write``: itself, or the one joined to its transaction (1)."""
    return write if isinstance(write, Session) else write.session()


class ChannelRow(NamedTuple):
    """The columns of a channel a group uses, read plainly on SQLite (4)."""

    id: int
    name: str
    private: bool
    archived: bool


def channels(cursor: sqlite3.Cursor, names: Sequence[str]) -> list[ChannelRow]:
    """The channels ``names``, as a group uses them (4); flags as booleans, not
    SQLite's integers."""
    marks = ", ".join("?" for _ in names)
    found = cursor.execute(
        f"SELECT id, name, private, archived FROM channels WHERE name IN ({marks})", tuple(names)
    )
    return [
        ChannelRow(i, name, bool(private), bool(archived)) for i, name, private, archived in found
    ]


def insert_consecutive(
    cursor: sqlite3.Cursor,
    dialect: Dialect,
    table: Table,
    names: tuple[str, ...],
    rows: Sequence[tuple[Any, ...]],
    shared: dict[str, Any],
) -> list[int]:
    """Insert ``rows``, each the values of the columns ``names`` in order, with the
    values ``shared`` by all of them, on SQLite (2, 3): their new ids, in order."""
    processors = _processors(table, names + tuple(shared), dialect)
    if any(processors[: len(names)]):  # (3)
        raise TypeError(f"{table.name}: the rows' own values must need no conversion")
    tail = [
        value if process is None else process(value)
        for value, process in zip(shared.values(), processors[len(names) :], strict=True)
    ]
    most = _most_rows(cursor, len(names), len(tail))
    done, size = 0, most
    while done < len(rows):
        while size > len(rows) - done:
            size //= 2
        sql = _statement(table.name, names, tuple(shared), size)
        cursor.execute(sql, [*tail, *chain.from_iterable(rows[done : done + size])])
        done += size
    (last,) = cursor.execute("SELECT last_insert_rowid()").fetchone()
    first = last - len(rows) + 1
    (counted,) = cursor.execute(
        f"SELECT count(*) FROM {table.name} WHERE id BETWEEN ? AND ?", (first, last)
    ).fetchone()
    if counted != len(rows):  # not one run of ids: never while this writer holds the lock
        raise RuntimeError(f"{table.name}: {len(rows)} rows but not ids {first} to {last}")
    return list(range(first, last + 1))


def _most_rows(cursor: sqlite3.Cursor, each: int, shared: int) -> int:
    """The most rows one INSERT of ``each`` values a row and ``shared`` values for all
    takes (2): ``MOST_ROWS``, or the largest power of two within SQLite's limit on
    values, if lower."""
    limit = cursor.connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
    most = MOST_ROWS
    while most > 1 and shared + most * each > limit:
        most //= 2
    return most


@functools.lru_cache(maxsize=64)  # a few tables, each with its columns, in a few sizes
def _statement(table: str, names: tuple[str, ...], shared: tuple[str, ...], rows: int) -> str:
    """The INSERT of ``rows`` rows into ``table`` (2): the values of ``shared`` are its
    first parameters, named by number and given once; each row's own follow."""
    first = len(shared) + 1
    ends = [f"?{n}" for n in range(1, first)]
    places = []
    for row in range(rows):
        start = first + row * len(names)
        places.append(", ".join([*(f"?{start + k}" for k in range(len(names))), *ends]))
    columns = ", ".join(names + shared)
    return f"INSERT INTO {table} ({columns}) VALUES ({'), ('.join(places)})"


@functools.lru_cache(maxsize=16)  # a few tables, each with its one set of columns
def _processors(
    table: Table, names: tuple[str, ...], dialect: Dialect
) -> tuple[Callable[[Any], Any] | None, ...]:
    """The dialect's conversion of each value of ``names`` in ``table`` (datetimes to its
    text, say), or None where it takes the value as it is (2)."""
    statement = insert(table).compile(dialect=dialect, column_keys=list(names))
    processors: dict[str, Any] = dict(statement._bind_processors)
    return tuple(processors.get(name) for name in names)
