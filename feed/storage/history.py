"""The log read back for a reader: the events after an id that a reader may see, with
their posts as they are now, and the SQL filter every read for a reader goes through.

Rationale:

1. Reads for a reader. Every read for a reader filters private channels in SQL, against
   the channels as they are in that very query (``readable``): the channel map behind
   permission checks (access.py) may be a second old, and a channel made private
   within that second must not show its events or posts to someone who may not read
   it. Callers pass the private channels the reader may read.
2. Personal events. An event with a ``recipient`` is for that identity alone (read
   positions, mentions: reading.py). Every read leaves out everyone else's, in SQL
   like the private channels (1), unless it asks for ``EVERYONE``: only the relay,
   which reads for the hub, does, and the hub addresses them (events.py, on personal
   events). That is not the same as reading every private channel (an admin does):
   an admin's stream gets no one else's read positions.
   A person's own events are read whatever channels the stream follows, as long as
   the reader may read their channel.
   The index of personal events holds those alone (migration
   0019_personal_events_index): a person's replay reads the log in order from its
   position and stops at its limit, however far back the position is. When that
   index held every event, SQLite read it twice, once for the shared events and
   once for the person's, and sorted all it found before the limit applied.
3. Events' posts. A read of the log starts from a position and looks each event's
   post up by the post's key (``event_post``). The index of events by post is for
   the other way, from posts to their events (reading.py, on a page's posts'
   events); the join says ``post_id + 0`` so that it is never a way into a read of
   the log. Given it, PostgreSQL merged the events in post order with the posts in
   key order for an unread count half-way through 300,000 events, and read 151,001
   posts to count 1,000: 30 ms, against 1 ms from the position.
4. Mentions as they are now. A ``mention`` event is read back, in a replay as by the
   relay, only while its post's HTML still holds the mark of its person
   (mentions.py, on finding them in the HTML), as its post is read as it is now
   (log.py, on the current state): a name edited out is no mention to replay, and
   the unread counts and lists leave it out alike (reading.py, on mentions). The
   mark is written from the event's recipient, which is always a name the parser
   marked, so it needs no escaping.
5. Channels changed while a stream was away. A replay reads with the channels as
   they are now (1): a channel made private since the resume id is left out, though
   the page still shows the posts it had; one made public brings its new events,
   but not the older posts the page never had. So a channel keeps the id of the
   event that last made it private or public (``privacy_event``, migration
   0020_access_changes), and a stream that follows one changed after its resume id,
   public now or private and not its reader's, is told to re-fetch its list
   (resume.py). A reader of a private channel reads it either way, and a reader of
   every channel (an admin) is never told. The channels table is small: the question
   reads no event.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from enum import Enum
from typing import Any

from sqlalchemy import Boolean, ColumnElement, func, literal, or_
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement
from sqlmodel import col, select
from sqlmodel.sql.expression import Select as ModelSelect

from feed.mentions import MARK_END, MARK_START
from feed.models import Channel, Event, EventKind, Post, ReadPosition
from feed.storage import tallies, threads
from feed.storage.engine import in_thread
from feed.storage.log import EventLog, Q
from feed.values import FeedEvent, _feed_event


class Everyone(Enum):
    """Every identity's personal events, read for the hub, which addresses them (2)."""

    EVERYONE = "everyone"


EVERYONE = Everyone.EVERYONE


class History(EventLog):
    """The store's reads of the log for a reader."""

    @in_thread
    def newest_events(self, limit: int) -> tuple[list[FeedEvent], int]:
        """The newest ``limit`` events for everyone (no personal ones: 2), oldest first,
        and the id the log ends at, from one snapshot (log.py, on one snapshot). Ids
        have gaps (log.py, on ids never reused): count rows, not ids."""
        query = _events_after(0, None, None).order_by(col(Event.id).desc()).limit(limit)
        with self._snapshot() as session:
            rows = session.exec(query).all()
            events = [_feed_event(*row) for row in reversed(rows)]
            events = tallies.on_events(session, threads.with_threads(session, events))
            return events, session.exec(select(func.max(Event.id))).one() or 0

    @in_thread
    def has_event(self, event_id: int) -> bool:
        """Whether ``event_id`` is in the log (0, the start of the log, always is)."""
        if event_id == 0:
            return True
        with self._read() as session:
            return session.get(Event, event_id) is not None

    @in_thread
    def events_after(
        self,
        after: int,
        channels: Sequence[str] | None = None,
        *,
        limit: int = 1000,
        private: Sequence[str] | None = None,
        person: str | Everyone | None = None,
        kinds: Sequence[str] | None = None,
        thread: int | None = None,
    ) -> list[FeedEvent]:
        """Events with id > ``after``, oldest first, at most ``limit`` of them.

        ``private`` names the private channels the reader may see; None: all of them.
        ``person`` is the reader, whose personal events are read with the shared ones,
        and nobody else's; None: nobody's; ``EVERYONE``: all of them, for the hub (2).
        ``kinds``: only those. ``thread``: only the events of that top-level post and
        of its replies."""
        query = _events_after(after, channels, private, person, kinds, thread)
        query = query.order_by(col(Event.id)).limit(limit)
        with self._read() as session:
            events = [_feed_event(*row) for row in session.exec(query).all()]
            # Posts with their replies and reactions as they are now (threads.py,
            # tallies.py).
            return tallies.on_events(session, threads.with_threads(session, events))

    @in_thread
    def count_events_after(
        self,
        after: int,
        channels: Sequence[str] | None = None,
        *,
        limit: int,
        private: Sequence[str] | None = None,
        person: str | Everyone | None = None,
        kinds: Sequence[str] | None = None,
        thread: int | None = None,
    ) -> int:
        """How many events ``events_after`` would return with the same arguments, without
        reading them: a replay knows whether it is too long before it starts."""
        ids = _readable_after(select(Event.id), after, channels, private, person, kinds)
        if thread is not None:
            ids = _in_thread(ids.outerjoin(Post, event_post()), thread)
        found = ids.order_by(col(Event.id)).limit(limit).subquery()
        with self._read() as session:
            return session.exec(select(func.count()).select_from(found)).one()

    @in_thread
    def channels_changed_after(
        self,
        after: int,
        channels: Sequence[str] | None = None,
        *,
        private: Sequence[str] | None = None,
    ) -> bool:
        """Whether a channel in ``channels`` (None: any) was made private or public after
        event ``after``, leaving out the private channels the reader may read
        (``private``; None: all of them, so none counts): a replay leaves out what a
        channel made private showed, and lacks the older posts of one made public (5)."""
        if private is None:
            return False  # a reader of every channel: a replay shows it all either way
        changed = col(Channel.privacy_event)
        query = select(Channel.id).where(changed.is_not(None), changed > after)
        if channels is not None:
            query = query.where(col(Channel.name).in_(channels))
        query = query.where(or_(col(Channel.private).is_(False), col(Channel.name).not_in(private)))
        with self._read() as session:
            return session.exec(query.limit(1)).first() is not None


