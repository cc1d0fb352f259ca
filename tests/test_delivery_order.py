"""The order in which the hub writes one event to its streams: the order they
subscribed in (events.py, on the order of writes)."""

from __future__ import annotations

import random

from feed.events import Hub, Outgoing
from feed.sse import Format
from feed.subscribers import Subscriber

STREAMS = 300


class Recording:
    """A transport that notes, in one list shared by all, whose write came when."""

    def __init__(self, name: int, order: list[int]) -> None:
        self.name = name
        self.order = order

    def write(self, data: bytes) -> None:
        self.order.append(self.name)

    def get_write_buffer_size(self) -> int:
        return 0

    def is_closing(self) -> bool:
        return False

    def abort(self) -> None:
        raise AssertionError("not expected to be cut off")


def _streams(
    hub: Hub, names: list[int], order: list[int], channels: frozenset[str] | None = None
) -> dict[int, Subscriber]:
    """A stream for each of ``names``, subscribed in that order and attached."""
    made = {}
    for name in names:
        sub = Subscriber(Format.JSON, channels, last_id=0, limit=10_000)
        hub.subscribe(sub)
        assert sub.attach(Recording(name, order), lambda: None)
        made[name] = sub
    return made


def test_one_event_is_written_to_its_streams_in_the_order_they_subscribed() -> None:
    hub, order = Hub(heartbeat=60), []
    names = random.Random(7).sample(range(10 * STREAMS), STREAMS)
    _streams(hub, names, order)
    hub.publish(1, "general", {Format.JSON: b"J1"})
    assert order == names


def test_a_stream_that_comes_back_is_written_to_after_those_that_stayed() -> None:
    hub, order = Hub(heartbeat=60), []
    names = list(range(STREAMS))
    streams = _streams(hub, names, order)
    # Every third one leaves and comes back, as after a reconnect.
    back = names[::3]
    for name in back:
        hub.unsubscribe(streams[name])
    _streams(hub, back, order)
    hub.publish(1, "general", {Format.JSON: b"J1"})
    assert order == [n for n in names if n not in back] + back


def test_a_run_and_a_mixed_batch_keep_the_order_of_subscribing_under_each_key() -> None:
    hub, order = Hub(heartbeat=60), []
    names = random.Random(11).sample(range(10 * STREAMS), STREAMS)
    # Streams of every channel and of one channel, subscribing in turns.
    everything, general = names[::2], names[1::2]
    for one, other in zip(everything, general, strict=True):
        _streams(hub, [one], order)
        _streams(hub, [other], order, frozenset({"general"}))
    # Those of every channel are written to first, then those of the event's channel
    # (events.py, on routing), each in the order they subscribed.
    expected = everything + general
    # A run of one channel's events: one write per stream (events.py, on runs).
    run = [Outgoing(n, "general", {Format.JSON: b"J%d" % n}) for n in (1, 2, 3)]
    hub.publish_many(run)
    assert order == expected
    # Events of two channels: each stream's share joined, still one write each.
    order.clear()
    mixed = [
        Outgoing(4, "general", {Format.JSON: b"J4"}),
        Outgoing(5, "random", {Format.JSON: b"J5"}),
    ]
    hub.publish_many(mixed)
    assert order == expected
