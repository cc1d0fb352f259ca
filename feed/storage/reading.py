"""Read state: how far each identity has read each channel, what it has not read yet,
and the posts that mention it.

Rationale:

1. Personal events. Moving a read position writes an ``events`` row addressed to that
   identity (``recipient``), in the same transaction, and the store announces it like
   any other (announcements.py, on the commit announcement): the person's other
   tabs and devices hear of it on their streams, and nobody else's do (history.py, on
   personal events; events.py, on personal events). The event carries no copy of the
   position: it is read as it is now, as a post is (log.py, on the current state).
2. Forward only, and onto the channel's own events. A position only moves forward (a
   late request from a tab that saw less does not undo another's reading), and only
   onto an event of its channel: ``up_to`` is taken as the channel's newest event at
   or before it (for everyone, or a mention of the reader). So a client cannot mark as
   read what does not exist yet, and each move, which writes an event, needs an event
   of the channel that only posting makes: a client cannot make the log grow by
   marking (ids one by one would each move the position), only by posting. The counts
   are the same either way, no event of the channel lying in between. Whether a mark
   moves anything is read first, so one that does not takes no turn at writing.
3. On mentions. Each post writes one personal ``mention`` event for each identity it
   mentions (mentions.py), in the post's transaction and just before the post's own
   event: a mention is read once its channel is read up to its post. An edit tells
   only the names it adds. Who may read the channel is checked when mentions are
   read, never when written: a mention in a private channel is not shown or counted
   for someone who cannot read it, and is, once they may. So is whether the post
   still mentions the name, by its mark in the post's HTML as it is now (mentions.py,
   on finding them in the HTML): a name edited out is no longer counted or listed,
   and counts again if edited back in (it is not told again).
4. What counts as unread: new posts and replies (``post-created``, ``reply-created``)
   in the channels the reader may read, after their position there, neither deleted
   nor their own. A reply is news to its channel's readers as a post is; a page
   reports one read once the card it went under has been seen since it came
   (``reply_events``; feed-unread.js, on read means seen).
5. Counts stop at ``COUNT_CAP``. Every open dashboard asks for its counts again after
   new posts, so a count must cost the same whether its reader is ten posts behind or
   a million (a newcomer starts at the beginning of every channel): each channel's
   count reads at most ``COUNT_CAP + 1`` events from its position on, by the index of
   events by channel, and a count of ``COUNT_CAP`` means "that many or more".
6. A page's posts' events (``created_events``, ``reply_events``) are read in the page's
   own snapshot, with its list and its position (lists.py, on a page's posts' events),
   and looked up by the index of events by post (migration 0018_events_by_post):
   every dashboard and every page of older posts asks for them, so they must cost the
   same however long the log. Without it, each read the whole events table: 40 ms for
   a page at 330,000 events on SQLite, growing with every post.
7. The other way round, from events to their posts (the unread counts, mentions),
   the join goes by the post's key and never by that index (history.py, on events'
   posts).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from sqlalchemy import func, or_
from sqlmodel import Session, col, select
from sqlmodel.sql.expression import Select

from feed.mentions import mark as mention_mark
from feed.models import Channel, Event, EventKind, Post, ReadPosition
from feed.storage import tallies, threads
from feed.storage.channels import find_channel
from feed.storage.engine import in_thread, now
from feed.storage.history import event_post, holds, readable
from feed.storage.log import EventLog, Q
from feed.values import FeedEvent, Mention, ReadMark, Unread, _post_view

UNREAD_KINDS = (EventKind.POST_CREATED.value, EventKind.REPLY_CREATED.value)  # (4)
COUNT_CAP = 1000  # (5)


class Reading(EventLog):
    """The store's read positions and mentions."""

    @in_thread
    def mark_read(self, name: str, channel: str, up_to: int) -> ReadMark:
        """Move ``name``'s position in ``channel`` forward, to the channel's newest event
        at or before ``up_to`` (2)."""
        with self._read() as session:
            stays = _stays(session, name, find_channel(session, channel), up_to)
        if stays is not None:
            return stays
        with self._write() as session:
            return self._move(session, name, find_channel(session, channel), up_to)

    @in_thread
    def mark_all_read(self, name: str, channels: Sequence[str]) -> list[ReadMark]:
        """Move ``name``'s position in each of ``channels`` to its newest event."""
        query = select(Channel).where(col(Channel.name).in_(channels))
        with self._read() as session:
            found = sorted(session.exec(query).all(), key=_name)
            stay = [_stays(session, name, c, None) for c in found]
        if all(mark is not None for mark in stay):
            return [mark for mark in stay if mark is not None]
        with self._write() as session:
            found = sorted(session.exec(query).all(), key=_name)
            return [self._move(session, name, c, None) for c in found]

    def _move(self, session: Session, name: str, channel: Channel, up_to: int | None) -> ReadMark:
        assert channel.id is not None
        kept = _kept(session, name, channel.id)
        at = 0 if kept is None else kept.event_id
        up_to = _reachable(session, name, channel.id, up_to)
        if at >= up_to:
            return ReadMark(channel.name, at, None)  # forward only (2)
        if kept is None:
            session.add(ReadPosition(name=name, channel_id=channel.id, event_id=up_to))
        else:
            kept.event_id = up_to
        row = Event(
            kind=EventKind.READ_POSITION.value,
            channel_id=channel.id,
            post_id=None,
            created_at=now(),
            recipient=name,
        )
        session.add(row)
        session.flush()
        assert row.id is not None
        event = FeedEvent(
            row.id,
            EventKind.READ_POSITION,
            channel.name,
            None,
            at=row.created_at,
            private=channel.private,
            recipient=name,
            read_up_to=up_to,
        )
        self._noted(session, [event])
        return ReadMark(channel.name, up_to, row.id)

    @in_thread
    def unread(
        self, name: str, channels: Collection[str], *, private: Collection[str] | None
    ) -> list[Unread]:
        """What ``name`` has not read in each of ``channels`` (4), and the mentions of
        it there (3); ``private``: the private channels it may read."""
        with self._read() as session:
            found = session.exec(
                select(Channel.id, Channel.name, ReadPosition.event_id)
                .outerjoin(
                    ReadPosition,
                    (col(ReadPosition.channel_id) == col(Channel.id))
                    & (col(ReadPosition.name) == name),
                )
                .where(col(Channel.name).in_(sorted(channels)))
                .order_by(col(Channel.name))
            ).all()
            return [
                Unread(
                    channel,
                    _count(session, name, channel_id, position or 0, private, mentions=False),
                    _count(session, name, channel_id, position or 0, private, mentions=True),
                    position or 0,
                )
                for channel_id, channel, position in found
                if channel_id is not None
            ]

    @in_thread
    def has_personal_after(self, name: str, after: int) -> bool:
        """Whether ``name`` has any personal event after ``after`` (replays.py, on
        personal events)."""
        query = select(Event.id).where(col(Event.recipient) == name, col(Event.id) > after)
        with self._read() as session:
            return session.exec(query.limit(1)).first() is not None

    @in_thread
    def mentions(
        self,
        name: str,
        channels: Collection[str],
        *,
        private: Collection[str] | None,
        before: int | None = None,
        limit: int = 50,
    ) -> list[Mention]:
        """The posts that mention ``name`` in ``channels``, newest first; ``before`` is
        a mention's event id to page back from (3)."""
        query = _personal(
            select(Event.id, Post, Channel.name, ReadPosition.event_id),
            name,
            channels,
            private,
            EventKind.MENTION,
        )
        if before is not None:
            query = query.where(col(Event.id) < before)
        query = query.order_by(col(Event.id).desc()).limit(limit)
        with self._read() as session:
            rows = [row for row in session.exec(query).all() if row[0] is not None]
            # With their replies and reactions, as every list of posts.
            views = threads.with_summaries(session, [_post_view(r[1], r[2]) for r in rows])
            views = tallies.with_counts(session, views)
        return [
            Mention(event_id, view, event_id > (position or 0))
            for (event_id, _, _, position), view in zip(rows, views, strict=True)
        ]


