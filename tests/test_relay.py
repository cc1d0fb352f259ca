"""The relay: a process's own new posts go to the hub without a read-back, and only
when nothing this process has not read yet lies before them."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from feed.brokers.memory import MemoryBroker
from feed.events import Hub, Outgoing
from feed.metrics import Metrics
from feed.relay import Relay
from feed.render import Renderer
from feed.sse import Format
from feed.store import Store, make_engine
from feed.subscribers import Subscriber
from feed.values import AccessChange, Commit, FeedEvent
from tests.conftest import sqlite_url


class CountingStore(Store):
    """A real store that counts the relay's reads of the log."""

    reads = 0

    def __init__(self, engine: Any) -> None:
        super().__init__(engine)
        self.read = asyncio.Event()  # set at each read

    async def events_after(
        self,
        after: int,
        channels: Sequence[str] | None = None,
        *,
        limit: int = 1000,
        private: Sequence[str] | None = None,
        **more: Any,
    ) -> list[FeedEvent]:
        self.reads += 1
        self.read.set()
        return await super().events_after(after, channels, limit=limit, private=private, **more)


class RecordingHub(Hub):
    """A real hub that remembers which event ids it was handed, batch by batch."""

    def __init__(self) -> None:
        super().__init__(heartbeat=60)
        self.batches: list[list[int]] = []
        self._grew = asyncio.Event()

    def publish_many(self, events: Sequence[Outgoing]) -> None:
        super().publish_many(events)
        self.batches.append([event.id for event in events])
        self._grew.set()

    async def reached(self, event_id: int) -> None:
        while not self.batches or self.batches[-1][-1] < event_id:
            self._grew.clear()
            await self._grew.wait()


async def held_relay(
    store: Store, hub: Hub, poll_interval: float
) -> tuple[Relay, asyncio.Queue[AccessChange], asyncio.Event]:
    """A started relay whose access listener records each change and waits for the
    event it returns before the relay may deliver again."""
    relay = Relay(
        store,
        MemoryBroker(),
        hub,
        Renderer(),
        poll_interval,
        Metrics(hub.stats, MemoryBroker().status, frozenset),
    )
    followed: asyncio.Queue[AccessChange] = asyncio.Queue()
    release = asyncio.Event()

    async def recheck(change: AccessChange) -> None:
        followed.put_nowait(change)
        await release.wait()

    relay.on_access(recheck)
    await relay.start()
    return relay, followed, release


def ids_taken(sub: Subscriber) -> list[int]:
    """The event ids a subscriber has been handed, in order."""
    data = sub.take().decode()
    return [json.loads(line[6:])["id"] for line in data.splitlines() if line.startswith("data: ")]


def test_own_posts_go_out_without_a_read_and_never_ahead_of_an_unread_event(
    tmp_path: Path,
) -> None:
    url = sqlite_url(tmp_path / "feed.db")

    async def main() -> None:
        store = CountingStore(make_engine(url))
        other = Store.from_url(url)  # another process's writes, with no hint to us
        await store.create_schema()
        hub = RecordingHub()
        metrics = Metrics(hub.stats, MemoryBroker().status, frozenset)
        relay = Relay(store, MemoryBroker(), hub, Renderer(), 3600, metrics)
        await relay.start()
        sub = Subscriber(Format.JSON, None, last_id=relay.delivered, limit=1 << 20)
        hub.subscribe(sub)
        try:
            # Two posts of ours, committed together: published at once, not read back.
            mine = await asyncio.gather(
                store.create_post("general", "ann", "one"),
                store.create_post("general", "ann", "two"),
            )
            first = mine[0].event_id
            assert first is not None
            assert ids_taken(sub) == [c.event_id for c in mine] == [first, first + 1]
            assert store.reads == 0 and hub.batches == [[first, first + 1]]
            # Handed events the relay already has (a hint was faster): nothing twice.
            relay.committed(Commit(0, await other.events_after(0)))
            assert ids_taken(sub) == [] and hub.batches == [[first, first + 1]]
            # Another process's event, then ours: ours waits for a read of both.
            theirs = await other.create_post("general", "bob", "elsewhere")
            ours = await store.create_post("general", "ann", "here")
            assert ours.event_id is not None
            async with asyncio.timeout(5):
                await hub.reached(ours.event_id)
            later = [first + 2, first + 3]
            assert ids_taken(sub) == [theirs.event_id, ours.event_id] == later
            assert hub.batches == [[first, first + 1], later] and store.reads == 1
        finally:
            await relay.close()
            store.close()
            other.close()

    asyncio.run(main())


