"""Posts: edits, pins and deletes, and the reads of them (new ones: new_posts.py).

Rationale for the less obvious choices:

1. Tombstones. A deleted post keeps its row (so replay can remove it from pages) but
   loses its body: deleted text is not served again.
2. New posts are written in groups, by new_posts.py.
3. Rendering at write time. A body's HTML is rendered when the post is written, off
   the event loop and before the write lock is taken, and stored with it
   (markdown.py): no reader renders Markdown, and no writer waits for another's long
   one. A new post's body longer than ``markdown.RENDER_APART`` is rendered by its own
   request, in a worker thread, before it joins a group (new_posts.py); shorter ones, which cost
   at most a few milliseconds whatever they hold, are rendered by the group's write,
   which spares most posts a thread hop of their own (a hop for every post showed in
   posting throughput: docs/benchmarks.md).
4. Reads of posts for a reader filter private channels in SQL, as the log's reads do
   (history.py, on reads for a reader), so a page never shows a post of a channel made
   private a moment ago to someone who may not read it.
5. Replies. A reply is a row of ``posts`` with its parent's id, written, edited and
   deleted exactly as a post is (the group commit included), with ``reply-*`` events
   in its parent's channel, so every rule about channels (private ones included)
   holds for replies with no rule of their own. Lists of posts show top-level posts
   only; a reply is read with its thread (threads.py, on one level, on summaries,
   and on deleting a post with its replies).
6. A page of replies is read down the index of a post's replies (parent, deleted, id),
   which it is ordered by: its deleted flag, then its id, newest first. Ordered by id
   alone, PostgreSQL may page back through a long thread down the posts' key instead,
   newest first, keeping the thread's replies: for the thread's oldest page, shorter
   than its limit, it then read every post older than the thread, to the first one
   (100,000 for five replies: 8 ms, and more the older the thread; docs/benchmarks.md).
   The deleted flag is the same for every row it keeps (``IS false``), so the order is
   the same, but PostgreSQL does not drop it from the order as it drops the parent
   (fixed by ``=``): no walk down the posts' key gives that order without sorting
   every reply it keeps, which costs more than reading the index of replies. SQLite
   reads that index either way.
7. A list's pinned section and its history (lists.py, on the dashboard). A list shows
   its newest ``limit`` pinned posts apart, on top, and under them its history: every
   other post, pinned or not, newest first, paged back by "Older posts". While the
   section is full, the pinned posts left out of it are exactly those older than its
   oldest post, the *cut*; so the history is "unpinned, or older than the cut", one
   condition on the id, with no list of ids to leave out. A page of history reads the
   cut in the same snapshot as the page, so each post is in the section or the history,
   never both or neither.
8. A page's posts' events. A dashboard gives each card the event that made it and
   that of its newest reply (reading.py, on a page's posts' events), which its page
   reports read once the card has been seen. They are read in the page's snapshot,
   with its list, its position and its cards' summaries (log.py, on one snapshot).
   Read after it, a reply committed in between gave a card an id newer than the
   page's position, of a reply its summary did not count: the page then reported
   read what its stream had yet to bring (that reply, others, and the channel's new
   posts). A page of older posts is read in one snapshot too, so that each card's
   ids are those of the replies its summary counts.
9. Reading the pinned section. Pinned posts are few, and often old: found by walking
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

from feed import markdown, mentions
from feed.models import Channel, Event, EventKind, Post
from feed.storage import reading, tallies, threads
from feed.storage.engine import in_thread, now
from feed.storage.history import readable
from feed.storage.log import EventLog, Q
from feed.storage.refusals import NotAThread, PostDeleted, PostNotFound, ReplyNotPinned
from feed.values import (
    Change,
    FrontPage,
    PostView,
    ThreadPage,
    _post_view,
)


def _told(session: Session, post_id: int) -> set[str]:
    """Who ``post_id`` has told it mentions them: its mention events' recipients, by
    the index of events by post."""
    query = select(Event.recipient).where(
        col(Event.post_id) == post_id, col(Event.kind) == EventKind.MENTION.value
    )
    return {name for name in session.exec(query).all() if name is not None}


class Posts(EventLog):
    """The store's posts."""

    # -- changes ------------------------------------------------------------------

    @in_thread
    def edit_post(self, post_id: int, body: str) -> Change:
        html = markdown.to_html(body)  # before the write lock (3)
        event_id = None
        with self._write() as session:
            post, channel = _live_post(session, post_id)
            if post.body != body:
                post.body, post.html = body, html
                post.edited_at = now()
                told = _told(session, post_id)
                for name in mentions.addressed(html, post.author):
                    # Told once, when first mentioned, even if edited out and back in since.
                    if name not in told:
                        self._log(session, EventKind.MENTION, post, channel, recipient=name)
                reply = post.parent_id is not None
                kind = EventKind.REPLY_UPDATED if reply else EventKind.POST_UPDATED
                event_id = self._log(session, kind, post, channel)
            view = _post_view(post, channel.name)
        return Change(self._as_now(view), event_id)

    @in_thread
    def delete_post(self, post_id: int) -> Change:
        with self._write() as session:
            post, channel = _live_post(session, post_id)
            _tombstone(post)
            tallies.forget(session, post_id)
            if post.parent_id is None:
                # Its replies go with it, under its one event (threads.py, on deleting).
                replies = select(Post).where(
                    Post.parent_id == post.id, col(Post.deleted).is_(False)
                )
                for reply in session.exec(replies).all():
                    _tombstone(reply)
                    assert reply.id is not None
                    tallies.forget(session, reply.id)
                post.reply_count = 0  # none live (threads.py, on the stored count)
                kind = EventKind.POST_DELETED
            else:
                threads.reply_deleted(session, post.parent_id)
                kind = EventKind.REPLY_DELETED
            event_id = self._log(session, kind, post, channel)
            return Change(_post_view(post, channel.name), event_id)

    @in_thread
    def set_pinned(self, post_id: int, pinned: bool) -> Change:
        event_id = None
        with self._write() as session:
            post, channel = _live_post(session, post_id)
            if post.parent_id is not None:
                raise ReplyNotPinned(post_id)
            if post.pinned != pinned:
                post.pinned = pinned
                kind = EventKind.POST_PINNED if pinned else EventKind.POST_UNPINNED
                event_id = self._log(session, kind, post, channel)
            view = _post_view(post, channel.name)
        return Change(self._as_now(view), event_id)

    def _as_now(self, view: PostView) -> PostView:
        """A changed post as its answer shows it: with its replies and reactions, as
        every post an answer or a stream carries. Read after the write, outside its
        lock: another change since then shows too, as it would on a read."""
        with self._read() as session:
            return tallies.with_counts(session, threads.with_summaries(session, [view]))[0]

    # -- reads --------------------------------------------------------------------

    @in_thread
    def get_post(
        self, post_id: int, *, private: Collection[str] | None = None, counted: bool = True
    ) -> PostView:
        """The post, if a reader of the private channels ``private`` (None: all) may see
        it: one in another private channel is not found (4). Without ``counted``, it
        carries no reactions: a toggle, which counts them itself, asks only where the
        post is."""
        with self._read() as session:
            query = select(Post, Channel.name).join(
                Channel, col(Channel.id) == col(Post.channel_id)
            )
            row = session.exec(readable(query.where(Post.id == post_id), private)).first()
            if row is None:
                raise PostNotFound(post_id)
            view = threads.with_summaries(session, [_post_view(*row)])[0]
            return tallies.with_counts(session, [view])[0] if counted else view

    @in_thread
    def tombstone_event(self, post_id: int) -> int | None:
        """The id of the event that deleted the top-level post ``post_id``, if one did:
        the last event of its thread (threads.py, on deleting a post with its replies).
        Read by the events' index by post, whoever asks: the caller decides who may
        know."""
        query = select(Event.id).where(
            col(Event.post_id) == post_id, col(Event.kind) == EventKind.POST_DELETED.value
        )
        with self._read() as session:
            return session.exec(query).first()

    @in_thread
    def list_replies(
        self,
        parent: int,
        *,
        before: int | None = None,
        limit: int = 50,
        private: Collection[str] | None = None,
    ) -> list[PostView]:
        """The live replies to ``parent``, newest first, paged as ``list_posts``, with
        their reactions; a parent a reader of ``private`` may not see is not found (4)."""
        with self._read() as session:
            _thread_root(session, parent, private)
            return tallies.with_counts(session, _replies(session, parent, before, limit))

    @in_thread
    def thread_page(
        self,
        parent: int,
        limit: int,
        *,
        private: Collection[str] | None = None,
        reader: str | None = None,
    ) -> ThreadPage:
        """A thread's page: its post, its newest ``limit`` replies (oldest first), the
        event id they are current up to, and ``reader``'s reactions to them, from one
        snapshot (log.py, on one snapshot)."""
        with self._snapshot() as session:
            post = _thread_root(session, parent, private)
            post, *replies = tallies.with_counts(
                session, [post, *_replies(session, parent, None, limit)]
            )
            last = session.exec(select(func.max(Event.id))).one() or 0
            mine = tallies.mine(session, reader, [post.id, *(r.id for r in replies)])
        return ThreadPage(post, replies[::-1], last, mine)

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
        ``private`` names the private channels the reader may see (4)."""
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
        section (the newest ``limit`` pinned posts) and the ``limit`` newest others (7).

        One snapshot (log.py, on one snapshot), so the posts and the id agree: the
        page's stream then resumes exactly after what the page shows. ``private`` names
        the private channels the reader may see (4), ``mine`` the reactions of
        ``reader`` to those posts, and with ``events`` the page gets the posts' events
        too (8).
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
        before ``before`` that are not in its pinned section (7), newest first, with
        what the page shows of them (8). The section and the page are read in one
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
    with everything it shows of them, read in their snapshot ``session`` (8)."""
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
    post is ``cut`` (0: the section is not full, so it holds every pinned post) (7)."""
    return or_(col(Post.pinned).is_(False), col(Post.id) < cut)


def _section(
    session: Session, channels: Sequence[str] | None, size: int, private: Collection[str] | None
) -> list[PostView]:
    """A list's pinned section of ``size``, newest first (7)."""
    query = _pinned(select(Post, Channel.name), channels, private)
    query = query.order_by(col(Post.id).desc()).limit(size)
    posts = [_post_view(post, name) for post, name in session.exec(query).all()]
    return tallies.with_counts(session, posts)


