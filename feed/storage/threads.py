"""Threads: a top-level post and its replies, and the summary a card shows of them.

Rationale:

1. One level. A reply answers a top-level post, in that post's channel; a reply to a
   reply is refused (``NotAThread``, 422) rather than quietly attached to the top:
   a client that meant to answer a reply learns that threads are flat.
2. Summaries are read, not stored. A card shows how many live replies its post has and
   who wrote the latest ones; both are read with the post (one grouped query per list
   or per batch of events), never kept in a column that every reply, edit and delete
   would have to keep right. Events carry them as they are now, like every other part
   of a post (log.py, on the current state): a replayed reply shows today's count.
3. A deleted post takes its replies with it, in the same transaction: they become
   tombstones too (posts.py, on tombstones), and the parent's one ``post-deleted`` is
   the event for all of them. A page removes the card and the thread under it; a
   thread's stream and its replay end with that tombstone; a replayed
   ``reply-created`` of one of those replies renders as the tombstone it is now.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import replace
from typing import Any

from sqlalchemy import BindParameter, bindparam, func
from sqlmodel import Session, col, select
from sqlmodel.sql.expression import Select

from feed.models import EventKind, Post
from feed.storage.engine import StoreError
from feed.values import FeedEvent, PostView, Thread

# The repliers a summary names, newest first.
REPLIERS = 3
# The posts whose summaries are read, as one bound array (``statements``).
POSTS: BindParameter[Any] = bindparam("posts")


class NotAThread(StoreError):
    """A reply to a reply (1)."""

    def __init__(self, post_id: int, parent: int) -> None:
        super().__init__(
            f"Post {post_id} is a reply to post {parent}: reply to post {parent} instead."
        )
        self.post_id = post_id


def summaries(session: Session, post_ids: Collection[int]) -> dict[int, Thread]:
    """The reply summary of each of ``post_ids`` that has live replies (2): counted in
    the database, and at most ``REPLIERS`` names each read back, however many people
    replied."""
    if not post_ids:
        return {}
    counts, latest = statements(post_ids)
    found = session.exec(counts).all()
    if not found:
        return {}
    return from_rows(found, session.exec(latest).all())


def statements(
    post_ids: Collection[int] | None,
) -> tuple[Select[Any, Any], Select[Any, Any]]:
    """The two queries of ``summaries``: the live replies of each of ``post_ids``,
    counted, and the latest repliers of each, newest first. ``None``: of the posts in
    the array bound as ``POSTS``, on PostgreSQL, so that their text is the same for
    any posts and is compiled once (storage/loop_writer.py, on keyed posts and replies on
    the loop too)."""
    parent = col(Post.parent_id)
    of = parent.in_(sorted(post_ids)) if post_ids is not None else parent == func.any(POSTS)
    live = (of, col(Post.deleted).is_(False))
    counts = select(Post.parent_id, func.count()).where(*live).group_by(col(Post.parent_id))
    # Each replier's newest reply, ranked per thread: only the top few leave the database.
    newest = (
        select(Post.parent_id, Post.author, func.max(Post.id).label("newest"))
        .where(*live)
        .group_by(col(Post.parent_id), col(Post.author))
        .subquery()
    )
    rank = func.row_number().over(partition_by=newest.c.parent_id, order_by=newest.c.newest.desc())
    ranked = select(newest.c.parent_id, newest.c.author, rank.label("rank")).subquery()
    latest = (
        select(ranked.c.parent_id, ranked.c.author)
        .where(ranked.c.rank <= REPLIERS)
        .order_by(ranked.c.parent_id, ranked.c.rank)
    )
    return counts, latest


def from_rows(
    counts: Iterable[Sequence[Any]], latest: Iterable[Sequence[Any]]
) -> dict[int, Thread]:
    """The summaries from the rows ``statements``' queries read."""
    found = {parent: Thread(parent, count, ()) for parent, count in counts if parent is not None}
    names: dict[int, list[str]] = {}
    for parent, author in latest:
        names.setdefault(parent, []).append(author)
    return {
        parent: replace(thread, repliers=tuple(names.get(parent, ())))
        for parent, thread in found.items()
    }


def summarised(post: PostView, threads: dict[int, Thread]) -> PostView:
    """``post`` with its reply summary, if it is a live top-level post."""
    thread = threads.get(post.id)
    if post.parent is not None or thread is None:
        return post
    return replace(post, replies=thread.replies, repliers=thread.repliers)


def with_summaries(session: Session, posts: Sequence[PostView]) -> list[PostView]:
    """``posts``, each top-level one with its reply summary as it is now (2)."""
    wanted = {p.id for p in posts if p.parent is None and not p.deleted}
    threads = summaries(session, wanted)
    return [summarised(post, threads) for post in posts]


def with_threads(
    session: Session, events: Iterable[FeedEvent], *, new: bool = False
) -> list[FeedEvent]:
    """``events``, each reply's with its parent's summary and each top-level post with
    its own, as they are now (2). ``new``: the events were just written, so a new
    top-level post has no replies yet and needs no query (the common case, kept cheap)."""
    events = list(events)
    posts = wanted(events, new=new)
    if not posts:
        return events
    return with_found(events, summaries(session, posts))


def with_found(events: Iterable[FeedEvent], threads: dict[int, Thread]) -> list[FeedEvent]:
    """``events`` with the summaries ``threads`` read for them (``with_threads``)."""
    return [_with_thread(event, threads) for event in events]


def wanted(events: Iterable[FeedEvent], *, new: bool = False) -> set[int]:
    """The posts whose summaries ``with_threads`` reads for ``events``."""
    found: set[int] = set()
    for event in events:
        post = event.post
        if post is None or (post.deleted and post.parent is None):
            continue
        if new and event.kind is EventKind.POST_CREATED:
            continue
        found.add(post.id if post.parent is None else post.parent)
    return found


def _with_thread(event: FeedEvent, threads: dict[int, Thread]) -> FeedEvent:
    post = event.post
    if post is None:
        return event
    if post.parent is None:
        return replace(event, post=summarised(post, threads))
    thread = threads.get(post.parent, Thread(post.parent, 0, ()))
    return replace(event, thread=thread)