def test_edits_pins_and_deletes_of_this_process_go_out_without_a_read(tmp_path: Path) -> None:
    async def main() -> None:
        store = CountingStore(make_engine(sqlite_url(tmp_path / "feed.db")))
        await store.create_schema()
        hub = RecordingHub()
        metrics = Metrics(hub.stats, MemoryBroker().status, frozenset)
        relay = Relay(store, MemoryBroker(), hub, Renderer(), 3600, metrics)
        await relay.start()
        sub = Subscriber(Format.JSON, None, last_id=relay.delivered, limit=1 << 20)
        hub.subscribe(sub)
        try:
            post = (await store.create_post("general", "ann", "one")).post.id
            changes = [
                await store.edit_post(post, "two"),
                await store.set_pinned(post, True),
                await store.set_pinned(post, False),
                await store.delete_post(post),
            ]
            ids = [c.event_id for c in changes]
            # Delivered as each write returned, and never read back.
            assert ids_taken(sub)[1:] == ids and [b[0] for b in hub.batches[1:]] == ids
            assert store.reads == 0
        finally:
            await relay.close()
            store.close()

    asyncio.run(main())


def test_events_committed_after_a_change_of_access_wait_until_streams_follow_it(
    tmp_path: Path,
) -> None:
    async def main() -> None:
        store = CountingStore(make_engine(sqlite_url(tmp_path / "feed.db")))
        await store.create_schema()
        hub = RecordingHub()
        relay, followed, release = await held_relay(store, hub, 3600)
        try:
            await store.set_member("general", "ann", may_post=True)
            after = await store.create_post("general", "bob", "after the grant")
            async with asyncio.timeout(5):
                assert await followed.get() == AccessChange(members=True)
            assert hub.batches == []
            release.set()
            async with asyncio.timeout(5):
                await hub.reached(after.event_id or 0)
            # Read from the log once the streams had followed, not handed over before.
            assert hub.batches == [[after.event_id]] and store.reads == 1
            # Heard from another process: the same, for whatever it changed.
            relay.access_hint()
            async with asyncio.timeout(5):
                assert await followed.get() == AccessChange(elsewhere=True)
        finally:
            await relay.close()
            store.close()

    asyncio.run(main())


def test_events_a_poll_finds_wait_until_streams_follow_what_may_have_changed_unheard(
    tmp_path: Path,
) -> None:
    """Another process's events found by a poll came without a hint: a change of access
    made with them may have gone unheard too, and is rechecked before they go out."""

    async def main() -> None:
        url = sqlite_url(tmp_path / "feed.db")
        store, other = CountingStore(make_engine(url)), Store(make_engine(url))
        await store.create_schema()
        hub = RecordingHub()
        relay, followed, release = await held_relay(store, hub, 0.1)
        try:
            # Written by another process whose hints never came: a grant, then a post.
            await other.set_member("general", "ann", may_post=True)
            after = await other.create_post("general", "bob", "after the grant")
            async with asyncio.timeout(5):
                assert await followed.get() == AccessChange(elsewhere=True)
            assert hub.batches == []
            release.set()
            async with asyncio.timeout(5):
                await hub.reached(after.event_id or 0)
            assert hub.batches == [[after.event_id]]
            # A poll that finds nothing new rechecks nothing.
            async with asyncio.timeout(5):
                for _ in range(3):  # three polls
                    store.read.clear()
                    await store.read.wait()
            assert followed.empty()
        finally:
            await relay.close()
            store.close()
            other.close()

    asyncio.run(main())


