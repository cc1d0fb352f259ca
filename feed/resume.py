"""Where a resuming stream starts: the replay of what it missed, a piece at a time, or
one ``resync`` when that is too much or cannot be known.

Rationale:

1. A resume id beyond the newest event, or one the log does not hold, means the log
   this client saw is not ours (a restored or replaced database; storage/log.py, on ids
   never reused): it gets ``resync``, never silence.
2. A replay is decided before the status line: the count of missed events (too many
   means ``resync``) and its first page come from the database then, so an outage
   answers 503 instead of a stream cut short. The first piece goes out with the
   opening; the rest follows piece by piece before the stream goes live (replays.py,
   on pieces), and the id filter drops the live events it already covered.
3. A channel the stream follows that was made private or public after the resume id
   (storage/history.py, on channels changed while away), or a channel given to its
   reader or taken away (storage/grants.py, on memberships changed while away),
   changed what the client's list should hold in a way no replayed event shows: a
   ``resync`` with no id comes first, as a live stream gets one (watch.py), and the
   replay follows. A thread's stream and a stream of one kind of personal event show
   no such list.
4. A replay ends with the position it reached (a message with only an ``id:``) when
   its last event is older than that, as a new stream begins with one: what came
   meanwhile was not this stream's. Its next resume starts there, so it neither reads
   the same stretch of the log again nor, if it was told to reload (3), is told again
   at every reconnect until an event of its own comes. Not on the pages' streams
   (HTML): a page learns a message's id from the EventSource's last id moving
   (feed-tabs.js), which an id-only message would move unseen, and a page told to
   reload re-fetches its list, which brings its position.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.types import Send

from feed.identity import Identity
from feed.permissions import grantee
from feed.replays import Cursor
from feed.runtime import Runtime
from feed.sse import Format, position, resync_frame
from feed.subscribers import Subscriber


async def replay(
    rt: Runtime, sub: Subscriber, resume_id: int, client: str
) -> tuple[bytes, Cursor | None]:
    """What a resuming client missed: the first piece of its replay and a cursor over
    the rest (replays.py), or one ``resync`` if that is too much or unknowable.
    ``client``: its address, whose turns its questions and pieces take (replays.py,
    on turns per client).

    Called right after the subscriber joined the hub, before any await: the relay's
    delivered id read here is the one the shared replay's key needs (replays.py). What
    it reads from the database it reads before the status line (2)."""
    delivered = rt.relay.delivered
    async with rt.replays.turns.turn(client):
        planned = await _plan(rt, sub, resume_id, delivered)
        why = await _changed(rt, sub, planned) if isinstance(planned, Cursor) else None
    if isinstance(planned, Cursor):
        planned.client = client
        told = b"" if why is None else resync_frame(sub.format, None, why)  # (3)
        return told + await _replayed(rt, sub, planned), planned
    reason, latest = planned
    rt.metrics.resyncs.inc()
    sub.last_id = max(sub.last_id, latest)
    return resync_frame(sub.format, latest, reason), None


async def _plan(
    rt: Runtime, sub: Subscriber, resume_id: int, delivered: int
) -> Cursor | tuple[str, int]:
    """The cursor of the replay, or why it is a ``resync`` instead and the id it
    reaches (1)."""
    limit = rt.settings.replay_limit
    # The database is asked only when this process may not have seen the id yet.
    latest = delivered if resume_id <= delivered else await rt.store.latest_event_id()
    if resume_id > latest:
        return f"event {resume_id} is newer than this feed's newest ({latest}); reload", latest
    if not await rt.replays.has_event(resume_id):
        reason = f"event {resume_id} is not in this feed's log (was it restored?); reload"
        return reason, max(latest, await rt.store.latest_event_id())
    # Only a reader with personal events in the range needs pages of their own.
    if sub.only:
        person = sub.person
    else:
        person = await rt.replays.personal(sub.person, resume_id, delivered)
    cursor = Cursor(
        sub.format,
        resume_id,
        sub.channels,
        sub.private,
        delivered,
        # What this process has not delivered yet comes live (replays.py, on where
        # a replay ends), even past an id another process handed out.
        max(resume_id, delivered),
        sub.limit,
        person,
        sub.only,
        sub.thread,
        sub.search,
    )
    if await rt.replays.count(cursor, limit + 1) <= limit:
        return cursor
    reason = f"more than {limit} events were missed; reload"
    return reason, max(latest, await rt.store.latest_event_id())


async def _changed(rt: Runtime, sub: Subscriber, cursor: Cursor) -> str | None:
    """Why the client must re-fetch its list before its replay (3), if it must."""
    if sub.thread is not None or sub.only is not None:
        return None
    after = cursor.after
    if await rt.replays.channels_changed(cursor):
        return f"a channel this stream follows changed after event {after}; reload"
    member = grantee(sub.who) if isinstance(sub.who, Identity) else None
    if member is not None and await rt.replays.memberships_changed(member, after):
        return f"the channels {member!r} may read changed after event {after}; reload"
    return None


async def _replayed(rt: Runtime, sub: Subscriber, cursor: Cursor) -> bytes:
    """The cursor's next piece, now counted as sent to ``sub``."""
    cursor.follow(sub.private)  # its access as it is now (replays.py, on where it ends)
    sent = cursor.sent
    piece = await rt.replays.next_piece(cursor)
    sub.sent += cursor.sent - sent
    sub.last_id = max(sub.last_id, cursor.after)
    if cursor.done:
        rt.metrics.replayed.observe(cursor.sent)
        if cursor.upto > cursor.after and sub.format is not Format.HTML:
            sub.last_id = max(sub.last_id, cursor.upto)
            piece += position(cursor.upto)  # (4)
    return piece


async def replay_rest(
    rt: Runtime, sub: Subscriber, cursor: Cursor, send: Send, gone: Callable[[], bool]
) -> None:
    """The replay after its first piece, a piece at a time (replays.py, on pieces).

    ``send`` waits until the connection has taken the piece before, so a client that
    does not read holds this stream here, with one piece; the live events that arrive
    meanwhile wait in its backlog, which drops the client if they overflow it. Once a
    client has left (``gone``), ``send`` would return at once: the rest is not read
    and rendered for nobody."""
    while not cursor.done and not sub.closed and not gone():
        piece = await _replayed(rt, sub, cursor)
        await send({"type": "http.response.body", "body": piece, "more_body": True})
    if not cursor.done:
        # Ended mid-replay (its age, a shutdown): the live events waiting are newer than
        # what the replay has not sent yet, so sending them would move the client's
        # last id past those. Its resume from the replay's last id brings all of them.
        sub.discard()
