"""Posts: new ones written in groups, edits, pins and deletes, and the reads of them.

Rationale for the less obvious choices:

1. Tombstones. A deleted post keeps its row (so replay can remove it from pages) but
   loses its body: deleted text is not served again.
2. New posts written in groups. New posts are written by the group commit
   (commits.py): the posts that arrive while one write runs share the next
   transaction. It is the one way a post is made, with an ``Idempotency-Key`` or
   without (keys.py, on idempotency keys). They are inserted with plain INSERTs, not
   through the ORM's unit of work, which cost more than the rest of a post's write,
   and their events are noted as made, not read back (log.py, on the current state).
   The bound on waiting for the write lock holds for every post: when a group's write
   fails, the posts that arrived while it was being tried get the same 503 at once,
   instead of a second wait for a database just found locked. A value the driver
   refuses fails only the post that carries it: the group commit writes the others
   apart from it.
3. Rendering at write time. A body's HTML is rendered when the post is written, off
   the event loop and before the write lock is taken, and stored with it
   (markdown.py): no reader renders Markdown, and no writer waits for another's long
   one. A new post's body longer than ``markdown.RENDER_APART`` is rendered by its own
   request, in a worker thread, before it joins a group (2); shorter ones, which cost
   at most a few milliseconds whatever they hold, are rendered by the group's write,
   which spares most posts a thread hop of their own (a hop for every post showed in
   posting throughput: docs/benchmarks.md).
4. Reads of posts for a reader filter private channels in SQL, as the log's reads do
   (log.py, on reads for a reader), so a page never shows a post of a channel made
   private a moment ago to someone who may not read it.
5. Replies. A reply is a row of ``posts`` with its parent's id, written, edited and
   deleted exactly as a post is (the group commit included), with ``reply-*`` events
   in its parent's channel, so every rule about channels (private ones included)
   holds for replies with no rule of their own. Lists of posts show top-level posts
   only; a reply is read with its thread (threads.py, on one level, on summaries,
   and on deleting a post with its replies).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import replace
from typing import Any

from sqlalchemy import Connection, Engine, Table, func, insert
from sqlmodel import Session, col, select

from feed import markdown, mentions
from feed.commits import GroupCommit
from feed.models import Channel, Event, EventKind, Post
from feed.storage import keys, tallies, threads
from feed.storage.channels import ChannelArchived, ChannelNotFound
from feed.storage.engine import StoreError, Unstorable, in_thread, now
from feed.storage.log import EventLog, readable
from feed.values import (
    Answer,
    Change,
    Claim,
    FeedEvent,
    FrontPage,
    NewPost,
    Once,
    PostView,
    ThreadPage,
    _post_view,
)

# For the plain INSERTs of new posts (2).
POSTS: Table = Post.__table__  # type: ignore[attr-defined]
EVENTS: Table = Event.__table__  # type: ignore[attr-defined]


class PostNotFound(StoreError):
    def __init__(self, post_id: int) -> None:
        super().__init__(f"There is no post with id {post_id}.")
        self.post_id = post_id


class PostDeleted(StoreError):
    def __init__(self, post_id: int) -> None:
        super().__init__(f"Post {post_id} has been deleted.")
        self.post_id = post_id


class ReplyNotPinned(StoreError):
    def __init__(self, post_id: int) -> None:
        super().__init__(f"Post {post_id} is a reply: only top-level posts are pinned.")
        self.post_id = post_id


class Posts(EventLog):
    """The store's posts."""

    def __init__(self, engine: Engine, *, notify: bool = False) -> None:
        super().__init__(engine, notify=notify)
        self._new_posts: GroupCommit[NewPost, Change | Once] = GroupCommit(
            self._insert_posts, isolate=lambda exc: isinstance(exc, Unstorable)
        )

    # -- new posts ----------------------------------------------------------------

    async def create_post(self, channel: str, author: str, body: str) -> Change:
        """A new post and its event, committed with the others waiting (2)."""
        written = await self._new_post(NewPost(channel, author, body))
        assert isinstance(written, Change)
        return written

    async def create_post_once(
        self,
        claim: Claim,
        channel: str,
        author: str,
        body: str,
        answer: Callable[[Change], Answer],
        *,
        parent: int | None = None,
    ) -> Once:
        """``create_post`` (or ``create_reply``), answered once per ``claim`` (keys.py,
        on idempotency keys)."""
        new = NewPost(channel, author, body, parent=parent, claim=claim, answer=answer)
        written = await self._new_post(new)
        assert isinstance(written, Once)
        return written

    async def create_reply(self, channel: str, parent: int, author: str, body: str) -> Change:
        """A reply to the top-level post ``parent`` of ``channel``, and its event (5)."""
        written = await self._new_post(NewPost(channel, author, body, parent=parent))
        assert isinstance(written, Change)
        return written

    async def _new_post(self, new: NewPost) -> Change | Once:
        # A long body is rendered by its own request, before it joins a group: nobody
        # waits for its Markdown but itself (3).
        if len(new.body) > markdown.RENDER_APART:
            new = replace(new, html=await in_thread(markdown.to_html)(new.body))
        return await self._new_posts.submit(new)

    @in_thread
    def _insert_posts(self, batch: Sequence[NewPost]) -> list[Change | Once | StoreError]:
        """Write a group of new posts in one transaction; each one's own outcome."""
        # Short bodies, rendered here, before the lock (3).
        htmls = [markdown.to_html(new.body) if new.html is None else new.html for new in batch]
        with self._write() as session:
            names = sorted({new.channel for new in batch})
            found = session.exec(select(Channel).where(col(Channel.name).in_(names))).all()
            channels = {c.name: c for c in found}
            settled, repeats = _settle(session, batch, channels)
            done = settled.keys() | repeats.keys()
            accepted = [(n, new) for n, new in enumerate(batch) if n not in done]
            written: dict[int, Change | Once] = {}
            if accepted:
                changes = self._insert_new(session, accepted, channels, htmls)
                written = _keep_answers(session, changes, batch)
            for n, first in repeats.items():
                # A retry that came with its first try: that try's answer, replayed.
                kept = written[first]
                assert isinstance(kept, Once)
                written[n] = Once(kept.answer, None, True)
        return [written.get(n) or settled[n] for n in range(len(batch))]

    def _insert_new(
        self,
        session: Session,
        accepted: Sequence[tuple[int, NewPost]],
        channels: dict[str, Channel],
        htmls: Sequence[str],
    ) -> dict[int, Change]:
        """Insert the ``accepted`` posts and their events; each one's change, by place."""
        at = now()
        connection = session.connection()
        post_rows = [
            {"channel_id": channels[new.channel].id, "author": new.author, "body": new.body}
            | {"parent_id": new.parent}
            | {"html": htmls[n], "created_at": at, "edited_at": None}
            | {"pinned": False, "deleted": False}
            for n, new in accepted
        ]
        post_ids = _insert_many(connection, POSTS, post_rows)
        # A post's mentions go just before its own event (reading.py, on mentions).
        # Each event as (post id, kind, recipient), in the order they are inserted.
        planned: list[tuple[int, EventKind, str | None]] = []
        for (n, new), post_id in zip(accepted, post_ids, strict=True):
            for name in mentions.addressed(htmls[n], new.author):
                planned.append((post_id, EventKind.MENTION, name))
            planned.append((post_id, _created(new), None))
        channel_of = {p: row["channel_id"] for row, p in zip(post_rows, post_ids, strict=True)}
        event_rows = [
            {"kind": kind.value, "channel_id": channel_of[post_id], "post_id": post_id}
            | {"created_at": at, "recipient": recipient}
            for post_id, kind, recipient in planned
        ]
        event_ids = _insert_many(connection, EVENTS, event_rows)
        views = {}
        for (n, new), post_id in zip(accepted, post_ids, strict=True):
            view = PostView(
                post_id, new.channel, new.author, new.body, at, None, False, False, htmls[n]
            )
            views[post_id] = replace(view, parent=new.parent)
        by_post = {p: n for (n, _), p in zip(accepted, post_ids, strict=True)}
        written: dict[int, Change] = {}
        events = []
        for (post_id, kind, recipient), event_id in zip(planned, event_ids, strict=True):
            view = views[post_id]
            if recipient is None:
                written[by_post[post_id]] = Change(view, event_id)
            chan = channels[view.channel]
            events.append(
                FeedEvent(event_id, kind, chan.name, view, None, at, chan.private, recipient)
            )
        self._noted(session, events)
        return written

    # -- changes ------------------------------------------------------------------

    @in_thread
    def edit_post(self, post_id: int, body: str) -> Change:
        html = markdown.to_html(body)  # before the write lock (3)
        with self._write() as session:
            post, channel = _live_post(session, post_id)
            if post.body == body:
                return Change(_post_view(post, channel.name), None)
            before = set(mentions.mentioned(post.html or ""))
            post.body, post.html = body, html
            post.edited_at = now()
            for name in mentions.addressed(html, post.author):
                if name not in before:  # told once, when first mentioned
                    self._log(session, EventKind.MENTION, post, channel, recipient=name)
            kind = EventKind.POST_UPDATED if post.parent_id is None else EventKind.REPLY_UPDATED
            event_id = self._log(session, kind, post, channel)
            return Change(_post_view(post, channel.name), event_id)

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
                kind = EventKind.POST_DELETED
            else:
                kind = EventKind.REPLY_DELETED
            event_id = self._log(session, kind, post, channel)
            return Change(_post_view(post, channel.name), event_id)

    @in_thread
    def set_pinned(self, post_id: int, pinned: bool) -> Change:
        with self._write() as session:
            post, channel = _live_post(session, post_id)
            if post.parent_id is not None:
                raise ReplyNotPinned(post_id)
            if post.pinned == pinned:
                return Change(_post_view(post, channel.name), None)
            post.pinned = pinned
            kind = EventKind.POST_PINNED if pinned else EventKind.POST_UNPINNED
            event_id = self._log(session, kind, post, channel)
            return Change(_post_view(post, channel.name), event_id)

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
        self, parent: int, limit: int, *, private: Collection[str] | None = None
    ) -> ThreadPage:
        """A thread's page: its post, its newest ``limit`` replies (oldest first), and the
        event id they are current up to, from one snapshot (log.py, on one snapshot)."""
        with self._snapshot() as session:
            post = _thread_root(session, parent, private)
            post, *replies = tallies.with_counts(
                session, [post, *_replies(session, parent, None, limit)]
            )
            last = session.exec(select(func.max(Event.id))).one() or 0
        return ThreadPage(post, replies[::-1], last)

    @in_thread
    def list_posts(
        self,
        channels: Sequence[str] | None = None,
        *,
        before: int | None = None,
        limit: int = 50,
        pinned: bool | None = None,
        private: Collection[str] | None = None,
    ) -> list[PostView]:
        """Live posts, newest first; ``before`` is a post id to page back from.
        ``private`` names the private channels the reader may see (4)."""
        with self._read() as session:
            return threads.with_summaries(
                session, _posts(session, channels, before, limit, pinned, private)
            )

    @in_thread
    def front_page(
        self,
        channels: Sequence[str] | None,
        limit: int,
        *,
        private: Collection[str] | None = None,
        reader: str | None = None,
    ) -> FrontPage:
        """What a page shows first, and the event id it is current up to.

        One snapshot (log.py, on one snapshot), so the posts and the id agree: the
        page's stream then resumes exactly after what the page shows. ``private`` names
        the private channels the reader may see (4), and ``mine`` the reactions of
        ``reader`` to those posts.
        """
        with self._snapshot() as session:
            recent = _posts(session, channels, None, limit, False, private)
            pinned = _posts(session, channels, None, limit, True, private)
            last = session.exec(select(func.max(Event.id))).one() or 0
            recent = threads.with_summaries(session, recent)
            pinned = threads.with_summaries(session, pinned)
            mine = tallies.mine(session, reader, [p.id for p in [*recent, *pinned]])
        posts = sorted([*recent, *pinned], key=lambda p: p.id, reverse=True)
        older = recent[-1].id if len(recent) == limit else None
        return FrontPage(posts, older, last, mine)


