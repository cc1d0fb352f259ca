"""New posts and replies: written in groups by the group commit, each with its events
(and its mentions) in one transaction.

Rationale:

1. New posts written in groups. New posts are written by the group commit
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
2. Rendering happens before the write lock, as for every body (posts.py, on rendering
   at write time).
3. Batches. The posts of one batch (``create_posts``) are rendered together, in one
   thread hop, before they join the group commit, and are queued together: a group
   holds up to ``MAX_GROUP`` posts, as many as a batch of the API, so a batch costs one
   transaction and one commit when nothing waits ahead of it (two when a group already
   waiting takes part of it), not one per post, and its events are numbered in the
   batch's order.
4. SQLite's own statements. On SQLite a group is written on the driver's own cursor,
   without a session (log.py, on the plain write), its rows inserted by plain
   statements of many rows each and its channels read by one plain statement
   (storage/sqlite.py).
   Idempotency keys and replies' parents still go through the ORM, in a session
   joined to the same transaction when a group has them.
5. On PostgreSQL, a group's posts and their events are inserted by one statement, in
   one round trip (storage/postgres.py, on new posts in one statement).
6. The channels, as a group uses them (``rows.GroupChannel``): a ``Channel`` row on
   PostgreSQL, the plain tuple SQLite's statement reads (storage/sqlite.py).
7. The group commit's own thread. Groups are written in a thread kept for them
   (engine.py, on the group commit's own thread), not in a worker thread shared with
   reads.
8. The write on the loop. On PostgreSQL, a group of new posts is written from the
   event loop (storage/log.py, on the write on the loop): what it reads (the
   channels, the idempotency keys of the posts that have one, the replies' parents)
   and the threads' summaries its replies' events carry are read on the same
   connection, in the same round trips (storage/loop_writer.py, on keyed posts and
   replies on the loop too). Their short bodies are rendered on the loop, before the
   lock, as long as they add up to no more than one body rendered apart
   (``markdown.RENDER_APART``); past that, in a worker thread, together: a group of
   hundreds of bodies that are slow to render (nested emphasis, a few milliseconds
   each) would otherwise hold the loop, and every stream and request on it, for a
   second or more. On SQLite every group is written in the group commit's thread.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

from sqlalchemy import Engine, Table
from sqlmodel import Session, col, select

from feed import markdown
from feed.commits import UNWRITTEN, GroupCommit
from feed.limits import MAX_BATCH_ITEMS
from feed.models import Event, IdempotencyKey, Post
from feed.storage import keys, loop_writer, postgres, rows, search, sqlite, threads
from feed.storage.engine import Writer, in_thread, now
from feed.storage.log import CHANNELS, EventLog
from feed.storage.refusals import (
    ChannelArchived,
    ChannelNotFound,
    IdempotencyKeyReused,
    NotAThread,
    PostDeleted,
    PostNotFound,
    StoreError,
    StoreUnavailable,
    Unstorable,
)
from feed.storage.sqlite import PlainWrite, orm
from feed.values import Answer, Change, Claim, NewPost, Once

# Posts one group writes in one transaction: a whole batch of the API (3).
MAX_GROUP = MAX_BATCH_ITEMS

# For the plain INSERTs of new posts (1).
POSTS: Table = Post.__table__  # type: ignore[attr-defined]
EVENTS: Table = Event.__table__  # type: ignore[attr-defined]


class NewPosts(EventLog):
    """The store's new posts and replies."""

    def __init__(self, engine: Engine, *, notify: bool = False) -> None:
        super().__init__(engine, notify=notify)
        self._group_writer = Writer("feed-group-writer")
        self._new_posts: GroupCommit[NewPost, Change | Once] = GroupCommit(
            self._write_new,
            limit=MAX_GROUP,
            isolate=lambda exc: isinstance(exc, Unstorable),
            unwritten=lambda: StoreUnavailable(UNWRITTEN),
        )

    # -- new posts ----------------------------------------------------------------

    async def create_post(self, channel: str, author: str, body: str) -> Change:
        """A new post and its event, committed with the others waiting (1)."""
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
        """A reply to the top-level post ``parent`` of ``channel``, and its event."""
        written = await self._new_post(NewPost(channel, author, body, parent=parent))
        assert isinstance(written, Change)
        return written

    async def create_posts(self, news: Sequence[NewPost]) -> list[Change | Once | Exception]:
        """New posts and replies, written together in the order given (3): each one's
        change (its answer, if it came with a claim), or the error that refused it."""
        htmls = await in_thread(_render_all)([new.body for new in news])
        # Made anew rather than by ``replace``, which reads the fields' names each time.
        rendered = [
            NewPost(
                new.channel,
                new.author,
                new.body,
                html,
                parent=new.parent,
                claim=new.claim,
                answer=new.answer,
            )
            for new, html in zip(news, htmls, strict=True)
        ]
        return await self._new_posts.submit_all(rendered)

    async def _new_post(self, new: NewPost) -> Change | Once:
        # A long body is rendered by its own request, before it joins a group: nobody
        # waits for its Markdown but itself (2).
        if len(new.body) > markdown.RENDER_APART:
            new = replace(new, html=await in_thread(markdown.to_html)(new.body))
        return await self._new_posts.submit(new)

    def close(self) -> None:
        self._group_writer.stop()
        super().close()

    async def _write_new(self, batch: Sequence[NewPost]) -> Sequence[Change | Once | StoreError]:
        """Write a group of new posts; on PostgreSQL, on the event loop (8)."""
        loop_writer = self._loop_writer
        if loop_writer is not None and loop_writer.ready:
            return await self._insert_on_loop(batch)
        return await self._insert_posts(batch)

    async def _insert_on_loop(self, batch: Sequence[NewPost]) -> list[Change | Once | StoreError]:
        """``_insert_posts`` on the event loop (8): the channels, the idempotency keys
        and the replies' parents read with the lock, the threads summarised at the
        commit."""
        unrendered = [new.body for new in batch if new.html is None]
        if sum(map(len, unrendered)) > markdown.RENDER_APART:  # too long for the loop (8)
            rendered = iter(await in_thread(_render_all)(unrendered))
            htmls = [next(rendered) if new.html is None else new.html for new in batch]
        else:
            try:
                htmls = [
                    markdown.to_html(new.body) if new.html is None else new.html for new in batch
                ]
            except UnicodeEncodeError as exc:  # as a worker thread's caller would see it
                raise loop_writer.store_error(exc, self._engine.dialect) from exc
        names = sorted({new.channel for new in batch})
        claimed = sorted({new.claim.key for new in batch if new.claim is not None})
        answered = sorted({new.parent for new in batch if new.parent is not None})
        async with self._write_on_loop(names, claimed, answered) as write:
            channels: dict[str, rows.GroupChannel] = {c.name: c for c in write.channels}
            settled, repeats = _settled(batch, channels, write.kept, write.parents)
            done = settled.keys() | repeats.keys()
            accepted = [(n, new) for n, new in enumerate(batch) if n not in done]
            written: dict[int, Change | Once] = {}
            if accepted:
                at = now()
                post_rows, order = rows.planned(accepted, channels, htmls, at)
                post_ids, event_ids = await loop_writer.insert_posts_on_loop(
                    write.connection, post_rows, order
                )
                made = rows.made(accepted, channels, htmls, order, post_ids, event_ids, at)
                changes, events = made
                write.written.extend(events)
                written = _answered(changes, batch, write.keeping.append)
        return _outcomes(batch, settled, repeats, written)

    async def _insert_posts(self, batch: Sequence[NewPost]) -> list[Change | Once | StoreError]:
        """Write a group of new posts in one transaction, in the group commit's own
        thread (7); each one's own outcome."""
        return await self._group_writer.run(self._write_posts, batch)

    def _write_posts(self, batch: Sequence[NewPost]) -> list[Change | Once | StoreError]:
        # Short bodies, rendered here, before the lock (2).
        htmls = [markdown.to_html(new.body) if new.html is None else new.html for new in batch]
        names = sorted({new.channel for new in batch})
        if self._postgres:
            with self._write(channels=names) as session:  # the channels read with the lock
                return self._write_group(session, session.info[CHANNELS], batch, htmls)
        with self._write_plain() as plain:  # (4)
            found = sqlite.channels(plain.cursor, names)
            return self._write_group(plain, found, batch, htmls)

    def _write_group(
        self,
        write: Session | PlainWrite,
        found: Sequence[rows.GroupChannel],
        batch: Sequence[NewPost],
        htmls: Sequence[str],
    ) -> list[Change | Once | StoreError]:
        """The group's writes in the transaction ``write``; each post's own outcome."""
        channels: dict[str, rows.GroupChannel] = {c.name: c for c in found}
        settled, repeats = _settle(write, batch, channels)
        done = settled.keys() | repeats.keys()
        accepted = [(n, new) for n, new in enumerate(batch) if n not in done]
        written: dict[int, Change | Once] = {}
        if accepted:
            changes = self._insert_new(write, accepted, channels, htmls)
            written = _answered(changes, batch, lambda row: orm(write).add(row))
        return _outcomes(batch, settled, repeats, written)

    def _insert_new(
        self,
        write: Session | PlainWrite,
        accepted: Sequence[tuple[int, NewPost]],
        channels: dict[str, rows.GroupChannel],
        htmls: Sequence[str],
    ) -> dict[int, Change]:
        """Insert the ``accepted`` posts and their events; each one's change, by place."""
        at = now()
        post_rows, order = rows.planned(accepted, channels, htmls, at)
        if isinstance(write, Session):  # PostgreSQL (5)
            post_ids, event_ids = postgres.insert_posts(write.connection(), post_rows, order)
        else:
            cursor, dialect = write.cursor, self._engine.dialect
            post_ids = sqlite.insert_consecutive(
                cursor, dialect, POSTS, rows.POST_COLUMNS, post_rows.values(), post_rows.shared()
            )
            # Their search entries, by one statement (storage/search.py, on the index
            # following the posts).
            search.index_new(cursor, post_ids[0], post_ids[-1])
            # Replies counted with their parents (threads.py, on the stored count).
            threads.count_new(cursor, (new.parent for _, new in accepted))
            event_rows = rows.event_values(order, post_rows, post_ids)
            event_ids = sqlite.insert_consecutive(
                cursor, dialect, EVENTS, rows.EVENT_COLUMNS, event_rows, {"created_at": at}
            )
        written, events = rows.made(accepted, channels, htmls, order, post_ids, event_ids, at)
        self._noted(write, events)
        return written


