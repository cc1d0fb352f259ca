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
2. A group's rows are inserted by one prepared statement run for each of
   them, not by an INSERT ... RETURNING of many VALUES, which cost most of a 1,000-post
   group's write in building and reading back its statement. The ids are the run
   that ends at ``last_insert_rowid()``: the writer holds the only write lock, and
   SQLite gives each new row one more than the largest id, so they are consecutive;
   a count over that range checks it before anything is announced. The statement and
   the dialect's conversions of its values are made once per table and columns, not
   once per group: compiling them again for every group was a noticeable part of a
   small group's write (docs/benchmarks.md, the write cycle).
3. A value the dialect converts before the driver takes it (a datetime, a boolean)
   is converted once per distinct value of its column, not once per row: a group's
   rows share their time and their flags, and SQLAlchemy's converters are a Python
   call each. Those columns hold plain values (times, flags, None), so each can be a
   dict's key.
4. The channels, read plainly. The group's channels are read by one plain
   statement, as on PostgreSQL (storage/postgres.py), not by an ORM select: compiling
   the select and loading its rows through the session was a large part of a small
   group's write. Only the columns a group uses are read, into a plain tuple
   (``ChannelRow``): building a ``Channel`` model of every column cost more than the
   statement itself.
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Callable, Sequence
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
    cursor: sqlite3.Cursor, dialect: Dialect, table: Table, rows: list[dict[str, Any]]
) -> list[int]:
    """Insert ``rows`` on SQLite (2): one prepared statement run for every row, the ids
    taken from the last one, and checked; their new ids, in the order of ``rows``."""
    names = tuple(rows[0])
    sql, processors = _prepared(table, names, dialect)
    columns = []
    for name, process in zip(names, processors, strict=True):
        values = [row[name] for row in rows]
        if process is not None:
            # Once for each distinct value of the column (3).
            made = {value: process(value) for value in set(values)}
            values = [made[value] for value in values]
        columns.append(values)
    cursor.executemany(sql, zip(*columns, strict=True))
    (last,) = cursor.execute("SELECT last_insert_rowid()").fetchone()
    first = last - len(rows) + 1
    (counted,) = cursor.execute(
        f"SELECT count(*) FROM {table.name} WHERE id BETWEEN ? AND ?", (first, last)
    ).fetchone()
    if counted != len(rows):  # not one run of ids: never while this writer holds the lock
        raise RuntimeError(f"{table.name}: {len(rows)} rows but not ids {first} to {last}")
    return list(range(first, last + 1))


@functools.lru_cache(maxsize=16)  # a few tables, each with its one set of columns
def _prepared(
    table: Table, names: tuple[str, ...], dialect: Dialect
) -> tuple[str, tuple[Callable[[Any], Any] | None, ...]]:
    """The INSERT of ``names`` into ``table``, and the dialect's conversion of each
    value (datetimes to its text, say), or None where it takes the value as it is (2)."""
    statement = insert(table).compile(dialect=dialect, column_keys=list(names))
    processors: dict[str, Any] = dict(statement._bind_processors)
    placed = ", ".join(names)
    marks = ", ".join("?" for _ in names)
    sql = f"INSERT INTO {table.name} ({placed}) VALUES ({marks})"
    return sql, tuple(processors.get(name) for name in names)
