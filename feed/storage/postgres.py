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
   out of it fails before its commit. The same statement adds the group's replies to
   their parents' stored counts, once per parent (threads.py, on the stored count).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from itertools import pairwise
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session

from feed.models import Channel, EventKind
from feed.storage.rows import PostRows

if TYPE_CHECKING:  # the driver is imported only where PostgreSQL is used
    pass

LOCK = "SELECT pg_advisory_xact_lock(%s)"
LOG_END = "SELECT max(id) FROM events"
NOTIFY = "SELECT pg_notify(%s, %s)"
CHANNELS = "SELECT * FROM channels WHERE name = ANY(%s)"


# A group of new posts and their events (4). Each row takes its id from the sequence
# with its place beside it, so the two never part, whatever order they are taken in;
# ``of_post`` is an event's post, by its place.
NEW_POSTS = """
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
), replies_counted AS (
    UPDATE posts SET reply_count = posts.reply_count + added.replies
    FROM (
        SELECT parent_id, count(*) AS replies FROM new_posts
        WHERE parent_id IS NOT NULL GROUP BY parent_id
    ) AS added
    WHERE posts.id = added.parent_id
)
SELECT place, of_post, id, post_id FROM new_events ORDER BY place
"""


def insert_posts(
    connection: Connection, posts: PostRows, events: Sequence[tuple[int, EventKind, str | None]]
) -> tuple[list[int], list[int]]:
    """Insert ``posts`` (the posts table's rows, by column) and their ``events`` (each
    as its post's place in ``posts``, kind and recipient, every post with one at least),
    in one statement (4): the posts' ids and the events', in order."""
    rows = connection.exec_driver_sql(NEW_POSTS, new_posts_values(posts, events)).all()
    return placed(rows, len(posts.bodies), events)


def new_posts_values(
    posts: PostRows, events: Sequence[tuple[int, EventKind, str | None]]
) -> dict[str, Any]:
    """The values of the statement that inserts ``posts`` and ``events`` (4)."""
    return {
        "at": posts.at,
        "channels": posts.channel_ids,
        "parents": posts.parents,
        "authors": posts.authors,
        "bodies": posts.bodies,
        "htmls": posts.htmls,
        "of": [place + 1 for place, _, _ in events],
        "kinds": [kind.value for _, kind, _ in events],
        "recipients": [recipient for _, _, recipient in events],
    }


def placed(
    rows: Sequence[Sequence[Any]], posts: int, events: Sequence[tuple[int, EventKind, str | None]]
) -> tuple[list[int], list[int]]:
    """The ids of the ``posts`` new posts and of their ``events``, from the rows the
    statement read back, checked to be in the group's order (4)."""
    post_ids = {of_post - 1: post_id for _, of_post, _, post_id in rows}
    posts_in_order = [post_ids.get(place, 0) for place in range(posts)]
    event_ids = [event_id for _, _, event_id, _ in rows]
    order = [(place - 1, of_post - 1) for place, of_post, _, _ in rows]
    if (
        order != [(n, e[0]) for n, e in enumerate(events)]
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
        driver.execute(LOCK, (lock_key,))
        end = driver.execute(LOG_END)
        named = driver.execute(CHANNELS, (list(channels),)) if channels else None
    found = channel_rows(named.description, named.fetchall()) if named is not None else []
    return log_end(end.fetchone()), found


def log_end(last: Sequence[Any] | None) -> int:
    """The log's end from its row (0 if the log is empty)."""
    return int(last[0]) if last is not None and last[0] is not None else 0


def channel_rows(description: Sequence[Any] | None, rows: Sequence[Sequence[Any]]) -> list[Channel]:
    return [Channel(**row) for row in rows_of(description, rows)]


def rows_of(
    description: Sequence[Any] | None, rows: Sequence[Sequence[Any]]
) -> list[dict[str, Any]]:
    columns = [column.name for column in description or ()]
    return [dict(zip(columns, row, strict=True)) for row in rows]


def commit_write(session: Session, channel: str, hints: Sequence[str]) -> None:
    """Send ``hints`` on ``channel`` and commit: one round trip (1, 3)."""
    session.flush()
    with _pipelined(session.connection()) as driver:
        for hint in hints:
            driver.execute(NOTIFY, (channel, hint))
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


# The next event id becomes at least the time in microseconds (log.py, on ids never
# reused); never lower.
SKIP_EVENT_IDS = """
SELECT setval(seq, GREATEST(%(floor)s, COALESCE(pg_sequence_last_value(seq), 0)))
FROM (SELECT CAST(pg_get_serial_sequence('events', 'id') AS regclass) AS seq) AS events_seq
"""
