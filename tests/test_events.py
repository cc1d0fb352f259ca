"""The hub's fan-out rules, in-process."""

from __future__ import annotations

import asyncio
import collections
import gc
import random
from collections.abc import Iterable

import pytest

from feed.census import STATS_MAX_AGE
from feed.events import Hub, Outgoing
from feed.sse import HEARTBEAT, HEARTBEAT_EVENT, Format, chunk
from feed.subscribers import Subscriber, item


def _sub(
    fmt: Format = Format.JSON,
    channels: set[str] | None = None,
    limit: int = 10_000,
    last_id: int = 0,
) -> Subscriber:
    return Subscriber(
        fmt, None if channels is None else frozenset(channels), last_id=last_id, limit=limit
    )


def test_hub_routes_by_channel_and_format() -> None:
    hub = Hub(heartbeat=60)
    everything, general_html, other = (
        _sub(),
        _sub(Format.HTML, {"general"}),
        _sub(channels={"announcements"}),
    )
    for sub in (everything, general_html, other):
        hub.subscribe(sub)
    hub.publish(1, "general", {Format.JSON: b"J1", Format.HTML: b"H1"})
    assert everything.take() == b"J1"
    assert general_html.take() == b"H1"
    assert other.take() == b""
    hub.unsubscribe(general_html)
    hub.publish(2, "general", {Format.JSON: b"J2", Format.HTML: b"H2"})
    assert general_html.take() == b""
    assert hub.formats_wanted() == {Format.JSON}


def test_private_events_reach_only_subscribers_allowed_to_read_them() -> None:
    hub = Hub(heartbeat=60)
    anyone, member, admin, named = _sub(), _sub(), _sub(), _sub(channels={"board"})
    member.private = frozenset({"board"})
    admin.private = None
    for sub in (anyone, member, admin, named):
        hub.subscribe(sub)
    hub.publish(1, "board", {Format.JSON: b"secret"}, private=True)
    hub.publish(2, "general", {Format.JSON: b"open"})
    assert anyone.take() == b"open"
    assert member.take() == b"secretopen"
    assert admin.take() == b"secretopen"
    # Asking for the channel by name is not enough; a grant taken away stops the next event.
    assert named.take() == b""
    member.private = frozenset()
    hub.publish(3, "board", {Format.JSON: b"later"}, private=True)
    assert member.take() == b""


def test_same_bytes_object_goes_to_every_subscriber() -> None:
    hub = Hub(heartbeat=60)
    subs = [_sub() for _ in range(3)]
    for sub in subs:
        hub.subscribe(sub)
    payload = b"shared"
    hub.publish(1, "general", {Format.JSON: payload})
    assert all(sub._pending[0][1] is payload for sub in subs)


def test_take_drops_events_already_sent_by_a_replay() -> None:
    sub = _sub(last_id=5)
    for event_id in (4, 5, 6, 7):
        sub.offer(item(event_id, f"e{event_id}".encode()))
    sub.offer(item(None, HEARTBEAT))
    assert sub.take() == b"e6e7" + HEARTBEAT
    assert sub.last_id == 7


def test_overflow_drops_backlog_and_calls_back() -> None:
    dropped: list[bool] = []
    sub = _sub(limit=10)
    sub.on_overflow = lambda: dropped.append(True)
    sub.offer(item(1, b"12345"))
    assert not sub.overflowed
    sub.offer(item(2, b"678901"))
    assert sub.overflowed and sub.closed and dropped == [True]
    assert sub.take() == b""
    sub.offer(item(3, b"x"))
    assert sub.take() == b""


def test_publish_never_waits_and_wakes_a_waiting_writer() -> None:
    async def scenario() -> bytes:
        hub = Hub(heartbeat=60)
        sub = _sub()
        hub.subscribe(sub)
        waiting = asyncio.ensure_future(sub.wait())
        parked: list[bool] = []

        def publish() -> None:
            # Queued after the writer's first step, so it runs once the writer is parked.
            parked.append(not waiting.done())
            hub.publish(1, "general", {Format.JSON: b"x"})

        asyncio.get_running_loop().call_soon(publish)
        await asyncio.wait_for(waiting, 1)
        assert parked == [True]
        return sub.take()

    assert asyncio.run(scenario()) == b"x"


