"""A rate per key: at most so many actions a minute, counted in a token bucket per key
(security.py counts posts by identity, or by address without one, in one of these).

Rationale:

1. The rate limiter is a token bucket per key (a client). A bucket that has refilled
   completely says nothing a missing bucket would not, so buckets are dropped
   once full, oldest first, and there are never more than ``MAX_CLIENTS``: a
   flood of addresses cannot exhaust memory (at worst some clients are forgiven).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

MAX_CLIENTS = 100_000  # buckets kept at most (rationale 1)


class RateLimiter:
    """At most ``per_minute`` actions per key a minute, in bursts of up to as many."""

    def __init__(
        self,
        per_minute: int,
        max_keys: int = MAX_CLIENTS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0  # tokens a second
        self.max_keys = max_keys
        self._clock = clock
        # key -> (tokens, when counted); least recently used first.
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, key: str) -> float:
        """Count one action for ``key``: 0.0 if allowed, else the seconds until it would be."""
        now = self._clock()
        tokens, then = self._buckets.pop(key, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - then) * self.rate)
        self._expire(now)
        allowed = tokens >= 1.0
        self._buckets[key] = (tokens - 1.0 if allowed else tokens, now)
        return 0.0 if allowed else (1.0 - tokens) / self.rate

    def take_up_to(self, key: str, most: int) -> int:
        """Count up to ``most`` actions for ``key`` at once, as many as ``take`` one
        by one would allow now; how many."""
        now = self._clock()
        tokens, then = self._buckets.pop(key, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - then) * self.rate)
        self._expire(now)
        taken = max(0, min(most, int(tokens)))
        self._buckets[key] = (tokens - taken, now)
        return taken

    def give_back(self, key: str, count: int) -> None:
        """Return ``count`` actions counted by ``take_up_to`` and not done."""
        found = self._buckets.get(key)
        if found is not None and count > 0:
            tokens, then = found
            self._buckets[key] = (min(self.capacity, tokens + count), then)

    def _expire(self, now: float) -> None:
        refill = self.capacity / self.rate
        while self._buckets:
            _tokens, then = next(iter(self._buckets.values()))
            if now - then < refill and len(self._buckets) < self.max_keys:
                return
            self._buckets.popitem(last=False)