def event_post() -> ColumnElement[bool]:
    """An event's post, looked up by the post's key from the event (3)."""
    return col(Post.id) == col(Event.post_id) + 0


def readable(query: Q, private: Collection[str] | None) -> Q:
    """``query``, joined with its channels, narrowed to what a reader of the private
    channels ``private`` (None: all of them) may see, as the channels are now (1)."""
    if private is None:
        return query
    allowed = col(Channel.name).in_(sorted(private))
    return query.where(or_(col(Channel.private).is_(False), allowed))


def _readable_after(
    query: Q,
    after: int,
    channels: Sequence[str] | None,
    private: Sequence[str] | None,
    person: str | Everyone | None = None,
    kinds: Sequence[str] | None = None,
) -> Q:
    """``query`` narrowed to the events after ``after`` in ``channels`` (None: all) that a
    reader of the private channels ``private`` (None: all) may see: shared events and
    ``person``'s own (2); only ``kinds``, if given."""
    query = query.join(Channel, col(Channel.id) == col(Event.channel_id))
    query = query.where(col(Event.id) > after)
    shared = col(Event.recipient).is_(None)
    if channels is not None:
        # A person's own events follow them on every stream (events.py, on personal events).
        query = query.where(col(Channel.name).in_(channels) | col(Event.recipient).is_not(None))
    if person is None:
        query = query.where(shared)
    elif not isinstance(person, Everyone):
        query = query.where(shared | (col(Event.recipient) == person))
    if kinds is not None:
        query = query.where(col(Event.kind).in_(kinds))
    return readable(query, private)


def _in_thread(query: Q, thread: int) -> Q:
    """``query`` (joined with the events' posts) narrowed to one thread: the top-level
    post ``thread`` and its replies."""
    return query.where(or_(col(Event.post_id) == thread, col(Post.parent_id) == thread))


def _events_after(
    after: int,
    channels: Sequence[str] | None,
    private: Sequence[str] | None,
    person: str | Everyone | None = None,
    kinds: Sequence[str] | None = None,
    thread: int | None = None,
) -> ModelSelect[Event, Post, Channel, int | None]:
    """Events after ``after``, each with its post and channel as they are now (log.py, on
    the current state), and a
    read position's current place, that a reader may see (``_readable_after``); of one
    ``thread`` only, if given."""
    query = _readable_after(
        select(Event, Post, Channel, ReadPosition.event_id),
        after,
        channels,
        private,
        person,
        kinds,
    )
    query = query.outerjoin(Post, event_post())
    # A mention is read only while its post still mentions its person (4).
    marked = holds(Post.html, literal(MARK_START) + col(Event.recipient) + literal(MARK_END))
    query = query.where(or_(col(Event.kind) != EventKind.MENTION.value, marked))
    # A read position is shown where it is now, as a post is (log.py, on the current state).
    query = query.outerjoin(
        ReadPosition,
        (col(ReadPosition.name) == col(Event.recipient))
        & (col(ReadPosition.channel_id) == col(Event.channel_id))
        & (col(Event.kind) == EventKind.READ_POSITION.value),
    )
    return query if thread is None else _in_thread(query, thread)


class holds(FunctionElement[bool]):
    """Whether a text holds a string, case and all: SQLite's ``LIKE`` ignores the case
    of ASCII letters, and "@Bob" is not a mention of "bob" (4)."""

    type = Boolean()
    inherit_cache = True
    name = "holds"


@compiles(holds, "sqlite")
def _holds_sqlite(element: holds, compiler: SQLCompiler, **kw: Any) -> str:
    return f"(instr({compiler.process(element.clauses, **kw)}) > 0)"


@compiles(holds, "postgresql")
def _holds_postgresql(element: holds, compiler: SQLCompiler, **kw: Any) -> str:
    return f"(strpos({compiler.process(element.clauses, **kw)}) > 0)"