def test_close_ends_every_stream_and_refuses_late_subscribers() -> None:
    hub = Hub(heartbeat=60)
    sub = _sub()
    hub.subscribe(sub)
    hub.close()
    assert sub.closed
    late = _sub()
    hub.subscribe(late)
    assert late.closed


@pytest.mark.parametrize(
    ("fmt", "beat"),
    [(Format.HTML, HEARTBEAT_EVENT), (Format.JSON, HEARTBEAT), (Format.TEXT, HEARTBEAT)],
)
def test_heartbeat_reaches_every_subscriber_in_its_format(fmt: Format, beat: bytes) -> None:
    hub = Hub(heartbeat=60)
    sub = _sub(fmt, {"general"})
    hub.subscribe(sub)
    hub._beat()
    assert sub.take() == beat


def test_one_heartbeat_per_subscriber_whatever_its_channels() -> None:
    hub = Hub(heartbeat=60)
    many, everything = _sub(Format.HTML, {"general", "announcements"}), _sub(Format.HTML)
    hub.subscribe(many)
    hub.subscribe(everything)
    hub._beat()
    assert many.take() == everything.take() == HEARTBEAT_EVENT


def test_heartbeats_share_one_encoding_per_format() -> None:
    hub = Hub(heartbeat=60)
    subs = [_sub(Format.HTML) for _ in range(3)]
    for sub in subs:
        hub.subscribe(sub)
    hub._beat()
    assert all(sub._pending[0][1] is HEARTBEAT_EVENT for sub in subs)


def test_hub_stats_count_each_stream_once_and_remember_ended_ones() -> None:
    hub = Hub(heartbeat=60)
    both = Subscriber(Format.HTML, frozenset({"a", "b"}), last_id=0, limit=100)
    everything = Subscriber(Format.JSON, None, last_id=0, limit=100)
    slow = Subscriber(Format.TEXT, frozenset({"a"}), last_id=0, limit=100)
    for sub in (both, everything, slow):
        hub.subscribe(sub)
    hub.publish(1, "a", {fmt: b"x" * 60 for fmt in Format})
    assert both.take() == b"x" * 60 and everything.take() == b"x" * 60
    hub.publish(2, "a", {fmt: b"y" * 60 for fmt in Format})  # slow now holds 120 > 100
    assert slow.overflowed
    stats = hub.stats()
    assert stats.subscribers == 3
    # The dropped stream counts until its connection is gone and it unsubscribes.
    assert stats.by_channel_format == {
        ("a", "html"): 1,
        ("b", "html"): 1,
        ("*", "json"): 1,
        ("a", "text"): 1,
    }
    assert stats.events_sent == 2
    assert stats.largest_backlog_bytes == 60
    assert stats.oldest_opened_at == min(s.opened_at for s in (both, everything, slow))
    hub.unsubscribe(slow)
    hub.unsubscribe(both)
    after = hub.stats()
    assert (after.subscribers, after.events_sent, after.dropped) == (1, 2, 1)


def test_one_message_larger_than_the_backlog_still_goes_out() -> None:
    sub = Subscriber(Format.JSON, None, last_id=0, limit=100)
    sub.offer(item(1, b"x" * 500))
    assert not sub.overflowed and sub.take() == b"x" * 500
    sub.offer(item(2, b"y" * 500))
    sub.offer(item(3, b"z"))  # now behind by two messages, over the limit
    assert sub.overflowed and sub.closed


def _never() -> None:
    raise AssertionError("not expected to be called")


class FakeTransport:
    """Records direct writes; ``stuck`` bytes stay in its buffer as if unread."""

    def __init__(self, stuck: bool = False) -> None:
        self.written: list[bytes] = []
        self.stuck = stuck
        self.aborted = False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def get_write_buffer_size(self) -> int:
        return sum(map(len, self.written)) if self.stuck else 0

    def is_closing(self) -> bool:
        return self.aborted

    def abort(self) -> None:
        self.aborted = True


def attached(hub: Hub, subs: Iterable[Subscriber]) -> list[FakeTransport]:
    """Subscribe each of ``subs`` and attach it to a transport of its own."""
    transports = []
    for sub in subs:
        hub.subscribe(sub)
        transports.append(FakeTransport())
        assert sub.attach(transports[-1], _never)
    return transports


