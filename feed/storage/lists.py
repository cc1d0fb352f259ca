"""Lists of posts: a page's first posts and its older ones, each a list's pinned
section and history, and the reads of the API's list of posts.

Rationale for the less obvious choices:

1. Whose posts. A list holds the live top-level posts of its channels that its reader
   may see: private channels are filtered in SQL (posts.py, on reads of posts for a
   reader), and a reply is read with its thread, never listed (posts.py, on replies).
2. A list's pinned section and its history (feed/lists.py, on the dashboard). A list shows
   its newest ``limit`` pinned posts apart, on top, and under them its history: every
   other post, pinned or not, newest first, paged back by "Older posts". While the
   section is full, the pinned posts left out of it are exactly those older than its
   oldest post, the *cut*; so the history is "unpinned, or older than the cut", one
   condition on the id, with no list of ids to leave out. A page of history reads the
   cut in the same snapshot as the page, so each post is in the section or the history,
   never both or neither.
3. A page's posts' events. A dashboard gives each card the event that made it and
   that of its newest reply (reading.py, on a page's posts' events), which its page
   reports read once the card has been seen. They are read in the page's snapshot,
   with its list, its position and its cards' summaries (log.py, on one snapshot).
   Read after it, a reply committed in between gave a card an id newer than the
   page's position, of a reply its summary did not count: the page then reported
   read what its stream had yet to bring (that reply, others, and the channel's new
   posts). A page of older posts is read in one snapshot too, so that each card's
   ids are those of the replies its summary counts.
4. Reading the pinned section. Pinned posts are few, and often old: found by walking
   the live top-level posts newest first, the section and its cut read nearly every
   post, on every dashboard and every "Older posts" page. They are read from the index
   of the pinned posts by channel and id (migration 0021_pinned_posts_index), which
   holds nothing else: tombstones are unpinned and replies never pinned (the read
   still says live and top-level). SQLite, without statistics, takes a partial index
   to hold half the table, and an equality on the index of replies' first two columns
   (no parent, not deleted) for a few rows, though nearly every post has them; so the
   read's test of the parent says ``parent_id + 0``, which no index answers, and its
   channels are a list (``channel_id IN (SELECT ...)``), each searched in the index of
   pinned posts, the few posts found then sorted. PostgreSQL, which knows how few rows
   that index holds, reads it either way (docs/benchmarks.md, on the index of pinned
   posts).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from sqlalchemy import ColumnElement, func, or_
from sqlmodel import Session, col, select

from feed.models import Channel, Event, Post
from feed.storage import reading, tallies, threads
from feed.storage.engine import in_thread
from feed.storage.history import readable
from feed.storage.log import EventLog, Q
from feed.values import FrontPage, PostView, _post_view


class Lists(EventLog):
    """The store's lists of posts."""

    @in_thread
    def list_posts(
        self,
        channels: Sequence[str] | None = None,
        *,
        before: int | None = None,
        limit: int = 50,
        private: Collection[str] | None = None,
    ) -> list[PostView]:
        """Live posts, newest first; ``before`` is a post id to page back from.
        ``private`` names the private channels the reader may see (1)."""
        with self._read() as session:
            return threads.with_summaries(
                session, _posts(session, channels, before, limit, None, private)
            )

    @in_thread
    def front_page(
        self,
        channels: Sequence[str] | None,
        limit: int,
        *,
        private: Collection[str] | None = None,
        reader: str | None = None,
        events: bool = False,
    ) -> FrontPage:
        """What a page shows first, and the event id it is current up to: its pinned
        section (the newest ``limit`` pinned posts) and the ``limit`` newest others (2).

        One snapshot (log.py, on one snapshot), so the posts and the id agree: the
        page's stream then resumes exactly after what the page shows. ``private`` names
        the private channels the reader may see (1), ``mine`` the reactions of
        ``reader`` to those posts, and with ``events`` the page gets the posts' events
        too (3).
        """
        with self._snapshot() as session:
            pinned = _section(session, channels, limit, private)
            cut = pinned[-1].id if len(pinned) == limit else 0
            recent = _posts(session, channels, None, limit, _history(cut), private)
            return _page(session, recent, pinned, limit, reader, events)

    @in_thread
    def older_posts(
        self,
        channels: Sequence[str] | None,
        before: int,
        limit: int,
        *,
        private: Collection[str] | None = None,
        reader: str | None = None,
    ) -> FrontPage:
        """A page of a list's history for its "Older posts": its ``limit`` newest posts
        before ``before`` that are not in its pinned section (2), newest first, with
        what the page shows of them (3). The section and the page are read in one
        snapshot, so a post is in one or the other."""
        with self._snapshot() as session:
            cut = _section_cut(session, channels, limit, private)
            older = _posts(session, channels, before, limit, _history(cut), private)
            return _page(session, older, [], limit, reader, True)