def _settle(
    session: Session, batch: Sequence[NewPost], channels: dict[str, Channel]
) -> tuple[dict[int, Once | StoreError], dict[int, int]]:
    """The posts of ``batch`` that write nothing, each with its outcome: refused, or a
    retry answered as before (keys.py, on idempotency keys); and the retries of a post
    in this very group, each with the place of its first try."""
    kept = keys.kept_answers(session, [new.claim for new in batch if new.claim])
    parents = _parents(session, batch)
    settled: dict[int, Once | StoreError] = {}
    repeats: dict[int, int] = {}
    first_tries: dict[str, int] = {}
    for n, new in enumerate(batch):
        claim = new.claim
        if claim is not None:
            before, first = kept.get(claim.key), first_tries.get(claim.key)
            if before is not None:
                try:
                    settled[n] = keys.replay(claim, before)
                except keys.IdempotencyKeyReused as reused:
                    settled[n] = reused
                continue
            if first is not None:
                if batch[first].claim == claim:
                    repeats[n] = first
                else:
                    settled[n] = keys.IdempotencyKeyReused(claim.key)
                continue
        chan = channels.get(new.channel)
        if chan is None:
            settled[n] = ChannelNotFound(new.channel)
        elif chan.archived:
            settled[n] = ChannelArchived(new.channel)
        elif new.parent is not None and (refused := _refused(new, chan, parents)):
            settled[n] = refused
        elif claim is not None:
            first_tries[claim.key] = n
    return settled, repeats