def test_an_attached_subscriber_gets_the_shared_chunk_written_directly() -> None:
    hub = Hub(heartbeat=60)
    subs = [_sub() for _ in range(3)]
    transports = attached(hub, subs)
    hub.publish(1, "general", {Format.JSON: b"J1"})
    hub._beat()
    hub.broadcast({Format.JSON: b"P"})
    assert all(t.written == [chunk(b"J1"), chunk(HEARTBEAT), chunk(b"P")] for t in transports)
    assert all(t.written[0] is transports[0].written[0] for t in transports)
    assert all(sub.take() == b"" and sub.sent == 1 and sub.last_id == 1 for sub in subs)
    assert hub.stats().events_sent == 3


def test_attach_waits_until_the_writer_has_sent_what_is_pending() -> None:
    # Events that arrive during the replay are queued; the writer sends them, then
    # attaches, and direct writes go on after the last id the replay covered.
    sub = _sub(last_id=5)
    transport = FakeTransport()
    sub.offer(item(6, b"e6"))
    assert not sub.attach(transport, _never)
    assert sub.take() == b"e6"
    assert sub.attach(transport, _never)
    sub.offer(item(6, b"e6"))
    sub.offer(item(7, b"e7"))
    assert transport.written == [chunk(b"e7")] and sub.last_id == 7


def test_an_attached_subscriber_that_stops_reading_is_cut_off() -> None:
    interrupted: list[bool] = []
    sub = _sub(limit=100)
    sub.on_overflow = _never  # that is for a writer still on the ASGI path
    transport = FakeTransport(stuck=True)
    assert sub.attach(transport, lambda: interrupted.append(True))
    sub.offer(item(1, b"x" * 500))  # one message over the limit on its own still goes
    assert not sub.overflowed and sub.backlog_bytes > 500
    sub.offer(item(2, b"y"))
    assert sub.overflowed and sub.closed and transport.aborted and interrupted == [True]
    sub.offer(item(3, b"z"))
    assert len(transport.written) == 2


def test_closing_an_attached_subscriber_interrupts_its_writer_once() -> None:
    interrupted: list[bool] = []
    hub = Hub(heartbeat=60)
    sub = _sub()
    transport = FakeTransport()
    hub.subscribe(sub)
    assert sub.attach(transport, lambda: interrupted.append(True))
    hub.close()
    sub.close()
    hub.publish(1, "general", {Format.JSON: b"late"})
    assert transport.written == [] and sub.closed and interrupted == [True]
    assert not transport.aborted and not sub.overflowed


def test_a_batch_of_events_is_one_write_per_attached_subscriber_in_id_order() -> None:
    hub = Hub(heartbeat=60)
    everything, general = _sub(), _sub(channels={"general"})
    member, html = _sub(), _sub(Format.HTML)
    member.private = frozenset({"board"})
    subs = (everything, general, member, html)
    transports = attached(hub, subs)
    general.last_id = 1  # a replay already sent event 1 to this one
    hub.publish_many(
        [
            Outgoing(1, "general", {Format.JSON: b"J1", Format.HTML: b"H1"}),
            Outgoing(2, "board", {Format.JSON: b"J2", Format.HTML: b"H2"}, private=True),
            Outgoing(3, "general", {Format.JSON: b"J3", Format.HTML: b"H3"}),
        ]
    )
    assert transports[0].written == [chunk(b"J1J3")]
    assert transports[1].written == [chunk(b"J3")]
    assert transports[2].written == [chunk(b"J1J2J3")]
    assert transports[3].written == [chunk(b"H1H3")]
    assert [s.last_id for s in subs] == [3, 3, 3, 3]
    assert [s.sent for s in subs] == [2, 1, 3, 2]


def test_subscribers_that_get_the_same_batch_share_one_joined_chunk() -> None:
    hub = Hub(heartbeat=60)
    subs = [_sub() for _ in range(3)]
    transports = attached(hub, subs)
    hub.publish_many([Outgoing(n, "general", {Format.JSON: b"J%d" % n}) for n in (1, 2)])
    assert transports[0].written == [chunk(b"J1J2")]
    assert all(t.written[0] is transports[0].written[0] for t in transports)