def _section_cut(
    session: Session, channels: Sequence[str] | None, size: int, private: Collection[str] | None
) -> int:
    """The oldest post of a full pinned section of ``size``, or 0 (7)."""
    query = _pinned(select(Post.id), channels, private)
    query = query.order_by(col(Post.id).desc()).offset(size - 1).limit(1)
    return session.exec(query).first() or 0


def _pinned(query: Q, channels: Sequence[str] | None, private: Collection[str] | None) -> Q:
    """``query`` narrowed to the live top-level pinned posts of ``channels`` (None: all)
    that a reader of ``private`` may see (4, 5), in the shape that reads them from the
    index of pinned posts (9)."""
    shown = readable(select(Channel.id), private)
    if channels is not None:
        shown = shown.where(col(Channel.name).in_(channels))
    # Not correlated: the channels' own list, not the outer query's channel (9).
    in_list = col(Post.channel_id).in_(shown.correlate(None))
    return query.join(Channel, col(Channel.id) == col(Post.channel_id)).where(
        _PINNED,
        col(Post.deleted).is_(False),
        (col(Post.parent_id) + 0).is_(None),  # no way into the index of replies (9)
        in_list,
    )


def _listed(query: Q, channels: Sequence[str] | None, private: Collection[str] | None) -> Q:
    """``query`` narrowed to the live top-level posts of ``channels`` (None: all) that a
    reader of ``private`` may see (4, 5)."""
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