def _page(
    session: Session,
    recent: list[PostView],
    pinned: list[PostView],
    limit: int,
    reader: str | None,
    events: bool,
) -> FrontPage:
    """A page of ``recent`` posts (``limit`` of them if it is full) and ``pinned`` ones,
    with everything it shows of them, read in their snapshot ``session`` (3)."""
    last = session.exec(select(func.max(Event.id))).one() or 0
    shown = threads.with_summaries(session, [*recent, *pinned])
    ids = [p.id for p in shown]
    mine = tallies.mine(session, reader, ids)
    created = reading.created_events(session, ids) if events else {}
    replied = reading.reply_events(session, ids) if events else {}
    posts = sorted(shown, key=lambda p: p.id, reverse=True)
    older = recent[-1].id if len(recent) == limit else None
    return FrontPage(posts, older, last, mine, created, replied)


_PINNED = col(Post.pinned).is_(True)


def _history(cut: int) -> ColumnElement[bool]:
    """The posts of a list's history: every post but its pinned section, whose oldest
    post is ``cut`` (0: the section is not full, so it holds every pinned post) (2)."""
    return or_(col(Post.pinned).is_(False), col(Post.id) < cut)


def _section(
    session: Session, channels: Sequence[str] | None, size: int, private: Collection[str] | None
) -> list[PostView]:
    """A list's pinned section of ``size``, newest first (2)."""
    query = _pinned(select(Post, Channel.name), channels, private)
    query = query.order_by(col(Post.id).desc()).limit(size)
    posts = [_post_view(post, name) for post, name in session.exec(query).all()]
    return tallies.with_counts(session, posts)


def _section_cut(
    session: Session, channels: Sequence[str] | None, size: int, private: Collection[str] | None
) -> int:
    """The oldest post of a full pinned section of ``size``, or 0 (2)."""
    query = _pinned(select(Post.id), channels, private)
    query = query.order_by(col(Post.id).desc()).offset(size - 1).limit(1)
    return session.exec(query).first() or 0


def _pinned(query: Q, channels: Sequence[str] | None, private: Collection[str] | None) -> Q:
    """``query`` narrowed to the live top-level pinned posts of ``channels`` (None: all)
    that a reader of ``private`` may see (1), in the shape that reads them from the
    index of pinned posts (4)."""
    shown = readable(select(Channel.id), private)
    if channels is not None:
        shown = shown.where(col(Channel.name).in_(channels))
    # Not correlated: the channels' own list, not the outer query's channel (4).
    in_list = col(Post.channel_id).in_(shown.correlate(None))
    return query.join(Channel, col(Channel.id) == col(Post.channel_id)).where(
        _PINNED,
        col(Post.deleted).is_(False),
        (col(Post.parent_id) + 0).is_(None),  # no way into the index of replies (4)
        in_list,
    )


def _listed(query: Q, channels: Sequence[str] | None, private: Collection[str] | None) -> Q:
    """``query`` narrowed to the live top-level posts of ``channels`` (None: all) that a
    reader of ``private`` may see (1)."""
    query = query.join(Channel, col(Channel.id) == col(Post.channel_id)).where(
        col(Post.deleted).is_(False), col(Post.parent_id).is_(None)
    )
    query = readable(query, private)
    if channels is not None:
        query = query.where(col(Channel.name).in_(channels))
    return query


def _posts(
    session: Session,
    channels: Sequence[str] | None,
    before: int | None,
    limit: int,
    which: ColumnElement[bool] | None,
    private: Collection[str] | None,
) -> list[PostView]:
    query = _listed(select(Post, Channel.name), channels, private)
    if before is not None:
        query = query.where(col(Post.id) < before)
    if which is not None:
        query = query.where(which)
    query = query.order_by(col(Post.id).desc()).limit(limit)
    posts = [_post_view(post, name) for post, name in session.exec(query).all()]
    return tallies.with_counts(session, posts)
