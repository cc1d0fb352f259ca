"""Recent answers: what was read from the database a moment ago, kept for a moment.

The gate keeps the answers behind permission checks (tokens, revocations, sign-outs,
memberships) this way, so that a burst of requests costs one query rather than one
each (access.py, on recent answers).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

# How long an answer is kept, in seconds: how late a change made elsewhere may be
# seen by a check that uses it.
RECENT_TTL = 1.0
# At most this many answers are kept; past it they are all let go.
RECENT_MAX = 10_000


class Missing:
    """What ``RecentAnswers.get`` answers for a key it has no recent answer for."""


MISSING = Missing()
K = TypeVar("K")
V = TypeVar("V")


class RecentAnswers(Generic[K, V]):
    """Answers younger than ``RECENT_TTL`` seconds, at most ``RECENT_MAX`` of them."""

    def __init__(self) -> None:
        self._answers: dict[K, tuple[float, V]] = {}

    def get(self, key: K) -> V | Missing:
        found = self._answers.get(key)
        if found is None or time.monotonic() - found[0] > RECENT_TTL:
            return MISSING
        return found[1]

    async def get_or_load(self, key: K, load: Callable[[], Awaitable[V]]) -> V:
        """The recent answer for ``key``, or ``load()``'s, kept for next time."""
        found = self.get(key)
        if isinstance(found, Missing):
            found = await load()
            self.put(key, found)
        return found

    def put(self, key: K, value: V) -> None:
        if len(self._answers) >= RECENT_MAX:
            self._answers.clear()  # rare, and only costs queries
        self._answers[key] = (time.monotonic(), value)

    def clear(self) -> None:
        self._answers.clear()

    def drop(self, which: Callable[[V], bool]) -> None:
        for key in [k for k, (_at, v) in self._answers.items() if which(v)]:
            del self._answers[key]