def _render_all(bodies: Sequence[str]) -> list[str]:
    return [markdown.to_html(body) for body in bodies]


def _settle(
    write: Session | PlainWrite, batch: Sequence[NewPost], channels: dict[str, rows.GroupChannel]
) -> tuple[dict[int, Once | StoreError], dict[int, int]]:
    """The posts of ``batch`` that write nothing, each with its outcome: refused, or a
    retry answered as before (keys.py, on idempotency keys); and the retries of a post
    in this very group, each with the place of its first try."""
    claims = [new.claim for new in batch if new.claim]
    kept = keys.kept_answers(orm(write), claims) if claims else {}
    return _settled(batch, channels, kept, _parents(write, batch))


def _settled(
    batch: Sequence[NewPost],
    channels: dict[str, rows.GroupChannel],
    kept: dict[str, IdempotencyKey],
    parents: dict[int, Post],
) -> tuple[dict[int, Once | StoreError], dict[int, int]]:
    """``_settle``, from the answers ``kept`` for the group's keys and the
    ``parents`` of its replies, as read."""
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
                except IdempotencyKeyReused as reused:
                    settled[n] = reused
                continue
            if first is not None:
                if batch[first].claim == claim:
                    repeats[n] = first
                else:
                    settled[n] = IdempotencyKeyReused(claim.key)
                continue
        chan = channels.get(new.channel)
        if chan is None or chan.archived:
            settled[n] = _closed(new.channel, chan)
        elif new.parent is not None and (refused := _refused(new, chan, parents)):
            settled[n] = refused
        elif claim is not None:
            first_tries[claim.key] = n
    return settled, repeats


