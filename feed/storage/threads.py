"""Threads: a top-level post and its replies, and the summary a card shows of them.

Rationale:

1. One level. A reply answers a top-level post, in that post's channel; a reply to a
   reply is refused (``NotAThread``, 422) rather than quietly attached to the top:
   a client that meant to answer a reply learns that threads are flat.
2. Summaries are read with the post. A card shows how many live replies its post has
   and who wrote the latest ones; both are read with the post (two queries per list
   or per batch of events). The count is stored with the post (5); the repliers are
   read from its replies, never kept in a column that every reply, edit and delete
   would have to keep right. Events carry them as they are now, like every other
   part of a post (log.py, on the current state): a replayed reply shows today's
   count.
3. A deleted post takes its replies with it, in the same transaction: they become
   tombstones too (posts.py, on tombstones), and the parent's one ``post-deleted`` is
   the event for all of them. A page removes the card and the thread under it; a
   thread's stream and its replay end with that tombstone, a resume from before it
   included (thread_streams.py, on a deleted post's thread); a replayed ``reply-created`` of
   one of those replies renders as the tombstone it is now.
4. Summaries of long threads. A reply, an edit or a reaction in a thread reads its
   summary inside the write's transaction, with the writers' lock held, so what it
   costs holds up every other write. The repliers are therefore found among the
   thread's newest ``WALK`` live replies only, walked down the index of (thread,
   deleted, id) (migration 0015_thread_summaries) from the newest: a few hundred
   index entries and rows however long the thread. When those newest replies are all
   by one or two people, the summary names only them, although others replied
   earlier: it says who is talking now, not everyone who ever did. The walk filters
   on ``deleted = false``: PostgreSQL looks up ``= false`` in an index but not ``IS
   false``.
5. The stored count. Counting a thread's live replies, even in that index alone,
   grew with the thread (docs/benchmarks.md, on a stored count), and every reply paid
   for it under the writers' lock. So each top-level post keeps its count of live
   replies in ``posts.reply_count`` (migration 0016_reply_counts, which counted the
   threads already there), and a summary reads that one row. Three writes change it,
   each in the transaction that writes the reply's row and event, under the writers'
   lock, so no two of them interleave: a group of new posts adds its replies to their
   parents, once per parent (``count_new`` on SQLite; the group's one statement on
   PostgreSQL: postgres.py, on new posts in one statement); a reply's deletion takes
   one off (``reply_deleted``); a post's deletion, which takes its replies with it
   (3), sets its own to 0. Nothing undeletes a post, and a retried keyed reply writes
   nothing, so neither counts. A reply's own count stays 0.
6. A reply's event carries its parent's body with the summary, read by the
   parent's key with it: a live search shows every event of the thread of a post it
   matches (post_words.py, on live searches), and judges that, for each search, by the
   event alone. Other events, and lists of posts, have their bodies already and read
   none.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Collection, Iterable, Sequence
from dataclasses import replace
from functools import cache
from typing import Any

from sqlalchemy import BindParameter, ColumnElement, bindparam, false, func, update
from sqlalchemy.orm import aliased
from sqlmodel import Session, col, select
from sqlmodel.sql.expression import Select

from feed.models import EventKind, Post
from feed.values import FeedEvent, PostView, Thread

# The repliers a summary names, newest first.
REPLIERS = 3
# The newest live replies of a thread walked for its repliers (4): enough that a
# busy thread's last few people are among them, few enough to read in well under a
# millisecond inside the writers' lock.
WALK = 300
# The posts whose summaries are read, as one bound array (``statements``).
POSTS: BindParameter[Any] = bindparam("posts")
# The same, as a list for ``IN`` on any store.
IDS: BindParameter[Any] = bindparam("ids", expanding=True)
# New replies added to their parent's stored count on SQLite (5): once per parent.
COUNT_NEW = "UPDATE posts SET reply_count = reply_count + ? WHERE id = ?"


def summaries(
    session: Session, post_ids: Collection[int], *, bodies_of: Collection[int] = ()
) -> dict[int, Thread]:
    """The reply summary of each of ``post_ids`` that has live replies (2): its stored
    count (5), and at most ``REPLIERS`` names each read back, found among the newest
    ``WALK`` replies (4), however many people replied. Those of ``bodies_of`` carry
    their post's body too (6)."""
    if not post_ids:
        return {}
    counts, latest = statements(post_ids)
    found = session.exec(counts).all()
    if not any(count for _, count in found):
        return {}
    kept = session.exec(bodies(bodies_of)).all() if bodies_of else ()
    return from_rows(found, session.exec(latest).all(), kept)


