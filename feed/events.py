"""Broadcast inside one process: the hub.

The messages themselves are built in sse.py; the hub hands out their bytes to its
subscribers (subscribers.py: one open stream each, its backlog and its bound).

The hot path, and why it looks the way it does:

1. On encoding once. The hub encodes each event once per output format, and frames it
   once more as an HTTP/1.1 chunk (sse.py's ``chunk``). Every subscriber of that
   format gets the same two ``bytes`` objects; nothing is rendered, encoded or copied
   per subscriber.
2. On the hot path. ``Hub.publish`` never awaits, and for most subscribers it does the
   write itself: to an attached stream (subscribers.py, on attaching) it writes the
   shared chunk straight to the connection, with no task wake-up, no ASGI message and
   no per-subscriber ``b"".join``. Profiled at 10,000 subscribers, the server's time
   went from mostly uvicorn framing and writing one chunk per subscriber, each after a
   task wake-up, to mostly the ``send`` syscall of one write per subscriber
   (docs/benchmarks.md, the path of each write).
3. On ``publish_many``. Under a burst of posts the relay hands over several events at
   once (``publish_many``): each attached subscriber gets them in one write, and
   subscribers who get the same events share that one joined chunk. With many clients
   posting as fast as they can, the per-event writes had been most of the server's
   time after the write transactions (docs/benchmarks.md, publish throughput); joined,
   they are a small part of it, and the group commit (storage/new_posts.py, on new posts
   written in groups) took care of the transactions.
4. On heartbeats. They come from one hub-wide timer, in turns (heartbeats.py).
5. On counting. What the hub holds, for /metrics, presence and /admin, is its census's
   (census.py, on the cost of unauthenticated scrapes): counted as streams come and
   go, never a walk per request.
6. On personal events. An event with a recipient (a read position, a mention:
   storage/reading.py) is for that identity's streams alone. It is encoded once per
   format like any other (1), and the hub keeps its subscribers indexed by identity
   as well as by channel, so it hands the same bytes to that identity's streams, and
   looks at nobody else's: a personal event never walks the channel sets, and a
   shared one never walks the identity index. Encoded, that is, in the formats of
   its person's streams here, and not at all when they have none: names after ``@``
   are free to type, and a post naming twenty nobodies would otherwise cost twenty
   encodings of itself, in every format, for no one. It follows its person on every stream
   they opened, whatever channels the stream follows (the page's nav counts every
   channel), but only if they may read its channel: the same private check as
   shared events. A stream asked for mentions only gets nothing else; a thread's
   stream and a live search are nobody's (thread_streams.py, stream.py), and get none.
7. On threads. A thread's stream (``/events?thread=``) is filed under its thread's
   id, not its channel, and an event is handed to the streams of its thread
   (``Outgoing.thread``) besides those of its channel and of every channel: a
   channel's stream pays nothing for threads, and a thread's stream is never offered
   its channel's other posts.
8. On live searches. Streams of the same search (``Subscriber.search``, by the text of
   its parsed query) form one group, kept apart from the other streams so that the
   hot path for those is untouched. The hub does not match anything itself: each
   ``Outgoing`` carries, per search, the frames that search's streams get (the
   event, a ``post-unmatched`` in its place, or nothing), decided by the relay once
   per event per distinct search (post_words.py, on live searches), so a thousand
   screens of one search cost one match per event. The hub then routes them by
   channel and private channels exactly as for every other stream.
9. On runs. A batch of posts (batch.py) reaches the hub as a run of events of one
   channel, all for everyone who reads it. Routing each of them to each subscriber,
   and then comparing each subscriber's list with the others' to share the joined
   chunk, cost more than the rest of the fan-out at a hundred streams. A run whose
   events all go to the same streams (one channel, no recipient, no live search) is
   routed once: every subscriber of a format gets the same list, known to be the same
   without comparing it. Only the streams of an event's own thread (7), filed apart,
   are then offered their thread's events one by one.
10. On one event. Most deliveries are one shared event (a post, an edit). Each stream
    it reaches is filed under just one of its keys (its channel, every channel, or its
    thread), so it is offered to each at once, with no list of what each stream gets.
    Those lists were one object per subscriber for the garbage collector to count: at
    thousands of streams one fan-out set off collections in its own middle, pausing
    every stream not yet written to.
11. On the order of writes. The streams filed under a key are kept in the order they
    subscribed (a dict's keys, not a set), so an event is written to them in that
    order, the same for every event. A set went by its hashes, which mixed the
    streams of every reading process (a proxy's workers, the load clients) together:
    each process was woken for one or two events at a time, and paid a wake-up for
    each. At 19,500 streams read by two load clients, each client was woken about
    94,000 times and preempted 9,000 times for its 195,000 events; in subscription
    order, 53,000 and 440 times, and its CPU an event fell from 8.2 µs to 5.8
    (docs/benchmarks.md, on the order of writes).
12. On a thread's end. A top-level post's ``post-deleted`` is its thread's last event
    (storage/threads.py, on deleting): once the hub has handed it out, the streams of
    that thread end after it (thread_streams.py, on a deleted post's thread). One
    written it already (attached, or past it) is closed at once; one still catching
    up (its replay, or what waits for its writer) is told where it ends
    (``Subscriber.ends_at``) and closes once it has written that far: closed at once,
    its replay was cut short and the tombstone waiting behind it thrown away. One
    comparison per event published, and a look at the thread's streams only for a
    deletion.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import NamedTuple, TypeVar

from feed import heartbeats
from feed.census import Census, HubStats
from feed.heartbeats import Turns
from feed.models import EventKind
from feed.search import Query
from feed.sse import Format, resync_frame
from feed.subscribers import Item, Joined, Run, Subscriber, item

K = TypeVar("K")
# The streams filed under one key, in the order they subscribed (11): a dict's keys,
# where a set's order would be its hashes'.
Filed = dict[Subscriber, None]

# Where a stream of mentions only waits among the channel sets: no channel has this
# name (inputs.py, channel names), so no shared event looks for it (6).
PERSONAL_ONLY = "@"
# The kind of a top-level post's deletion: its thread's last event (12).
POST_DELETED = EventKind.POST_DELETED.value


class Outgoing(NamedTuple):
    """One log event on its way to the hub, encoded for the formats wanted, and for each
    live search that shows it, what that search's streams get (8)."""

    id: int
    channel: str
    frames: Mapping[Format, bytes]
    private: bool = False
    # The identity a personal event is for, and its kind (6); None: everyone's.
    recipient: str | None = None
    kind: str = ""
    thread: int | None = None  # the top-level post it is about, or replies to (7)
    searched: Mapping[str, Mapping[Format, bytes]] | None = None  # per live search (8)


