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
    async def scenario() -> tuple[list[int], int]:
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
        resumed = time.monotonic()
        deadline = resumed + 5 * HEARTBEAT
        while not all(t.written for t in transports):
            assert time.monotonic() < deadline, "a stream got no heartbeat after the stall"
            await asyncio.sleep(0)
        for _ in range(1000):  # more turns of the loop, for any beat still to come
            await asyncio.sleep(0)
        hub.close()
        # One beat each for the stall, one more that may have come due since, and one
        # for each whole interval since then on a slow machine.
        allowed = 2 + int((time.monotonic() - resumed) / HEARTBEAT)
        return [len(t.written) for t in transports], allowed

    beats, allowed = asyncio.run(scenario())
    assert max(beats) <= allowed, (beats, allowed)
    assert min(beats) >= 1, beats
