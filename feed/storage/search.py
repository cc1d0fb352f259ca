"""Full-text search over posts, on either store (the language itself: search.py).

Rationale:

1. The index follows the posts in their own transaction. On SQLite an FTS5 table with
   external content (``posts_search``): new posts are added to it by the group
   commit, one statement for the whole group's rows (``index_new``), and edits and
   tombstones by triggers on ``posts`` (migrations 0010_search and
   0013_search_by_group; a trigger run once per row cost three times as much as the
   one statement). On PostgreSQL a stored generated column,
   ``to_tsvector('simple', body)``, with a GIN index, is kept by the database
   (migration 0010_search). Either way an insert, an edit or a tombstone changes the
   index in the transaction that writes it, and a search never sees a post the log
   has not committed, nor misses one it has. Deleted posts are left out by their
   flag as well: a tombstone's body is empty.
2. Windows. Ranking every match of a common word costs a scan of all its matches, so a
   search ranks a *window*: the newest ``WINDOW`` matches the reader may see, read in
   id order straight from the index, then ordered by relevance, newest first among
   equals. Pages go through one window in that order (10), then on to the next,
   older window. Page 1 of "the" costs ``WINDOW`` matches, not all of them; a rare
   word's window holds all its matches, so its ranking is exact.
3. Reads for a reader. The private channels a reader may not read are filtered in the
   same SQL (history.py, on reads for a reader): their posts are never ranked, counted,
   snipped or returned.
4. Relevance: on SQLite, weighed from the window's own posts by the search language
   (search.py, on relevance), since FTS5's ``bm25`` reads every match of every term
   to weigh its rarity, however small the window; on PostgreSQL, ``ts_rank``
   normalised by the post's length, which looks at the one post only. On both a
   short post that holds the words ranks above a long one that holds them as often;
   the scales differ and are compared only within one search.
5. PostgreSQL's planner cannot tell how many posts a phrase or a prefix matches: it
   guesses from the words alone. So for a rare phrase of common words it walked the
   posts newest first, checking each, and read the whole table for a window it
   could not fill; and for a prefix it guessed rare it read every match through the
   index, to sort them all. A phrase or a prefix is therefore looked for in two
   reads that make the same window: first among the newest ``SPAN`` posts at or
   below the cursor's top, walking them newest first (bounded: a common phrase fills
   its window there); then, if the window is not full, below them: walking on if at
   least ``DENSE`` matched (the rest of the window is then at most about ten spans
   away), else through the search index only, which costs a check of every post that
   holds the words, cheap when matches are that sparse unless the words often meet
   without standing together. The two reads make exactly the window one read would.
6. The driver prepares a statement run often, and PostgreSQL then plans it once for
   any values: blind to which words and which author, a plan can read the whole
   table for a word it deems rare, or walk every post for an author it deems
   common. A search is planned for its own values each time (planning is well under
   a millisecond).
7. Filters. A search without words (by author, by channel) is a walk down an index
   in id order, ``(author, id)`` or ``(channel_id, id)`` (migration
   0012_search_indexes), that stops at a page; without them PostgreSQL read every
   post of the table to sort an author's.
8. Phrases by their word pairs. Below the newest posts, a phrase was still checked in
   every post that holds its words: the GIN index knows which posts hold a word, not
   where, so a phrase of two common words that seldom meet fetched thousands of rows
   to find a few. PostgreSQL also indexes the pairs of words that stand together in
   each post (migration 0014_search_pairs), and a phrase of plain words (search.py,
   on pairs) is looked up there: the index gives the posts that hold its pairs, which
   for two words are its matches, and the phrase is then checked in those alone. That
   check is written as the function ``ts_match_vq``, not as ``@@``, which the index of
   words would serve: the planner otherwise intersects both indexes, and the slow
   part (every post holding both words) comes back, each row's pairs recomputed on
   top. The pairs' index reads every match below the cursor; walking on by id reads
   about ``WINDOW / density`` posts; as the first ``SPAN`` tell the density, the
   cheaper of the two is taken, a row fetched through the index costing about
   ``PAIR_FETCH`` walked ones (measured at 1,000,000 posts: 7 µs against 0.3 µs).
   Either way the window is the one a single read would make.
9. Bands. Walking on by id was what the code asked for when the newest posts showed
   many matches, but the planner, guessing a prefix or a phrase rarer than it is,
   read every match below them through the index and sorted them (thousands of
   rows fetched for a window's last hundred). So the rest of such a window is first
   read in a band of ids below the first ``SPAN``, twice as deep as the density seen
   there says the window needs, which the planner serves by intersecting the search
   index with the id range, as it does the first read; what the band lacks is read
   below it as before. Each read takes the newest matches of its own ids, so the
   window is the one a single read would make.
10. Cursors. A page's cursor holds its window's ids, top and bottom, as its first
   page read them (a window that was not full reaches down to the first post), and
   the last result shown, by id and score: the next page reads the same ids again
   and shows what ranks after that result. So a post deleted or no longer matching
   between pages pulls no other out of the next page, and no post moves from one
   window to another. A later page reads up to twice ``WINDOW`` matches of those
   ids, room for posts edited to match since the first (a forged cursor costs no
   more); a window that every post has left since leads on to the next. On SQLite
   the cursor also keeps the mean length the window's scores were weighed by (4): a
   post edited or deleted would change the mean, and with it every score. A post
   edited between pages is ranked anew, as a new search would rank it: it may come
   again, or, if it now ranks above the last result, not at all on these pages.
"""

