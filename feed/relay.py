"""Feeding the hub from the event log.

One relay per process. It remembers the last event id it handed to the hub and,
whenever a hint arrives (or every ``poll_interval`` seconds, in case a hint was
lost), reads every newer event in one query and hands them to the hub in id
order. It is the only path from the database to the hub, so each event reaches each
local subscriber once, in order, whichever process wrote it.

Every change this process commits comes to it straight from the store once it is
committed (storage/announcements.py, on the commit announcement), with the id of
the event just before it in the log. When that is the last event delivered, the
relay delivers the events as they are, without reading them back; when it is not
(an event it has not read yet lies between), it reads, as for a hint.

What this process knows of channels (which are private) is learnt from the same
events, by listeners the relay calls with each batch before the hub sees it
(``on_delivered``): a change made through any process reaches this one's channel
map by the road that carries the change itself, before any stream, page or scrape
is shown a name that has become private.

A change of access (a grant, a revocation, a sign-out, a channel's privacy), made by
this process or heard of from another, is applied to the open streams before any
event committed after it reaches them: from the moment the relay hears of it, it
delivers nothing until its ``on_access`` listeners (the recheck of open streams)
are done, then reads what follows from the log. Otherwise a post made right after a
membership was granted would be held against the grants as they were, and never
reach the new member's open stream. Events committed just before the change wait a
few milliseconds more; nothing is lost. Only a read of the log already under way
when another process's hint arrives can deliver past it: the recheck follows at
once. Events a poll finds came with no hint, and a change of access made with them
may have gone unheard as well (a broker that lost a message, or was down): they wait
for a recheck of every open stream first, as after another process's access hint.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime

from feed import post_words, tasks
from feed.brokers import Broker
from feed.events import Hub, Outgoing
from feed.metrics import Metrics
from feed.render import Renderer
from feed.search import Query
from feed.sse import Format
from feed.storage.history import EVERYONE
from feed.store import Store, StoreUnavailable
from feed.values import AccessChange, Commit, FeedEvent

logger = logging.getLogger("feed.relay")

BATCH = 500

# Told of each batch of events, in id order, before the hub publishes it. It must not
# wait or raise: delivery goes on whatever it does.
DeliveryListener = Callable[[Sequence[FeedEvent]], None]

# Awaited with a change of access before any event committed after it is delivered.
AccessListener = Callable[[AccessChange], Awaitable[object]]

ELSEWHERE = AccessChange(elsewhere=True)


class Relay:
    def __init__(
        self,
        store: Store,
        broker: Broker,
        hub: Hub,
        renderer: Renderer,
        poll_interval: float,
        metrics: Metrics,
    ) -> None:
        self._store = store
        self._broker = broker
        self._hub = hub
        self._renderer = renderer
        self._poll_interval = poll_interval
        self._metrics = metrics
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._failing = False
        self._rollback_listeners: list[Callable[[], object]] = []
        self._rollbacks_seen = store.rollbacks
        self._delivery_listeners: list[DeliveryListener] = []
        self._access_listeners: list[AccessListener] = []
        # A change of access not yet applied to the open streams, if any, and whether
        # one is being applied: either holds delivery back.
        self._access: AccessChange | None = None
        self._following = False
        self.delivered = 0

    def on_delivered(self, listener: DeliveryListener) -> None:
        """Call ``listener`` with every batch of events before the hub publishes it."""
        self._delivery_listeners.append(listener)

    def on_access(self, listener: AccessListener) -> None:
        """Await ``listener`` with each change of access, before delivering any event
        committed after it."""
        self._access_listeners.append(listener)

    def hint(self, event_id: int | None) -> None:
        # Our own commit's hint, heard before its announcement, needs no read
        # (storage/announcements.py, on our own hints, heard first).
        if event_id is None or (event_id > self.delivered and not self._store.announces(event_id)):
            self._wake.set()

    def access_hint(self) -> None:
        """Another process changed access (the broker's hint)."""
        self._access_changed(ELSEWHERE)

    def _access_changed(self, change: AccessChange) -> None:
        self._access = change if self._access is None else self._access | change
        self._wake.set()

    @property
    def _held(self) -> bool:
        return self._access is not None or self._following

    def committed(self, commit: Commit) -> None:
        """What this process has just committed (``Store.on_commit``)."""
        if self._task is None:
            return
        if commit.access:
            self._access_changed(commit.access)
        if self._held:
            self._wake.set()  # read once the streams have followed the change
            return
        if not commit.events:  # a commit that failed: what it held back is read
            if commit.after > self.delivered:
                self._wake.set()
            return
        # A hint (our own NOTIFY, on PostgreSQL) may have had the relay read some or
        # all of them already.
        fresh = [event for event in commit.events if event.id > self.delivered]
        if not fresh:
            return
        # Ids are not consecutive across a start (storage/log.py, on ids never reused), so what
        # comes right before the first fresh event is asked of the commit, not guessed.
        skipped = len(commit.events) - len(fresh)
        before = commit.events[skipped - 1].id if skipped else commit.after
        if before == self.delivered:
            self._deliver(fresh)
        else:
            self._wake.set()

    async def start(self) -> None:
        self.delivered = await self._store.latest_event_id()
        self._store.on_commit(self.committed)
        await self._broker.start(self.hint, self.access_hint)
        self._task = asyncio.get_running_loop().create_task(self._run(), name="feed-relay")

    async def close(self) -> None:
        await self._broker.close()
        await tasks.stop(self._task)
        self._task = None

    def on_rollback(self, listener: Callable[[], object]) -> None:
        """Call ``listener`` when the log is found to have gone back (see ``_check_log``)."""
        self._rollback_listeners.append(listener)

    async def _run(self) -> None:
        while True:
            hinted = True
            try:
                await asyncio.wait_for(self._wake.wait(), self._poll_interval)
            except TimeoutError:
                hinted = False
            self._wake.clear()
            try:
                if not hinted:
                    await self._unheard()
                await self._apply_access()
                await self._check_log(polled=not hinted)
                await self.catch_up()
            except StoreUnavailable as exc:
                # The next hint or poll retries; say so once per outage, not every poll.
                if not self._failing:
                    logger.warning("cannot read new events (%s); retrying", exc.__cause__)
                self._failing = True
            except Exception:
                logger.exception("could not read new events; retrying")
                self._failing = True
            else:
                if self._failing:
                    logger.warning("reading new events again, up to id %d", self.delivered)
                self._failing = False

    async def _unheard(self) -> None:
        """At a poll: events no hint announced may have come with a change of access
        no hint announced either (the broker lost them, or was down): the streams
        follow whatever it was before those events go out."""
        latest = await self._store.latest_event_id()
        # This process's own commit, committed and not yet announced, is no stranger:
        # held up behind a recheck, it would be read back instead of handed over.
        if latest > self.delivered and not self._store.announces(latest):
            self._access = ELSEWHERE if self._access is None else self._access | ELSEWHERE

    async def _apply_access(self) -> None:
        """Apply the pending change of access to the open streams, before the events
        committed after it are read. If the database cannot say how access is now, the
        change stays pending and nothing is delivered until it can."""
        self._following = True
        try:
            while self._access is not None:
                change, self._access = self._access, None
                try:
                    for listener in self._access_listeners:
                        await listener(change)
                except StoreUnavailable:
                    self._access = change if self._access is None else self._access | change
                    raise
                except Exception:
                    logger.exception("an access listener failed; delivering anyway")
        finally:
            self._following = False

    async def _check_log(self, *, polled: bool) -> None:
        """The log went back under this process (a restore, a failover: storage/log.py, on
        ids never reused). The store finds it so, at a write or, here, at a poll, and
        skips ids past what was handed out: new events come after ``delivered`` still.
        The streams hold events the log no longer has: end them, so that they resume
        and are told to reload."""
        if polled:
            await self._store.check_log()
        if self._store.rollbacks == self._rollbacks_seen:
            return
        self._rollbacks_seen = self._store.rollbacks
        logger.error("open streams end and will reload: the event log went back")
        for listener in self._rollback_listeners:
            listener()
        self._hub.end_streams()

    async def catch_up(self) -> None:
        """Deliver every event newer than the last one delivered."""
        while not self._held:
            # Personal events too: the hub addresses them (events.py, on personal events).
            events = await self._store.events_after(self.delivered, limit=BATCH, person=EVERYONE)
            if self._held:
                return  # access changed meanwhile: these are read again after it
            read = len(events)
            # Some may have come from the store directly while the query ran.
            self._deliver([event for event in events if event.id > self.delivered])
            if read < BATCH:
                return

    def _searched(
        self,
        event: FeedEvent,
        frames: dict[Format, bytes],
        searches: dict[str, Query],
        formats: set[Format],
        parents: dict[tuple[int, str], post_words.Words],
    ) -> dict[str, dict[Format, bytes]]:
        """What each live search shows of ``event``: matched once per search, whatever
        the number of its streams, with the body split into words once for all of them
        (events.py, on live searches)."""
        words = post_words.Words(event.post.body) if event.post is not None else None
        parent = event.thread

        def thread() -> post_words.Words:
            # A reply's parent, split only if a search did not match the reply, and
            # once for all the replies to it that this delivery holds.
            assert parent is not None and parent.body is not None
            key = (parent.post, parent.body)
            found = parents.get(key)
            if found is None:
                found = parents[key] = post_words.Words(parent.body)
            return found

        shown: dict[str, dict[Format, bytes]] = {}
        for text, query in searches.items():
            found = post_words.live(query, event, words, thread)
            if found is event:
                shown[text] = frames
            elif found is not None:
                shown[text] = self._renderer.frames(found, formats)
        return shown

    def _deliver(self, events: Sequence[FeedEvent]) -> None:
        if not events:
            return
        for listener in self._delivery_listeners:
            try:
                listener(events)
            except Exception:
                logger.exception("a delivery listener failed; delivering anyway")
        formats = self._hub.formats_wanted()
        searches = self._hub.searches()
        now = time.time()
        outgoing = []
        # How many events were committed at each moment: a commit's share one (metrics.py,
        # on the fan-out path).
        committed: dict[datetime, int] = {}
        parents: dict[tuple[int, str], post_words.Words] = {}  # replies' parents, split
        for event in events:
            if event.recipient is None:
                frames = self._renderer.frames(event, formats)
                searched = (
                    self._searched(event, frames, searches, formats, parents) if searches else None
                )
            else:
                # For its person's streams here alone, if any (events.py, on personal
                # events); never for a live search.
                frames = self._renderer.frames(event, self._hub.formats_of(event.recipient))
                searched = None
            outgoing.append(
                Outgoing(
                    event.id,
                    event.channel,
                    frames,
                    event.private,
                    event.recipient,
                    event.kind,  # a StrEnum: its own value, without the property's call
                    event.root,
                    searched,
                )
            )
            if event.at is not None:
                committed[event.at] = committed.get(event.at, 0) + 1
        for at, count in committed.items():
            self._metrics.lag_seconds.observe_times(max(0.0, now - at.timestamp()), count)
        self._hub.publish_many(outgoing)
        self.delivered = events[-1].id
        self._store.saw(self.delivered)
        self._metrics.published.inc(len(events))
