"""Full-text search over posts, on either store (the language itself: search.py).

Rationale:

1. The index follows the posts in their own transaction. On SQLite an FTS5 table with
   external content (``posts_search``) is kept by triggers on ``posts``; on
   PostgreSQL a stored generated column, ``to_tsvector('simple', body)``, with a GIN
   index, is kept by the database (migration 0010_search). Either way an insert, an
   edit or a tombstone changes the index in the transaction that writes it, and a
   search never sees a post the log has not committed, nor misses one it has.
   Deleted posts are left out by their flag as well: a tombstone's body is empty.
2. Windows. Ranking every match of a common word costs a scan of all its matches, so a
   search ranks a *window*: the newest ``WINDOW`` matches the reader may see, read in
   id order straight from the index, then ordered by relevance, newest first among
   equals. Pages go through one window in that order (the cursor keeps the window's
   top id and how many of it were shown), then on to the next, older window. Page 1
   of "the" costs ``WINDOW`` matches, not all of them; a rare word's window holds all
   its matches, so its ranking is exact.
3. Reads for a reader. The private channels a reader may not read are filtered in the
   same SQL (history.py, on reads for a reader): their posts are never ranked, counted,
   snipped or returned.
4. Relevance: SQLite's ``bm25`` (lower is better, so negated) and PostgreSQL's
   ``ts_rank`` normalised by the post's length, so that on both a short post that
   holds the words ranks above a long one that holds them as often; the scales
   differ and are compared only within one search.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import replace
from typing import Any

from sqlalchemy import Integer, column, func, literal_column, table, text
from sqlalchemy.sql import ColumnElement
from sqlmodel import Session, col, select

from feed import schema
from feed.models import Channel, Event, Post
from feed.search import Cursor, Filters, Hit, Query, Results
from feed.storage import tallies
from feed.storage.engine import in_thread
from feed.storage.history import readable
from feed.storage.log import EventLog
from feed.values import PostView, _post_view

# Matches ranked at a time (2).
WINDOW = 200
# The FTS5 table (SQLite) and the indexed column (PostgreSQL), as migration
# 0010_search makes them.
FTS = table(schema.SEARCH_INDEX, column("rowid", Integer))
TS_VECTOR = "posts.posts_search_vector"
# ts_rank divided by 1 + the log of the post's length, as bm25 weighs length too (4).
LENGTH_NORMALISED = 1


class Searches(EventLog):
    """The store's searches."""

    @in_thread
    def search(
        self,
        query: Query | None,
        filters: Filters,
        *,
        limit: int,
        cursor: Cursor,
        private: Collection[str] | None = None,
        newest: bool = False,
    ) -> Results:
        """A page of the posts that match ``query`` and ``filters``, best first (2),
        or the newest first if ``newest``, that a reader of the private channels
        ``private`` (None: all) may see (3). No query: the newest posts that pass the
        filters. With the event id they are current up to."""
        # One snapshot: the window, the posts read after it and the log's end agree
        # (log.py, on one snapshot), so a channel made private in between shows
        # nothing of its posts, and a live page of them resumes at the right place.
        with self._snapshot() as session:
            if self._postgres:
                # A search over a large table is planned as costly, and JIT compiling
                # it took longer than running it.
                session.execute(text("SET LOCAL jit = off"))
            last = session.exec(select(func.max(Event.id))).one() or 0
            found = self._found(session, query, filters, limit, cursor, private, newest)
        return replace(found, last_event_id=last)

    def _found(
        self,
        session: Session,
        query: Query | None,
        filters: Filters,
        limit: int,
        cursor: Cursor,
        private: Collection[str] | None,
        newest: bool,
    ) -> Results:
        if query is None:
            return _newest(session, filters, limit, cursor, private)
        window = self._window(session, query, filters, cursor, private)
        ranked = sorted(window, key=_by_recency if newest else _by_relevance)
        shown = [post_id for post_id, _ in ranked[cursor.skip : cursor.skip + limit]]
        posts = _posts_by_id(session, shown)
        hits = [Hit(posts[n], query.snippet(posts[n].body)) for n in shown if n in posts]
        if cursor.skip + limit < len(window):
            top = max(post_id for post_id, _ in window)
            return Results(hits, Cursor(top, cursor.skip + limit))
        if len(window) == WINDOW:
            return Results(hits, Cursor(min(post_id for post_id, _ in window) - 1, 0))
        return Results(hits, None)

    def _window(
        self,
        session: Session,
        query: Query,
        filters: Filters,
        cursor: Cursor,
        private: Collection[str] | None,
    ) -> list[tuple[int, float]]:
        """The newest ``WINDOW`` matches at or below the cursor's top, with their
        relevance, higher better (2, 4)."""
        if self._postgres:
            vector: ColumnElement[Any] = literal_column(TS_VECTOR)
            wanted = func.to_tsquery(literal_column("'simple'::regconfig"), query.tsquery())
            found: Any = select(col(Post.id), func.ts_rank(vector, wanted, LENGTH_NORMALISED))
            found = found.where(vector.op("@@")(wanted))
            post_id: Any = col(Post.id)
        else:
            score = -func.bm25(literal_column(schema.SEARCH_INDEX))
            found = select(FTS.c.rowid, score).join(Post, col(Post.id) == FTS.c.rowid)
            found = found.where(text(f"{schema.SEARCH_INDEX} MATCH :match")).params(
                match=query.fts5()
            )
            post_id = FTS.c.rowid
        found = _narrowed(found, filters, private)
        if cursor.top is not None:
            found = found.where(post_id <= cursor.top)
        found = found.order_by(post_id.desc()).limit(WINDOW)
        return [(int(n), float(score)) for n, score in session.execute(found).all()]