def _created(new: NewPost) -> EventKind:
    return EventKind.POST_CREATED if new.parent is None else EventKind.REPLY_CREATED


def _parents(session: Session, batch: Sequence[NewPost]) -> dict[int, Post]:
    """The posts the replies of ``batch`` answer, by id."""
    wanted = sorted({new.parent for new in batch if new.parent is not None})
    if not wanted:
        return {}
    found = session.exec(select(Post).where(col(Post.id).in_(wanted))).all()
    return {post.id: post for post in found if post.id is not None}


def _refused(new: NewPost, channel: Channel, parents: dict[int, Post]) -> StoreError | None:
    """Why the reply ``new`` cannot be written, if it cannot: its parent is gone, is in
    another channel (as good as not there), or is a reply itself (threads.py, on one
    level)."""
    assert new.parent is not None
    parent = parents.get(new.parent)
    if parent is None or parent.channel_id != channel.id:
        return PostNotFound(new.parent)
    if parent.deleted:
        return PostDeleted(new.parent)
    if parent.parent_id is not None:
        return threads.NotAThread(new.parent, parent.parent_id)
    return None


def _keep_answers(
    session: Session, changes: dict[int, Change], batch: Sequence[NewPost]
) -> dict[int, Change | Once]:
    """``changes``, with the answer of each that came with a claim kept beside it
    (keys.py, on idempotency keys): those are answered with it."""
    written: dict[int, Change | Once] = {}
    for n, change in changes.items():
        new = batch[n]
        if new.claim is None or new.answer is None:
            written[n] = change
            continue
        given = new.answer(change)
        keys.keep(session, new.claim, given)
        written[n] = Once(given, change.event_id, False)
    return written