def test_a_batch_queues_item_by_item_for_a_subscriber_not_yet_attached() -> None:
    hub = Hub(heartbeat=60)
    sub = _sub(last_id=1)
    hub.subscribe(sub)
    hub.publish_many([Outgoing(n, "general", {Format.JSON: b"J%d" % n}) for n in (1, 2, 3)])
    assert sub.take() == b"J2J3" and sub.last_id == 3


def test_an_attached_subscriber_already_behind_is_cut_off_by_a_batch() -> None:
    sub = _sub(limit=100)
    transport = FakeTransport(stuck=True)
    hub = Hub(heartbeat=60)
    hub.subscribe(sub)
    assert sub.attach(transport, lambda: None)
    # A batch larger than the limit goes out to a client that was keeping up...
    hub.publish_many([Outgoing(n, "general", {Format.JSON: b"x" * 80}) for n in (1, 2)])
    assert not sub.overflowed and len(transport.written) == 1
    # ...but one that has not read it by the next batch is dropped.
    hub.publish_many([Outgoing(n, "general", {Format.JSON: b"y"}) for n in (3, 4)])
    assert sub.overflowed and transport.aborted


class WalkCountingHub(Hub):
    """A hub that counts how often something walks its subscribers."""

    def __init__(self) -> None:
        super().__init__(heartbeat=60)
        self.walks = 0

    def subscribers(self) -> list[Subscriber]:
        self.walks += 1
        return super().subscribers()


def walked_counts(hub: Hub) -> dict[tuple[str, str], int]:
    counts: dict[tuple[str, str], int] = {}
    for sub in hub.subscribers():
        for name in sub.channels or ("*",):
            counts[name, sub.format.value] = counts.get((name, sub.format.value), 0) + 1
    return counts


def test_running_counts_equal_a_walk_after_random_subscribes_and_unsubscribes() -> None:
    rng = random.Random(7)
    hub = Hub(heartbeat=60)
    names = ["a", "b", "c", "d"]
    held: list[Subscriber] = []
    for _ in range(2_000):
        if held and rng.random() < 0.45:
            hub.unsubscribe(held.pop(rng.randrange(len(held))))
        else:
            picked = frozenset(rng.sample(names, rng.randint(0, 3))) or None
            sub = Subscriber(rng.choice(list(Format)), picked, last_id=0, limit=100)
            hub.subscribe(sub)
            held.append(sub)
        if rng.random() < 0.05:
            stats = hub.stats()
            assert stats.by_channel_format == walked_counts(hub)
            assert stats.subscribers == len(hub) == len(held) == len(hub.subscribers())
    while held:
        hub.unsubscribe(held.pop())
    assert hub.stats().by_channel_format == {} and len(hub) == 0


def test_repeated_stats_within_the_cache_age_walk_the_subscribers_once() -> None:
    hub = WalkCountingHub()
    subs = [_sub() for _ in range(5)]
    for sub in subs:
        hub.subscribe(sub)
    hub.publish(1, "general", {Format.JSON: b"J1"})
    first = hub.stats()
    assert first.subscribers == 5 and first.largest_backlog_bytes == 2
    for _ in range(10):
        assert hub.stats().subscribers == 5
        assert len(hub) == 5
    assert hub.walks == 1
    # What is counted on subscribe and unsubscribe is current at once.
    hub.unsubscribe(subs[0])
    again = hub.stats()
    assert again.subscribers == 4 and again.by_channel_format == {("*", "json"): 4}
    assert hub.walks == 1


def test_the_cached_walk_is_renewed_once_it_is_older_than_its_age() -> None:
    hub = WalkCountingHub()
    hub.subscribe(_sub())
    hub.stats()
    hub.census.walked_at -= STATS_MAX_AGE + 0.1  # as if a second had passed
    hub.stats()
    assert hub.walks == 2