def _by_relevance(found: tuple[int, float]) -> tuple[float, int]:
    return (-found[1], -found[0])


def _by_recency(found: tuple[int, float]) -> int:
    return -found[0]


def _narrowed(query: Any, filters: Filters, private: Collection[str] | None) -> Any:
    """``query`` over posts, joined with their channels and narrowed by ``filters`` to
    live posts a reader may see (1, 3)."""
    query = query.join(Channel, col(Channel.id) == col(Post.channel_id))
    query = readable(query.where(col(Post.deleted).is_(False)), private)
    if filters.channels is not None:
        query = query.where(col(Channel.name).in_(filters.channels))
    if filters.author is not None:
        query = query.where(col(Post.author) == filters.author)
    if filters.after is not None:
        query = query.where(col(Post.created_at) >= filters.after)
    if filters.before is not None:
        query = query.where(col(Post.created_at) < filters.before)
    if filters.pinned is not None:
        query = query.where(col(Post.pinned).is_(filters.pinned))
    return query


def _newest(
    session: Session,
    filters: Filters,
    limit: int,
    cursor: Cursor,
    private: Collection[str] | None,
) -> Results:
    """The newest posts that pass ``filters``: a search without words, paged by id."""
    query = _narrowed(select(col(Post.id)), filters, private)
    if cursor.top is not None:
        query = query.where(col(Post.id) <= cursor.top)
    ids = list(session.execute(query.order_by(col(Post.id).desc()).limit(limit + 1)).scalars())
    posts = _posts_by_id(session, ids[:limit])
    hits = [Hit(posts[n], "") for n in ids[:limit] if n in posts]
    more = Cursor(ids[limit], 0) if len(ids) > limit else None
    return Results(hits, more)


def _posts_by_id(session: Session, ids: list[int]) -> dict[int, PostView]:
    if not ids:
        return {}
    rows = session.exec(
        select(Post, Channel.name)
        .join(Channel, col(Channel.id) == col(Post.channel_id))
        .where(col(Post.id).in_(ids))
    ).all()
    # Results are posts like any listing's: with their reactions (storage/tallies.py).
    views = tallies.with_counts(session, [_post_view(post, name) for post, name in rows])
    return {view.id: view for view in views}