def statements(
    post_ids: Collection[int] | None,
) -> tuple[Select[Any, Any], Select[Any, Any]]:
    """The two queries of ``summaries``: the stored count of live replies of each of
    ``post_ids`` (5), and the latest repliers of each among its newest replies (4), newest
    first. ``None``: of the posts in the array bound as ``POSTS``, on PostgreSQL, so
    that their text is the same for any posts and is compiled once (storage/loop_writer.py,
    on keyed posts and replies on the loop too). Built once each way: building them
    cost more than running them on a short thread."""
    if post_ids is None:
        return _built(array=True)
    ids = {IDS.key: sorted(post_ids)}
    counts, latest = _built(array=False)
    return counts.params(ids), latest.params(ids)


def bodies(post_ids: Collection[int] | None) -> Select[Any, Any]:
    """The bodies of ``post_ids`` (6): replies' parents. ``None``: of the posts in the
    array bound as ``POSTS``, as ``statements``."""
    if post_ids is None:
        return _bodies(array=True)
    return _bodies(array=False).params({IDS.key: sorted(post_ids)})


def _of(column: Any, *, array: bool) -> ColumnElement[bool]:
    return column == func.any(POSTS) if array else col(column).in_(IDS)


@cache
def _bodies(*, array: bool) -> Select[Any, Any]:
    return select(Post.id, Post.body).where(_of(Post.id, array=array))


@cache
def _built(*, array: bool) -> tuple[Select[Any, Any], Select[Any, Any]]:
    def of(column: Any) -> ColumnElement[bool]:
        return _of(column, array=array)

    thread, walked, reply = aliased(Post), aliased(Post), aliased(Post)
    # Each thread's count, as stored with its post (5).
    counts = select(thread.id, thread.reply_count).where(of(thread.id))
    # The newest WALK live replies of each thread, walked down the index from its
    # newest (4), and read by their ids.
    walk = (
        select(walked.id)
        .where(col(walked.parent_id) == thread.id, _live(walked))
        .order_by(col(walked.id).desc())
        .limit(WALK)
    )
    # Each replier's newest reply among them, ranked per thread: only the top few
    # leave the database.
    newest = (
        select(reply.parent_id, reply.author, func.max(reply.id).label("newest"))
        .select_from(thread)
        .join(reply, col(reply.id).in_(walk))
        .where(of(thread.id))
        .group_by(col(reply.parent_id), col(reply.author))
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


def count_new(cursor: sqlite3.Cursor, parents: Iterable[int | None]) -> None:
    """Add the new replies to ``parents`` (None: a top-level post) to their stored
    counts, on SQLite's own cursor (5)."""
    added = Counter(parent for parent in parents if parent is not None)
    if added:
        cursor.executemany(COUNT_NEW, [(n, parent) for parent, n in sorted(added.items())])


def reply_deleted(session: Session, parent: int) -> None:
    """Take a reply just deleted off its parent's stored count (5)."""
    less = col(Post.reply_count) - 1
    session.exec(update(Post).where(col(Post.id) == parent).values(reply_count=less))


def _live(posts: type[Post]) -> ColumnElement[bool]:
    # ``= false``, not ``IS false``, which PostgreSQL cannot look up in an index (4).
    return col(posts.deleted) == false()


def from_rows(
    counts: Iterable[Sequence[Any]],
    latest: Iterable[Sequence[Any]],
    bodies: Iterable[Sequence[Any]] = (),
) -> dict[int, Thread]:
    """The summaries from the rows ``statements``' queries read, and ``bodies``'."""
    found = {parent: Thread(parent, count, ()) for parent, count in counts if count}
    names: dict[int, list[str]] = {}
    for parent, author in latest:
        names.setdefault(parent, []).append(author)
    kept = {post: body for post, body in bodies}
    return {
        parent: replace(thread, repliers=tuple(names.get(parent, ())), body=kept.get(parent))
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
    return with_found(events, summaries(session, posts, bodies_of=parents(events)))


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


def parents(events: Iterable[FeedEvent]) -> set[int]:
    """The posts whose bodies ``with_threads`` reads for ``events`` (6): replies'
    parents."""
    return {post.parent for post in (e.post for e in events) if post and post.parent}


def _with_thread(event: FeedEvent, threads: dict[int, Thread]) -> FeedEvent:
    post = event.post
    if post is None:
        return event
    if post.parent is None:
        return replace(event, post=summarised(post, threads))
    thread = threads.get(post.parent, Thread(post.parent, 0, ()))
    return replace(event, thread=thread)