def _thread_root(session: Session, post_id: int, private: Collection[str] | None) -> PostView:
    """The live top-level post ``post_id`` with its summary, if a reader of ``private``
    may see it (4); a reply is no thread's root (threads.py, on one level)."""
    query = select(Post, Channel.name).join(Channel, col(Channel.id) == col(Post.channel_id))
    row = session.exec(readable(query.where(Post.id == post_id), private)).first()
    if row is None:
        raise PostNotFound(post_id)
    post, name = row
    if post.deleted:
        raise PostDeleted(post_id)
    if post.parent_id is not None:
        raise NotAThread(post_id, post.parent_id)
    return threads.with_summaries(session, [_post_view(post, name)])[0]


def _replies(session: Session, parent: int, before: int | None, limit: int) -> list[PostView]:
    query = (
        select(Post, Channel.name)
        .join(Channel, col(Channel.id) == col(Post.channel_id))
        .where(Post.parent_id == parent, col(Post.deleted).is_(False))
    )
    if before is not None:
        query = query.where(col(Post.id) < before)
    # In the order of the index of replies, which only it gives (6).
    query = query.order_by(col(Post.deleted).desc(), col(Post.id).desc()).limit(limit)
    return [_post_view(post, name) for post, name in session.exec(query).all()]


def _tombstone(post: Post) -> None:
    """A tombstone (1): the row stays, its text goes."""
    post.deleted = True
    post.pinned = False
    post.body = post.html = ""


def _live_post(session: Session, post_id: int) -> tuple[Post, Channel]:
    row = session.exec(
        select(Post, Channel)
        .join(Channel, col(Channel.id) == col(Post.channel_id))
        .where(Post.id == post_id)
    ).first()
    if row is None:
        raise PostNotFound(post_id)
    post, channel = row
    if post.deleted:
        raise PostDeleted(post_id)
    return post, channel