from __future__ import annotations

import sqlite3
import statistics
from collections.abc import Collection
from dataclasses import replace
from typing import Any

from sqlalchemy import Integer, column, func, literal_column, table, text
from sqlalchemy.sql import ColumnElement
from sqlmodel import Session, col, select

from feed import schema
from feed.models import Channel, Event, Post
from feed.post_words import tokenize
from feed.search import Query
from feed.search_values import Cursor, Filters, Hit, Results
from feed.storage import tallies, threads
from feed.storage.engine import in_thread
from feed.storage.history import readable
from feed.storage.log import EventLog
from feed.values import PostView, _post_view

# Matches ranked at a time (2).
WINDOW = 200
# Posts (by id) a phrase or a prefix is first looked for among, newest first, on
# PostgreSQL (5).
SPAN = 20_000
# Matches among them that make walking on by id cheaper than the index (5).
DENSE = 20
# What a post fetched through the index of pairs costs, in posts walked by id (8).
PAIR_FETCH = 20
# The FTS5 table (SQLite) and the indexed column (PostgreSQL), as migration
# 0010_search makes them.
FTS = table(schema.SEARCH_INDEX, column("rowid", Integer))
TS_VECTOR = "posts.posts_search_vector"
# The word pairs of a post's vector, as migration 0014_search_pairs indexes them (8).
PAIRS = f"feed_word_pairs({TS_VECTOR})"
# ts_rank divided by 1 + the log of the post's length, as bm25 weighs length too (4).
LENGTH_NORMALISED = 1