def test_a_run_of_one_channel_is_one_write_each_and_only_what_a_stream_has_not_had() -> None:
    hub = Hub(heartbeat=60)
    everything = Subscriber(Format.JSON, None, last_id=0, limit=10_000)
    general = Subscriber(Format.JSON, frozenset({"general"}), last_id=0, limit=10_000)
    texts = Subscriber(Format.TEXT, frozenset({"general"}), last_id=0, limit=10_000)
    ahead = Subscriber(Format.JSON, None, last_id=2, limit=10_000)  # has had 1 and 2
    other = Subscriber(Format.JSON, frozenset({"other"}), last_id=0, limit=10_000)
    thread = Subscriber(Format.JSON, frozenset({"general"}), last_id=0, limit=10_000)
    thread.thread = 3  # the thread of post 3: its own event and its replies'
    private = Subscriber(Format.JSON, None, last_id=0, limit=10_000)  # reads no private one
    subs = [everything, general, texts, ahead, other, thread, private]
    for sub in subs[:-1]:
        sub.private = None  # may read every private channel
    transports = attached(hub, subs)
    run = [
        Outgoing(
            n,
            "general",
            {Format.JSON: f"J{n}".encode(), Format.TEXT: f"T{n}".encode()},
            thread=n,  # each a top-level post: its own thread
        )
        for n in (1, 2, 3, 4)
    ]
    hub.publish_many(run)
    assert transports[0].written == [chunk(b"J1J2J3J4")]
    assert transports[1].written[0] is transports[0].written[0]  # shared, not rebuilt
    assert transports[2].written == [chunk(b"T1T2T3T4")]
    assert transports[3].written == [chunk(b"J3J4")]
    assert transports[4].written == []
    assert transports[5].written == [chunk(b"J3")]
    assert transports[6].written == [chunk(b"J1J2J3J4")]  # general is not private
    hub.publish_many([e._replace(id=e.id + 4, private=True, thread=3) for e in run])
    assert transports[6].written == [chunk(b"J1J2J3J4")]  # a private run is not its
    assert transports[0].written[-1] == chunk(b"J1J2J3J4")
    assert transports[5].written == [chunk(b"J3"), chunk(b"J1J2J3J4")]  # replies to 3
    assert [s.last_id for s in subs] == [8, 8, 8, 8, 0, 8, 4]


def test_one_event_to_many_attached_subscribers_sets_off_no_garbage_collection() -> None:
    # A collection in the middle of a fan-out pauses every stream not yet written to;
    # the hot path must leave nothing the collector counts behind per subscriber.
    hub = Hub(heartbeat=60)
    transports = attached(hub, [_sub() for _ in range(5_000)])
    started: list[int] = []

    def seen(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started.append(info["generation"])

    thresholds = gc.get_threshold()
    gc.collect()
    gc.set_threshold(1_000, *thresholds[1:])
    gc.callbacks.append(seen)
    try:
        hub.publish(1, "general", {Format.JSON: b"J1"})
    finally:
        gc.callbacks.remove(seen)
        gc.set_threshold(*thresholds)
    assert started == []
    assert all(t.written == [chunk(b"J1")] for t in transports)


def test_heartbeats_are_spread_over_the_interval_and_reach_each_stream_once_a_round() -> None:
    # One write per stream all at once would hold up any event behind it for as long
    # as a whole fan-out: at thousands of streams, a pause every interval.
    streams = 256
    beats: list[tuple[int, int]] = []  # (loop step, stream) of each heartbeat written
    step = 0
    twice = asyncio.Event()

    class Recording(FakeTransport):
        def __init__(self, n: int) -> None:
            super().__init__()
            self.n = n

        def write(self, data: bytes) -> None:
            super().write(data)
            beats.append((step, self.n))
            if len(beats) == 2 * streams:
                twice.set()

    async def scenario() -> None:
        nonlocal step
        hub = Hub(heartbeat=0.64)
        for n in range(streams):
            sub = _sub()
            hub.subscribe(sub)
            assert sub.attach(Recording(n), lambda: None)
        hub.start()
        waiting = asyncio.ensure_future(asyncio.wait_for(twice.wait(), 10))
        while not waiting.done():  # counts the loop's turns: one beat is one turn's work
            step += 1
            await asyncio.sleep(0)
        hub.close()
        await waiting

    asyncio.run(scenario())
    per_turn = collections.Counter(turn for turn, _ in beats)
    assert max(per_turn.values()) <= streams // 16
    first_round = [n for _, n in beats[:streams]]
    assert sorted(first_round) == list(range(streams))  # each once before any twice
    assert [n for _, n in beats[streams:]] == first_round  # and in the same order again