class SearchGroup:
    """The streams of one live search (8), by channel as the hub keeps the others."""

    __slots__ = ("by_channel", "query", "size")

    def __init__(self, query: Query) -> None:
        self.query = query
        self.by_channel: dict[str | int | None, Filed] = {}
        self.size = 0


class Hub:
    """Fans encoded events out to the subscribers of one process."""

    def __init__(self, heartbeat: float) -> None:
        self.heartbeat = heartbeat
        # By channel, None for every channel, or by thread id (7).
        self._by_channel: dict[str | int | None, Filed] = {}
        # The streams of each identity, for its personal events (6).
        self._by_person: dict[str, Filed] = {}
        # Live searches, by the text of their query (8).
        self._searches: dict[str, SearchGroup] = {}
        self._formats: dict[Format, int] = dict.fromkeys(Format, 0)
        # Every subscriber, once, in the heartbeat's turn it was given (4).
        self._turns = Turns(heartbeat)
        self._ticker: asyncio.Task[None] | None = None
        self.closing = False
        # Open streams counted as they come and go, and walked seldom (5).
        self.census = Census(self.subscribers)

    def __len__(self) -> int:
        return self.census.count

    def subscribers(self) -> list[Subscriber]:
        # The heartbeat's turns hold each one once, whatever its channels (4): no set
        # to build to leave out the repeats.
        return self._turns.every()

    def searches(self) -> dict[str, Query]:
        """The live searches someone watches, by the text of their query (8)."""
        return {text: group.query for text, group in self._searches.items()}

    def _index(self, subscriber: Subscriber) -> dict[str | int | None, Filed]:
        """Where ``subscriber`` is kept by channel: with the others, or its search's."""
        if subscriber.search is None:
            return self._by_channel
        text = subscriber.search.text
        group = self._searches.get(text)
        if group is None:
            group = self._searches[text] = SearchGroup(subscriber.search)
        return group.by_channel

    def by_channel_format(self) -> dict[tuple[str, str], int]:
        """Open streams by (channel, or ``*`` for every channel; format): no walk (5)."""
        return self.census.by_channel_format()

    def stats(self) -> HubStats:
        """What the hub holds now (5); a walk at most once per ``STATS_MAX_AGE``."""
        return self.census.stats()

    def formats_wanted(self) -> set[Format]:
        return {fmt for fmt, count in self._formats.items() if count}

    def formats_of(self, person: str) -> set[Format]:
        """The formats ``person``'s own streams here take: a personal event is encoded
        in these alone (6)."""
        return {subscriber.format for subscriber in self._by_person.get(person, ())}

    @staticmethod
    def _keys(subscriber: Subscriber) -> Iterable[str | int | None]:
        """Where the hub files ``subscriber``: with the mentions-only streams (6),
        under its thread (7), its channels, or None for every channel."""
        if subscriber.only is not None:
            return (PERSONAL_ONLY,)
        if subscriber.thread is not None:
            return (subscriber.thread,)
        return subscriber.channels or (None,)

    def subscribe(self, subscriber: Subscriber) -> None:
        index = self._index(subscriber)
        for key in self._keys(subscriber):
            index.setdefault(key, {})[subscriber] = None
        if subscriber.person is not None:
            self._by_person.setdefault(subscriber.person, {})[subscriber] = None
        if subscriber.search is not None:
            self._searches[subscriber.search.text].size += 1
        self._formats[subscriber.format] += 1
        self.census.joined(subscriber)
        self._turns.add(subscriber)
        if self.closing:
            subscriber.close()

    def unsubscribe(self, subscriber: Subscriber) -> None:
        index = self._index(subscriber)
        for key in self._keys(subscriber):
            _leave(index, key, subscriber)
        if subscriber.person is not None:
            _leave(self._by_person, subscriber.person, subscriber)
        if subscriber.search is not None:
            group = self._searches[subscriber.search.text]
            group.size -= 1
            if not group.size:
                del self._searches[subscriber.search.text]
        self._formats[subscriber.format] -= 1
        self.census.left(subscriber)
        self._turns.discard(subscriber)

    def publish(
        self,
        event_id: int,
        channel: str,
        frames: Mapping[Format, bytes],
        *,
        private: bool = False,
    ) -> None:
        """Hand one encoded event to everyone who may see it. Never waits.

        An event of a ``private`` channel reaches only subscribers whose ``private``
        set names it (or is None), whether they asked for that channel or for all."""
        self.publish_many([Outgoing(event_id, channel, frames, private)])

    def publish_many(self, events: Sequence[Outgoing]) -> None:
        """``publish`` for several events, in id order, with one write per attached
        subscriber for all of them (5). Never waits."""
        if len(events) > 1 and _one_audience(events):
            self._publish_run(events)
        elif len(events) == 1 and events[0].recipient is None:
            self._share(events[0], None)  # (10)
        else:
            per_sub: dict[Subscriber, list[Item]] = {}
            for event in events:
                if event.recipient is not None:
                    items = {fmt: item(event.id, data) for fmt, data in event.frames.items()}
                    self._address(event, items, per_sub)
                else:
                    self._share(event, per_sub)
            _offer_each(per_sub)
        for event in events:
            if event.kind == POST_DELETED and event.thread is not None:
                self._end_thread(event.thread, event.id)

    def _end_thread(self, thread: int, tombstone: int) -> None:
        """End the streams of ``thread``, whose post's ``tombstone`` they were just
        handed, after it (12)."""
        for subscriber in list(self._by_channel.get(thread, ())):
            subscriber.end_at(tombstone)

    def _share(self, event: Outgoing, per_sub: dict[Subscriber, list[Item]] | None) -> None:
        """Route a shared event to its channel's streams and its live searches', into
        ``per_sub``, or offered at once if None (10)."""
        items = {fmt: item(event.id, data) for fmt, data in event.frames.items()}
        self._route(event, self._by_channel, items, per_sub)
        for text, frames in (event.searched or {}).items():
            group = self._searches.get(text)
            if group is not None:
                found = items if frames is event.frames else None
                found = found or {fmt: item(event.id, data) for fmt, data in frames.items()}
                self._route(event, group.by_channel, found, per_sub)

    def _publish_run(self, events: Sequence[Outgoing]) -> None:
        """``publish_many`` for events that all go to the same streams, but for the
        streams of their threads (9)."""
        first = events[0]
        joined: Joined = {}
        runs = {
            fmt: Run([item(e.id, e.frames[fmt]) for e in events], joined) for fmt in first.frames
        }
        channel, private = first.channel, first.private
        for key in (None, channel):
            for subscriber in self._by_channel.get(key, ()):
                found = runs.get(subscriber.format)
                if found is None:
                    continue
                if private and subscriber.private is not None and channel not in subscriber.private:
                    continue
                subscriber.offer_run(found)
        per_sub: dict[Subscriber, list[Item]] = {}
        for event in events:
            if event.thread is not None and event.thread in self._by_channel:
                items = {fmt: item(event.id, data) for fmt, data in event.frames.items()}
                self._route(event, self._by_channel, items, per_sub, (event.thread,))
        _offer_each(per_sub)

    def _address(
        self, event: Outgoing, items: dict[Format, Item], per_sub: dict[Subscriber, list[Item]]
    ) -> None:
        """A personal event to its identity's streams, and no one else's (6)."""
        assert event.recipient is not None
        for subscriber in self._by_person.get(event.recipient, ()):
            found = items.get(subscriber.format)
            if found is None or (subscriber.only is not None and subscriber.only != event.kind):
                continue
            readers = subscriber.private
            if event.private and readers is not None and event.channel not in readers:
                continue
            per_sub.setdefault(subscriber, []).append(found)

    @staticmethod
    def _route(
        event: Outgoing,
        by_channel: dict[str | int | None, Filed],
        items: Mapping[Format, Item],
        per_sub: dict[Subscriber, list[Item]] | None,
        keys: tuple[str | int | None, ...] | None = None,
    ) -> None:
        """Queue ``items`` for every subscriber in ``by_channel`` who may see ``event``:
        those of its channel, of every channel, and of its thread (7); or only those
        filed under ``keys``. Without ``per_sub``, offer them at once (10)."""
        channel, private = event.channel, event.private
        if keys is None:
            keys = (None, channel) if event.thread is None else (None, channel, event.thread)
        for key in keys:
            for subscriber in by_channel.get(key, ()):
                found = items.get(subscriber.format)
                if found is None:
                    continue
                if private and subscriber.private is not None and channel not in subscriber.private:
                    continue
                if per_sub is None:
                    subscriber.offer(found)
                    continue
                queued = per_sub.get(subscriber)
                if queued is None:
                    per_sub[subscriber] = [found]
                else:
                    queued.append(found)

    def broadcast(self, frames: Mapping[Format, bytes]) -> None:
        """Hand a message that is not a log event (no id) to every subscriber of the
        formats in ``frames``. Never waits."""
        items = {fmt: item(None, data) for fmt, data in frames.items()}
        for subscriber in self.subscribers():
            found = items.get(subscriber.format)
            if found is not None:
                subscriber.offer(found)

    def broadcast_to_readers(
        self, fmt: Format, message: Callable[[frozenset[str] | None], bytes]
    ) -> None:
        """``broadcast`` of a message that depends on which private channels a
        subscriber may read (``Subscriber.private``): made and framed once per distinct
        set, not once per subscriber. Never waits."""
        items: dict[frozenset[str] | None, Item] = {}
        for subscriber in self.subscribers():
            if subscriber.format is not fmt:
                continue
            found = items.get(subscriber.private)
            if found is None:
                found = items[subscriber.private] = item(None, message(subscriber.private))
            subscriber.offer(found)

    def resync_outsiders(
        self,
        flipped: frozenset[str],
        private: frozenset[str],
        members: Mapping[Subscriber, frozenset[str]],
    ) -> None:
        """Tell every stream that follows one of the channels ``flipped`` (made private
        or public; ``private``: every private channel now; ``members``: streams that
        read some of them either way, with which) without being its member,
        that what it may show changed (sse.py, on messages that tell): ``resync``, or
        ``ended`` for one that named a channel it may no longer read. A thread's stream
        is told too: its page asks for its post again. Never waits."""
        told: dict[Format, Item] = {}
        for subscriber in self.subscribers():
            if subscriber.private is None:
                continue  # reads every channel, private or not
            named = subscriber.channels
            followed = flipped if named is None else flipped & named
            outside = followed - subscriber.private - members.get(subscriber, frozenset())
            if not outside:
                continue
            if named is not None and outside & private:
                subscriber.end("a channel this stream follows was made private")
                continue
            found = told.get(subscriber.format)
            if found is None:
                why = "a channel was made private or public"
                found = told[subscriber.format] = item(
                    None, resync_frame(subscriber.format, None, why)
                )
            subscriber.offer(found)

    def _beat(self, turn: int | None = None) -> None:
        """A heartbeat to the streams of one turn (4), or to every stream."""
        if turn is None:
            heartbeats.beat(self.subscribers())
        else:
            self._turns.beat(turn)

    def start(self) -> None:
        self.closing = False
        if self._ticker is None:
            self._ticker = asyncio.get_running_loop().create_task(self._turns.run())

    def end_streams(self) -> None:
        """End every open stream; clients reconnect and resume. New ones are welcome."""
        for subscriber in self.subscribers():
            subscriber.close()

    def close(self) -> None:
        """End every stream promptly (server shutdown); clients reconnect and resume."""
        self.closing = True
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None
        for subscriber in self.subscribers():
            subscriber.close()


def _offer_each(per_sub: dict[Subscriber, list[Item]]) -> None:
    # Subscribers who get the same events share one joined chunk.
    joined: Joined = {}
    for subscriber, queued in per_sub.items():
        if len(queued) == 1:
            subscriber.offer(queued[0])
        else:
            subscriber.offer_many(queued, joined)


def _one_audience(events: Sequence[Outgoing]) -> bool:
    """Whether every one of ``events`` goes to the same streams, but for the streams of
    its thread (9)."""
    first = events[0]
    formats = first.frames.keys()
    return all(
        e.recipient is None
        and not e.searched
        and e.channel == first.channel
        and e.private == first.private
        and e.frames.keys() == formats
        for e in events
    )


def _leave(index: dict[K, Filed], key: K, subscriber: Subscriber) -> None:
    subs = index.get(key)
    if subs is not None:
        subs.pop(subscriber, None)
        if not subs:
            del index[key]