def _closed(name: str, channel: rows.GroupChannel | None) -> StoreError:
    """Why a post to the channel ``name`` (None: there is none) is refused."""
    return ChannelNotFound(name) if channel is None else ChannelArchived(name)


def _parents(write: Session | PlainWrite, batch: Sequence[NewPost]) -> dict[int, Post]:
    """The posts the replies of ``batch`` answer, by id."""
    wanted = sorted({new.parent for new in batch if new.parent is not None})
    if not wanted:
        return {}
    found = orm(write).exec(select(Post).where(col(Post.id).in_(wanted))).all()
    return {post.id: post for post in found if post.id is not None}


def _refused(
    new: NewPost, channel: rows.GroupChannel, parents: dict[int, Post]
) -> StoreError | None:
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
        return NotAThread(new.parent, parent.parent_id)
    return None


def _answered(
    changes: dict[int, Change],
    batch: Sequence[NewPost],
    keep: Callable[[IdempotencyKey], object],
) -> dict[int, Change | Once]:
    """``changes``, with the answer of each that came with a claim given to ``keep``
    to be kept in the same transaction (keys.py, on idempotency keys): those are
    answered with it."""
    written: dict[int, Change | Once] = {}
    for n, change in changes.items():
        new = batch[n]
        if new.claim is None or new.answer is None:
            written[n] = change
            continue
        given = new.answer(change)
        keep(keys.kept(new.claim, given))
        written[n] = Once(given, change.event_id, False)
    return written


def _outcomes(
    batch: Sequence[NewPost],
    settled: dict[int, Once | StoreError],
    repeats: dict[int, int],
    written: dict[int, Change | Once],
) -> list[Change | Once | StoreError]:
    """Each post's own outcome, in the group's order."""
    for n, first in repeats.items():
        # A retry that came with its first try: that try's answer, replayed.
        kept = written[first]
        assert isinstance(kept, Once)
        written[n] = Once(kept.answer, None, True)
    return [written.get(n) or settled[n] for n in range(len(batch))]
