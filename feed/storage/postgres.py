"""The write transaction on PostgreSQL, in as few round trips as its guarantees allow.

A write's fixed statements (taking the writers' lock, reading where the log ends, the
hints and the commit: log.py, on one writer at a time, on ids never reused, on hints
inside the transaction) cost a round trip each, and a round trip costs the writer its
turn twice: it sleeps until PostgreSQL answers, then waits for the interpreter, which
the event loop's thread holds while it serves requests. Under a burst of posts those
waits, not the statements, were most of a write.

Rationale:

1. Pipelined, in order. The statements of each step go out together in psycopg's
   pipeline mode and are answered together: the server still runs them one after
   another, in the order sent, so the lock is held before the log's end is read, and
   the hints are queued before the commit that delivers them. A statement that fails
   makes the server skip the rest of its step: a failed hint never lets the commit
   through.
2. The driver's errors, as every other statement's. Pipelined statements are sent on
   the driver's own connection, past SQLAlchemy, so its errors are turned into
   SQLAlchemy's here, and a connection found dead is invalidated, as SQLAlchemy would:
   the caller sees ``StoreUnavailable`` and the pool opens a fresh connection
   (engine.py, on unavailable, not broken).
3. Nothing the session still holds. The commit is sent by the driver, so the session
   is flushed before it: SQLAlchemy would otherwise send what it still held after the
   commit, in a transaction of its own, outside the lock. The session's own commit
   that follows has nothing left to send.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session

_LOCK = "SELECT pg_advisory_xact_lock(%s)"
_LOG_END = "SELECT max(id) FROM events"
_NOTIFY = "SELECT pg_notify(%s, %s)"


def begin_write(session: Session, lock_key: int) -> int:
    """Begin the write transaction with the writers' lock, and return the id the log
    ends at (0 if empty): one round trip (1)."""
    with _pipelined(session.connection()) as driver:
        driver.execute(_LOCK, (lock_key,))
        end = driver.execute(_LOG_END)
    row = end.fetchone()
    return int(row[0]) if row is not None and row[0] is not None else 0


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