def test_a_poll_that_finds_this_processs_own_commit_unannounced_rechecks_nothing(
    tmp_path: Path,
) -> None:
    """A poll can read the log's end between this process's commit and its
    announcement: that event is no stranger, and is handed over, not held up."""

    class Racing(CountingStore):
        ahead = 0  # how far the log's end is ahead of what was delivered, at a poll
        ours = True  # whether the store announces that event

        async def latest_event_id(self) -> int:
            return await super().latest_event_id() + self.ahead

        def announces(self, event_id: int) -> bool:
            return self.ours

    async def main() -> list[AccessChange]:
        store = Racing(make_engine(sqlite_url(tmp_path / "feed.db")))
        await store.create_schema()
        hub = RecordingHub()
        metrics = Metrics(hub.stats, MemoryBroker().status, frozenset)
        relay = Relay(store, MemoryBroker(), hub, Renderer(), 0.05, metrics)
        followed: list[AccessChange] = []

        async def recheck(change: AccessChange) -> None:
            followed.append(change)

        relay.on_access(recheck)
        await relay.start()
        try:
            store.ahead = 1
            async with asyncio.timeout(5):
                for _ in range(3):  # three polls
                    store.read.clear()
                    await store.read.wait()
            assert followed == []
            store.ours = False  # another process's, then: rechecked
            async with asyncio.timeout(5):
                store.read.clear()
                await store.read.wait()
            return followed
        finally:
            await relay.close()
            store.close()

    assert asyncio.run(main()) == [AccessChange(elsewhere=True)]


class CountingRenderer(Renderer):
    """A real renderer that counts, by event kind, the formats it encoded events in."""

    def __init__(self) -> None:
        super().__init__()
        self.encoded: dict[str, int] = {}

    def frames(self, event: FeedEvent, formats: Any) -> dict[Format, bytes]:
        found = super().frames(event, formats)
        kind = event.kind.value
        self.encoded[kind] = self.encoded.get(kind, 0) + len(found)
        return found


def test_a_mention_is_encoded_only_for_its_persons_own_streams_here(tmp_path: Path) -> None:
    """Names typed after ``@`` are free: a post naming twenty made-up people must not
    cost twenty encodings of itself, in every format streams here take, for nobody. A
    personal event is encoded in the formats of its person's own streams, and in none
    when they have none here; everyone else's streams still get the post, once."""
    url = sqlite_url(tmp_path / "feed.db")

    async def main() -> tuple[dict[str, int], list[str], list[str]]:
        store = Store.from_url(url)
        await store.create_schema()
        hub = RecordingHub()
        renderer = CountingRenderer()
        metrics = Metrics(hub.stats, MemoryBroker().status, frozenset)
        relay = Relay(store, MemoryBroker(), hub, renderer, 3600, metrics)
        await relay.start()
        anyone = Subscriber(Format.JSON, None, last_id=relay.delivered, limit=1 << 20)
        page = Subscriber(Format.HTML, None, last_id=relay.delivered, limit=1 << 20)
        bo = Subscriber(Format.TEXT, None, last_id=relay.delivered, limit=1 << 20)
        bo.person = "bo"
        for sub in (anyone, page, bo):
            hub.subscribe(sub)
        try:
            names = " ".join(f"@ghost{n}" for n in range(19))
            made = await store.create_post("general", "ann", f"{names} and @bo")
            async with asyncio.timeout(5):
                await hub.reached(made.event_id or 0)
            kinds = [json.loads(line[6:])["type"] for line in _data_lines(anyone)]
            return renderer.encoded, kinds, _event_names(bo)
        finally:
            await relay.close()
            store.close()

    encoded, anyone_got, bo_got = asyncio.run(main())
    assert anyone_got == ["post-created"]
    assert sorted(bo_got) == ["mention", "post-created"]
    # The post in the three formats taken here; bo's mention in bo's one; no ghost's.
    assert encoded == {"post-created": 3, "mention": 1}


def _data_lines(sub: Subscriber) -> list[str]:
    return [line for line in sub.take().decode().splitlines() if line.startswith("data: ")]


def _event_names(sub: Subscriber) -> list[str]:
    data = sub.take().decode()
    return [line[7:] for line in data.splitlines() if line.startswith("event: ")]