def index_new(cursor: sqlite3.Cursor, first: int, last: int) -> None:
    """Add the new posts ``first`` to ``last`` (every id between) to SQLite's search
    index, in the transaction that inserts them, by one statement on its cursor (1).
    PostgreSQL's index needs nothing: the insert computed their column."""
    cursor.execute(
        f"INSERT INTO {schema.SEARCH_INDEX}(rowid, body)"
        " SELECT id, body FROM posts WHERE id BETWEEN ? AND ?",
        (first, last),
    )


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
                # A plan made once for every search's words, the author's name and the
                # cursor alike cannot know how many posts they match (6).
                session.execute(text("SET LOCAL plan_cache_mode = force_custom_plan"))
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
        # A window's later pages read its ids again, with room for posts edited to
        # match since its first (10).
        fixed = cursor.top is not None and cursor.bottom is not None
        size = 2 * WINDOW if fixed else WINDOW
        window = self._window(session, query, filters, cursor, private, size)
        if not window:
            # Every post of it went since its first page: on to the next window.
            below = cursor.bottom if fixed and cursor.bottom else 0
            return Results([], Cursor(below - 1) if below > 0 else None)
        scale = cursor.scale if fixed else _scale(window)
        order = _by_recency if newest else _by_relevance
        ranked = sorted(_scored(query, window, scale), key=order)
        if cursor.after is not None:
            # What ranks after the last result shown, whatever left the window (10).
            ranked = [found for found in ranked if order(found) > order(cursor.after)]
        shown = [post_id for post_id, _ in ranked[:limit]]
        posts = _posts_by_id(session, shown)
        hits = [Hit(posts[n], query.snippet(posts[n].body)) for n in shown if n in posts]
        ids = [post_id for post_id, _ in window]
        if cursor.top is not None and cursor.bottom is not None:
            top, bottom = cursor.top, cursor.bottom
        else:
            # A window that is not full reaches down to the first post (10).
            top, bottom = max(ids), min(ids) if len(window) == WINDOW else 0
        if len(ranked) > limit:
            return Results(hits, Cursor(top, bottom, ranked[limit - 1], scale))
        if len(window) == size:
            # As many as a read holds: the next window starts below them.
            return Results(hits, Cursor(min(ids) - 1))
        return Results(hits, Cursor(bottom - 1) if bottom > 0 else None)

    def _window(
        self,
        session: Session,
        query: Query,
        filters: Filters,
        cursor: Cursor,
        private: Collection[str] | None,
        size: int,
    ) -> list[tuple[int, list[str] | float]]:
        """The newest ``size`` matches from the cursor's bottom up to its top, with
        their words (SQLite, to be weighed) or their relevance (PostgreSQL) (2, 4)."""
        if self._postgres:
            return _postgres_window(session, query, filters, cursor, private, size)
        found = select(FTS.c.rowid, col(Post.body)).join(Post, col(Post.id) == FTS.c.rowid)
        found = found.where(text(f"{schema.SEARCH_INDEX} MATCH :match")).params(match=query.fts5())
        found = _narrowed(found, filters, private)
        if cursor.top is not None:
            found = found.where(FTS.c.rowid <= cursor.top)
        if cursor.bottom is not None:
            found = found.where(FTS.c.rowid >= cursor.bottom)
        rows = session.execute(found.order_by(FTS.c.rowid.desc()).limit(size)).all()
        return [(int(n), tokenize(body)) for n, body in rows]


