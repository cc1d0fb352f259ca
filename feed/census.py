"""The hub's census: how many streams are open, by channel and format, and what only a
walk over them can tell, for /metrics, /readyz, presence and /admin.

Rationale:

1. On the cost of unauthenticated scrapes. ``/metrics`` and ``/api/presence`` need no
   credential, so nothing they ask of the hub may cost a walk over every open stream
   per request: a few pollers at thousands of streams slowed delivery several times
   over. Open streams by channel and format are counted as streams subscribe and
   unsubscribe; what only a walk can tell (events written, the largest backlog, the
   oldest stream) is walked at most once per ``STATS_MAX_AGE`` however often it is
   asked.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from feed.subscribers import Subscriber

# Seconds a walk over every subscriber answers ``Census.stats`` for (1): scrapes come
# every 15 s or more, presence and the workers' metrics share every second or more.
STATS_MAX_AGE = 1.0
# The channel label of a stream of every channel, in counts by channel and format.
EVERY_CHANNEL = "*"


@dataclass(frozen=True, slots=True)
class HubStats:
    """What the hub holds right now, for /metrics, /readyz, presence and /admin."""

    subscribers: int
    # (channel, or "*" for a stream of every channel; format) -> open streams
    by_channel_format: dict[tuple[str, str], int]
    oldest_opened_at: float | None
    largest_backlog_bytes: int
    # Totals since start: events written to streams, slow streams dropped.
    events_sent: int
    dropped: int


class Census:
    """Counts kept as streams come and go, and the last walk over ``subscribers``."""

    def __init__(self, subscribers: Callable[[], Iterable[Subscriber]]) -> None:
        self._subscribers = subscribers
        self.count = 0
        self._counts: dict[tuple[str, str], int] = {}
        # Counts from streams that have ended; live ones are summed when walked.
        self._sent_by_closed = 0
        self.dropped = 0
        # The last walk (oldest stream, largest backlog, events sent) and its time.
        self._walked: tuple[float | None, int, int] | None = None
        self.walked_at = 0.0

    def joined(self, subscriber: Subscriber) -> None:
        self._count(subscriber, 1)

    def left(self, subscriber: Subscriber) -> None:
        self._count(subscriber, -1)
        self._sent_by_closed += subscriber.sent
        self.dropped += subscriber.overflowed

    def _count(self, subscriber: Subscriber, step: int) -> None:
        fmt = subscriber.format.value
        for name in subscriber.channels or (EVERY_CHANNEL,):
            key = (name, fmt)
            left = self._counts.get(key, 0) + step
            if left:
                self._counts[key] = left
            else:
                del self._counts[key]
        self.count += step

    def by_channel_format(self) -> dict[tuple[str, str], int]:
        """Open streams by (channel, or ``*`` for every channel; format), from the
        running counts: no walk."""
        return dict(self._counts)

    def stats(self) -> HubStats:
        """The running counts, and what a walk tells, walked at most once per
        ``STATS_MAX_AGE`` (1)."""
        walked = self._walked
        if walked is None or time.monotonic() - self.walked_at > STATS_MAX_AGE:
            walked = self._walked = self._walk()
            self.walked_at = time.monotonic()
        oldest, largest, sent = walked
        return HubStats(
            subscribers=self.count,
            by_channel_format=self.by_channel_format(),
            oldest_opened_at=oldest,
            largest_backlog_bytes=largest,
            events_sent=sent,
            dropped=self.dropped,
        )

    def _walk(self) -> tuple[float | None, int, int]:
        # One pass: with several workers each walks its streams every second.
        oldest: float | None = None
        largest = 0
        sent = self._sent_by_closed
        for subscriber in self._subscribers():
            if oldest is None or subscriber.opened_at < oldest:
                oldest = subscriber.opened_at
            largest = max(largest, subscriber.backlog_bytes)
            sent += subscriber.sent
        return oldest, largest, sent
