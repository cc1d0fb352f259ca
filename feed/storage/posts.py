"""Posts: edits, pins and deletes, and the reads of a post and its thread (lists of
posts: lists.py; new ones: new_posts.py).

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
"""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import func
from sqlmodel import Session, col, select

from feed import markdown, mentions
from feed.models import Channel, Event, EventKind, Post
from feed.storage import tallies, threads
from feed.storage.engine import in_thread, now
from feed.storage.history import readable
from feed.storage.log import EventLog
from feed.storage.refusals import NotAThread, PostDeleted, PostNotFound, ReplyNotPinned
from feed.values import (
    Change,
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
