"""Waiting on a condition with a deadline: the one polling loop of the tests.

What a test waits for is outside it (a server process, a log file, a count another
process keeps), so there is nothing to block on: it asks again every ``pause``
seconds until the answer is right or the deadline has passed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def until(
    ask: Callable[[], T],
    ok: Callable[[T], object] = bool,
    *,
    timeout: float,
    failure: Callable[[T], BaseException] = AssertionError,
    pause: float = 0.05,
) -> T:
    """``ask()`` until ``ok`` holds for its answer, which is returned. After
    ``timeout`` seconds, raises ``failure`` of the last answer."""
    deadline = time.monotonic() + timeout
    while not ok(answer := ask()):
        if time.monotonic() > deadline:
            raise failure(answer)
        time.sleep(pause)  # polling an outside condition, with a deadline
    return answer


async def until_async(ok: Callable[[], object], *, seconds: float, pause: float = 0.005) -> None:
    """``until`` inside an event loop, for a condition that the loop's other tasks
    make true: waits without blocking them."""
    deadline = time.monotonic() + seconds
    while not ok():
        if time.monotonic() > deadline:
            raise AssertionError("the condition did not hold in time")
        await asyncio.sleep(pause)  # polling, with a deadline