def _reachable(session: Session, name: str, channel_id: int, up_to: int | None) -> int:
    """The newest event of the channel at or before ``up_to`` (None: of all) that
    ``name``'s position may be at: one for everyone, or a mention of ``name`` (2); 0 if
    none."""
    newest = select(func.max(Event.id)).where(
        col(Event.channel_id) == channel_id,
        or_(
            col(Event.recipient).is_(None),
            (col(Event.recipient) == name) & (col(Event.kind) == EventKind.MENTION.value),
        ),
    )
    if up_to is not None:
        newest = newest.where(col(Event.id) <= up_to)
    return session.exec(newest).one() or 0


def _kept(session: Session, name: str, channel_id: int) -> ReadPosition | None:
    query = select(ReadPosition).where(
        ReadPosition.name == name, ReadPosition.channel_id == channel_id
    )
    return session.exec(query).first()


def _stays(session: Session, name: str, channel: Channel, up_to: int | None) -> ReadMark | None:
    """``name``'s mark in ``channel`` as it is, if moving it to ``up_to`` would not move
    it (2); None if it would."""
    assert channel.id is not None
    kept = _kept(session, name, channel.id)
    at = 0 if kept is None else kept.event_id
    if at >= _reachable(session, name, channel.id, up_to):
        return ReadMark(channel.name, at, None)
    return None


