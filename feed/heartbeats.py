"""The hub's heartbeats: every open stream is beaten once per interval, in its turn.

Rationale:

1. One timer, in turns. Heartbeats come from one hub-wide timer, not one timer per connection;
   what each format gets is encoded once, in sse.py (on heartbeats). The interval is
   cut into ``BEAT_SLICES`` turns, and each stream, as it subscribes, is given one of
   them in rotation: a turn writes to its share of the streams only. All at once, a
   beat was one write per open stream in one go, as long as a whole fan-out, and an
   event that came meanwhile waited for all of it. A stream keeps its turn, so it is
   beaten once per interval; the turns keep to a schedule, not to sleeps after each
   other, so a busy loop does not stretch the interval a page counts on. After the
   loop was held up for longer than an interval, the missed turns are run once each,
   quickly, not once for every interval missed: a stream would get a burst of beats
   just as the server catches up.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping

from feed.sse import HEARTBEATS, Format
from feed.subscribers import Item, Subscriber, item

# The turns an interval is cut into: each stream is beaten in one of them (1).
BEAT_SLICES = 64

# Each format's heartbeat, as the one item every subscriber of it shares.
BEATS: Mapping[Format, Item] = {fmt: item(None, beat) for fmt, beat in HEARTBEATS.items()}


def beat(subscribers: Iterable[Subscriber]) -> None:
    """A heartbeat to each of ``subscribers``, in its format."""
    for subscriber in subscribers:
        subscriber.offer(BEATS[subscriber.format])


class Turns:
    """Every open stream, once, in the turn of the interval it was given (1)."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._turns: list[set[Subscriber]] = [set() for _ in range(BEAT_SLICES)]
        self._next = 0

    def add(self, subscriber: Subscriber) -> None:
        subscriber.beat = self._next
        self._turns[self._next].add(subscriber)
        self._next = (self._next + 1) % BEAT_SLICES

    def discard(self, subscriber: Subscriber) -> None:
        self._turns[subscriber.beat].discard(subscriber)

    def every(self) -> list[Subscriber]:
        """Every stream, each once."""
        return [subscriber for turn in self._turns for subscriber in turn]

    def beat(self, turn: int) -> None:
        """A heartbeat to the streams of ``turn``; a copy, since one may close meanwhile."""
        beat(tuple(self._turns[turn]))

    async def run(self) -> None:
        """Beat each turn in its place of every interval, until cancelled."""
        loop = asyncio.get_running_loop()
        step = self.interval / BEAT_SLICES
        due = loop.time()
        turn = 0
        while True:
            # To the schedule (1); a turn that is late is not skipped, only quick, and
            # after a stall of more than an interval each turn comes once, not once for
            # every interval missed.
            due = max(due + step, loop.time() - self.interval)
            await asyncio.sleep(max(0.0, due - loop.time()))
            self.beat(turn)
            turn = (turn + 1) % BEAT_SLICES