def _insert_many(connection: Connection, table: Table, rows: list[dict[str, Any]]) -> list[int]:
    """Insert ``rows``; their new ids, in the order of ``rows``."""
    returning = insert(table).returning(table.c.id, sort_by_parameter_order=True)
    return list(connection.execute(returning, rows).scalars())


def _posts(
    session: Session,
    channels: Sequence[str] | None,
    before: int | None,
    limit: int,
    pinned: bool | None,
    private: Collection[str] | None,
) -> list[PostView]:
    query = (
        select(Post, Channel.name)
        .join(Channel, col(Channel.id) == col(Post.channel_id))
        .where(col(Post.deleted).is_(False), col(Post.parent_id).is_(None))
    )
    query = readable(query, private)
    if channels is not None:
        query = query.where(col(Channel.name).in_(channels))
    if before is not None:
        query = query.where(col(Post.id) < before)
    if pinned is not None:
        query = query.where(col(Post.pinned).is_(pinned))
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
        raise threads.NotAThread(post_id, post.parent_id)
    return threads.with_summaries(session, [_post_view(post, name)])[0]


def _replies(session: Session, parent: int, before: int | None, limit: int) -> list[PostView]:
    query = (
        select(Post, Channel.name)
        .join(Channel, col(Channel.id) == col(Post.channel_id))
        .where(Post.parent_id == parent, col(Post.deleted).is_(False))
    )
    if before is not None:
        query = query.where(col(Post.id) < before)
    query = query.order_by(col(Post.id).desc()).limit(limit)
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