def _name(channel: Channel) -> str:
    return channel.name


def _personal(
    query: Q,
    name: str,
    channels: Collection[str],
    private: Collection[str] | None,
    kind: EventKind,
) -> Q:
    """``query`` over events of ``kind`` in ``channels`` that count for ``name`` (3, 4),
    joined with their post and ``name``'s position in their channel."""
    query = (
        query.select_from(Event)
        .join(Channel, col(Channel.id) == col(Event.channel_id))
        .join(Post, event_post())
        .outerjoin(
            ReadPosition,
            (col(ReadPosition.channel_id) == col(Event.channel_id))
            & (col(ReadPosition.name) == name),
        )
        .where(col(Event.kind) == kind.value, col(Post.deleted).is_(False))
        .where(col(Channel.name).in_(sorted(channels)))
    )
    if kind is EventKind.MENTION:
        query = query.where(col(Event.recipient) == name, holds(Post.html, mention_mark(name)))
    else:
        query = query.where(col(Event.recipient).is_(None), col(Post.author) != name)
    return readable(query, private)


def _count(
    session: Session,
    name: str,
    channel_id: int,
    position: int,
    private: Collection[str] | None,
    *,
    mentions: bool,
) -> int:
    """What ``name`` has not read of one channel after ``position``, up to the cap (5)."""
    kinds = (EventKind.MENTION.value,) if mentions else UNREAD_KINDS
    events = (
        select(Event.id)
        .join(Channel, col(Channel.id) == col(Event.channel_id))
        .join(Post, event_post())
        .where(col(Event.id) > position)
        .where(col(Event.kind).in_(kinds), col(Post.deleted).is_(False))
    )
    if mentions:
        # A person's mentions are few beside a channel's events: "+ 0" keeps SQLite from
        # walking the channel's index, so it reads the recipient's instead.
        events = events.where(col(Event.recipient) == name)
        events = events.where(col(Event.channel_id) + 0 == channel_id)
        events = events.where(holds(Post.html, mention_mark(name)))
    else:
        events = events.where(col(Event.channel_id) == channel_id)
        events = events.where(col(Event.recipient).is_(None), col(Post.author) != name)
    bounded = readable(events, private).limit(COUNT_CAP).subquery()
    return session.exec(select(func.count()).select_from(bounded)).one()


def created_events(session: Session, post_ids: Collection[int]) -> dict[int, int]:
    """The id of the event that made each of ``post_ids``: pages give it to each post
    they show, which the page reports as read (``mark_read``). Read in the page's own
    snapshot (6)."""
    return _by_post(session, created_events_query(post_ids)) if post_ids else {}


def reply_events(session: Session, post_ids: Collection[int]) -> dict[int, int]:
    """The id of the event that made the newest live reply to each of ``post_ids``
    that has one: a page gives it to the post's card, and reports it read once the card
    has been seen (4). Read in the page's own snapshot (6)."""
    return _by_post(session, reply_events_query(post_ids)) if post_ids else {}


def _by_post(session: Session, query: Select[Any, Any]) -> dict[int, int]:
    return {
        post: event
        for post, event in session.exec(query).all()
        if post is not None and event is not None
    }


def created_events_query(post_ids: Collection[int]) -> Select[Any, Any]:
    """Each post's own ``post-created`` event, found by the events' index by post (6)."""
    return select(Event.post_id, Event.id).where(
        col(Event.kind) == EventKind.POST_CREATED.value,
        col(Event.post_id).in_(sorted(post_ids)),
    )


def reply_events_query(post_ids: Collection[int]) -> Select[Any, Any]:
    """The newest live reply's ``reply-created`` event under each post: its replies by
    the index of replies, then their events by the events' index by post (6)."""
    return (
        select(Post.parent_id, func.max(Event.id))
        .join(Post, col(Post.id) == col(Event.post_id))
        .where(
            col(Event.kind) == EventKind.REPLY_CREATED.value,
            col(Post.parent_id).in_(sorted(post_ids)),
            col(Post.deleted).is_(False),
        )
        .group_by(col(Post.parent_id))
    )
