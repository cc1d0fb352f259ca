"""The hub's heartbeats when its event loop has been held up: each stream gets its beat
once the loop is free again, and not one for every interval it missed."""

from __future__ import annotations

import asyncio
import time

from feed.events import Hub
from tests.test_events import FakeTransport, _sub

HEARTBEAT = 0.32
STREAMS = 64


def test_a_stalled_loop_gives_each_stream_one_heartbeat_not_one_per_interval_missed() -> None:
    async def scenario() -> list[int]:
        hub = Hub(heartbeat=HEARTBEAT)
        transports = []
        for _ in range(STREAMS):
            sub = _sub()
            hub.subscribe(sub)
            transports.append(FakeTransport())
            assert sub.attach(transports[-1], lambda: None)
        hub.start()
        await asyncio.sleep(0)  # the ticker starts its schedule
        # The loop held for five intervals, as a long collection or a huge fan-out
        # would hold it: nothing else runs meanwhile.
        held_until = time.monotonic() + 5 * HEARTBEAT
        while time.monotonic() < held_until:
            pass
        deadline = time.monotonic() + 5 * HEARTBEAT
        while not all(t.written for t in transports):
            assert time.monotonic() < deadline, "a stream got no heartbeat after the stall"
            await asyncio.sleep(0)
        # A few thousand more turns of the loop: far less than an interval's time.
        started = time.monotonic()
        for _ in range(2000):
            await asyncio.sleep(0)
        assert time.monotonic() - started < HEARTBEAT / 2
        hub.close()
        return [len(t.written) for t in transports]

    beats = asyncio.run(scenario())
    # One beat each for the stall, and at most one more that came due since.
    assert max(beats) <= 2, beats
    assert min(beats) >= 1, beats