def _postgres_window(
    session: Session,
    query: Query,
    filters: Filters,
    cursor: Cursor,
    private: Collection[str] | None,
    size: int,
) -> list[tuple[int, list[str] | float]]:
    """The newest ``size`` matches from the cursor's bottom up to its top, ranked by
    ``ts_rank`` (4); a phrase's or a prefix's in two reads (5)."""
    vector: ColumnElement[Any] = literal_column(TS_VECTOR)
    wanted = func.to_tsquery(literal_column("'simple'::regconfig"), query.tsquery())
    ranked: Any = select(col(Post.id), func.ts_rank(vector, wanted, LENGTH_NORMALISED))
    if cursor.bottom is not None:
        ranked = ranked.where(col(Post.id) >= cursor.bottom)
    found = _narrowed(ranked.where(vector.op("@@")(wanted)), filters, private)
    post_id = col(Post.id)
    looked_for = (t for t in query.terms if not t.negated)
    if not any(t.prefix or max(map(len, t.forms)) > 1 for t in looked_for):
        if cursor.top is not None:
            found = found.where(post_id <= cursor.top)
        rows = session.execute(found.order_by(post_id.desc()).limit(size)).all()
        return [(int(n), float(score)) for n, score in rows]
    top = cursor.top
    if top is None:
        top = session.exec(select(func.max(Post.id))).one() or 0
    near = found.where(post_id <= top, post_id > top - SPAN)
    rows = list(session.execute(near.order_by(post_id.desc()).limit(size)).all())
    if len(rows) < size:
        # Many matches near the top: walk on by id. Few: the index alone finds those
        # below (an order by an expression keeps the planner off the walk by id).
        order = post_id.desc() if len(rows) >= DENSE else (post_id + 0).desc()
        far, bottom = found, top - SPAN
        pairs = query.pairs()
        if pairs is not None and _through_pairs(len(rows), bottom, size):
            order = (post_id + 0).desc()
            # Through the index of pairs alone, the words then checked in each post
            # it gives: as a function, which no index serves (8).
            paired = text(f"{PAIRS} @@ CAST(:pairs AS tsquery)").bindparams(pairs=pairs)
            far = ranked.where(paired, func.ts_match_vq(vector, wanted))
            far = _narrowed(far, filters, private)
        elif len(rows) >= DENSE:
            # A band of ids that should hold the rest of the window (9).
            band = 2 * (size - len(rows)) * SPAN // len(rows)
            middle = found.where(post_id <= bottom, post_id > bottom - band)
            middle = middle.order_by(post_id.desc()).limit(size - len(rows))
            rows += session.execute(middle).all()
            bottom -= band
        if len(rows) < size:
            far = far.where(post_id <= bottom).order_by(order)
            rows += session.execute(far.limit(size - len(rows))).all()
    return [(int(n), float(score)) for n, score in rows]


def _through_pairs(near: int, below: int, size: int) -> bool:
    """Whether the rest of a window is cheaper through the index of pairs than walking
    on by id, ``near`` matches having been found among the last ``SPAN`` posts and
    ``below`` posts left, for a window of ``size`` (8)."""
    if near == 0:
        return True
    # About near / SPAN of the posts below hold the pairs, each then fetched alone;
    # walking on reads about (size - near) * SPAN / near posts in id order.
    return near * below / SPAN * PAIR_FETCH < (size - near) * SPAN / near


def _scale(window: list[tuple[int, list[str] | float]]) -> float:
    """What the window's scores are weighed by, kept for its later pages (4, 10): on
    SQLite the mean length of its posts; PostgreSQL's scores need none."""
    lengths = [len(words) for _, words in window if isinstance(words, list)]
    return statistics.fmean(lengths) if lengths else 0.0


def _scored(
    query: Query, window: list[tuple[int, list[str] | float]], scale: float
) -> list[tuple[int, float]]:
    """The window's posts with their relevance, higher better: on SQLite weighed from
    their words against the window's ``scale`` (4)."""
    return [
        (post_id, query.relevance(words, scale) if isinstance(words, list) else words)
        for post_id, words in window
    ]


def _by_relevance(found: tuple[int, float]) -> tuple[float, int]:
    return (-found[1], -found[0])


def _by_recency(found: tuple[int, float]) -> tuple[float, int]:
    return (0.0, -found[0])


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
    if filters.replies is not None:
        parent = col(Post.parent_id)
        query = query.where(parent.is_not(None) if filters.replies else parent.is_(None))
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
    more = Cursor(ids[limit]) if len(ids) > limit else None
    return Results(hits, more)


def _posts_by_id(session: Session, ids: list[int]) -> dict[int, PostView]:
    if not ids:
        return {}
    rows = session.exec(
        select(Post, Channel.name)
        .join(Channel, col(Channel.id) == col(Post.channel_id))
        .where(col(Post.id).in_(ids))
    ).all()
    # Results are posts like any listing's: with their reactions (storage/tallies.py)
    # and their reply summaries (storage/threads.py, on summaries).
    views = [_post_view(post, name) for post, name in rows]
    views = tallies.with_counts(session, threads.with_summaries(session, views))
    return {view.id: view for view in views}
