"""The smaller stand-ins for uvicorn's queues of waiters behave as what they replace."""

from __future__ import annotations

import asyncio
from collections import deque

import pytest

from feed.footprint import Pipeline, Signal


@pytest.mark.anyio
async def test_a_signal_wakes_every_waiter_once_set_and_stays_set_until_cleared() -> None:
    signal = Signal()
    waiters = [asyncio.ensure_future(signal.wait()) for _ in range(3)]
    await asyncio.sleep(0)  # let each start waiting
    assert not any(w.done() for w in waiters) and not signal.is_set()
    signal.set()
    assert await asyncio.gather(*waiters) == [True, True, True]
    assert await signal.wait() is True  # set: no wait at all
    signal.clear()
    late = asyncio.ensure_future(signal.wait())
    await asyncio.sleep(0)
    assert not late.done()
    signal.set()
    assert await late is True


@pytest.mark.anyio
async def test_a_cancelled_waiter_leaves_the_others_waiting_and_nothing_behind() -> None:
    signal = Signal()
    leaving = asyncio.ensure_future(signal.wait())
    staying = asyncio.ensure_future(signal.wait())
    await asyncio.sleep(0)
    leaving.cancel()
    with pytest.raises(asyncio.CancelledError):
        await leaving
    assert not staying.done()
    signal.set()
    assert await staying is True
    assert signal._waiters is None  # no list kept once nobody waits


def test_a_pipeline_hands_out_requests_in_the_order_a_deque_would() -> None:
    pipeline, reference = Pipeline(), deque[int]()
    for n in range(4):
        pipeline.appendleft(n)
        reference.appendleft(n)
    assert [pipeline.pop() for _ in range(4)] == [reference.pop() for _ in range(4)] == [0, 1, 2, 3]
    assert not pipeline
