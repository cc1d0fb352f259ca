"""A thread's stream, ``GET /events?thread=ID``: which thread it follows, and what a
deleted post's thread still has to give.

The stream itself is stream.py's; this module decides what it follows.

Rationale:

1. ``thread=ID`` follows one thread: the top-level post ``ID``'s own events and its
   replies', in its channel, with resume as every stream (events.py, on threads). A
   thread one may not read is the same 404 as a post that does not exist, whatever
   the resume id, and so is a reply's id: it is no thread. A deleted post's is one
   only to a client that missed its end (2). It carries no personal events: a
   reader's mentions and read positions are about other posts, and its replay
   (storage/history.py) holds the thread's events only.
2. On a deleted post's thread. Its ``post-deleted`` is its last event, and the
   stream ends right after writing it: nothing more will come, and a client that
   reconnects is answered 404, at which an EventSource stops. The hub ends the
   streams that get it live (events.py, on a thread's end); a client that was away
   resumes as it would have stayed: from an id before the tombstone, its replay
   brings what it missed and ends with the tombstone (storage/threads.py, on
   deleting), and then the stream ends as the live one does. Opened afresh, or
   resumed from the tombstone on, there is nothing left to get: a 404, as for no
   post. The tombstone is looked up only once the reader is known to read the
   thread, so to anyone else the answer is still that of a post that never was.
3. On a deletion while the stream opens. The post is read before the stream joins
   the hub, and a deletion handed to the hub in between would reach neither: a
   fresh stream would sit live on a deleted thread. So once it has joined (and
   planned its replay: resume.py), the stream asks the database for the tombstone
   again (``end_of``), before its status line. One committed by then is there: a
   404 for a fresh stream or one resumed from the tombstone on; for one resumed from
   before it, the id its replay (or, if this process has yet to deliver it, the hub)
   brings last, after which the stream ends. One committed later is handed to the
   hub after the stream joined, and comes live. One indexed read per thread's stream.
"""

from __future__ import annotations

from starlette.datastructures import QueryParams

from feed import inputs
from feed.errors import ClientError
from feed.limits import MAX_POST_ID
from feed.permissions import Permissions
from feed.runtime import Runtime
from feed.store import PostNotFound
from feed.values import PostView


async def thread_of(
    rt: Runtime, perms: Permissions, query: QueryParams, resume_id: int | None
) -> PostView | None:
    """The thread a stream follows (1), or None for a stream of channels; a deleted
    post's only for a client resuming from before its tombstone (2)."""
    found = inputs.number(query.get("thread"), "The parameter 'thread'", low=1, high=MAX_POST_ID)
    if found is None:
        return None
    if query.getlist("channel"):
        raise ClientError(400, "A thread's stream follows its own channel: send no channel.")
    missing = ClientError(404, f"There is no post with id {found}.", found)
    try:
        post = await rt.store.get_post(found, private=perms.private_readable())
    except PostNotFound:
        raise missing from None
    if not perms.may_read(post.channel) or post.parent is not None:
        raise missing
    if post.deleted and not await _missed_tombstone(rt, post.id, resume_id):
        raise missing
    return post


async def _missed_tombstone(rt: Runtime, post_id: int, resume_id: int | None) -> bool:
    """Whether a client resuming from ``resume_id`` has yet to get the tombstone of
    the deleted post ``post_id`` (2)."""
    if resume_id is None:
        return False
    tombstone = await rt.store.tombstone_event(post_id)
    return tombstone is not None and resume_id < tombstone


async def end_of(rt: Runtime, post_id: int, resume_id: int | None) -> int | None:
    """For a stream of the thread ``post_id`` that has joined the hub (3): the id of
    the tombstone its replay ends with, or None while the post lives. A 404 if the
    client opened afresh or resumes from the tombstone on (2)."""
    tombstone = await rt.store.tombstone_event(post_id)
    if tombstone is None:
        return None
    if resume_id is None or resume_id >= tombstone:
        raise ClientError(404, f"There is no post with id {post_id}.", post_id)
    return tombstone
