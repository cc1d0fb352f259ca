"""Answers made once and shared by whoever asks for the same one at the same moment,
and turns taken in order: what replays (replays.py) share between the streams that
resume together, and how one client's streams wait for each other.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class Shared(Generic[K, V]):
    """Answers made once per key and shared with whoever asks for the same key, for
    ``ttl`` seconds at most, ``most`` of them at once and, if ``weigh`` tells their
    size, ``most_bytes`` of them in all (replays.py, rationale 1)."""

    def __init__(
        self,
        most: int,
        ttl: float,
        weigh: Callable[[V], int] | None = None,
        most_bytes: int = 0,
    ) -> None:
        self.most = most
        self.ttl = ttl
        self.most_bytes = most_bytes
        self._weigh = weigh
        self._answers: OrderedDict[K, tuple[float, asyncio.Task[V]]] = OrderedDict()

    def weight(self) -> int:
        """The size of the answers made so far (0 without ``weigh``)."""
        if self._weigh is None:
            return 0
        return sum(self._weigh(done) for done in self._made())

    def _made(self) -> list[V]:
        return [
            task.result()
            for _, task in self._answers.values()
            if task.done() and not task.cancelled() and task.exception() is None
        ]

    def __len__(self) -> int:
        return len(self._answers)

    def clear(self) -> None:
        self._answers.clear()

    def __contains__(self, key: K) -> bool:
        found = self._answers.get(key)
        return found is not None and time.monotonic() - found[0] < self.ttl

    async def get(self, key: K, make: Callable[[], Awaitable[V]]) -> V:
        """The answer for ``key``: one already made or being made, or ``make()``'s."""
        now = time.monotonic()
        self._expire(now)
        found = self._answers.get(key)
        if found is None:
            self._shed()
            found = (now, asyncio.ensure_future(make()))
            self._answers[key] = found
            # Let go of it even if no other replay comes along to expire it.
            asyncio.get_running_loop().call_later(self.ttl, self._expire_now)
        task = found[1]
        try:
            # Shielded: one stream that gives up must not cancel the others' query.
            return await asyncio.shield(task)
        except BaseException:
            # A failed query is not kept: the next stream to ask tries again.
            if task.done() and self._answers.get(key) is found:
                del self._answers[key]
            raise

    def _expire_now(self) -> None:
        self._expire(time.monotonic(), room=0)

    def _expire(self, now: float, room: int = 1) -> None:
        """Drop what is older than ``ttl``, then the oldest until ``room`` more fit."""
        while self._answers:
            key, (made_at, _) = next(iter(self._answers.items()))
            if now - made_at < self.ttl and len(self._answers) + room <= self.most:
                return
            del self._answers[key]

    def _shed(self) -> None:
        """Drop the oldest answers while they weigh more than ``most_bytes`` in all.
        Asked when an answer is added, not at every ``get``: weighing walks them."""
        if self._weigh is None:
            return
        while len(self._answers) > 1 and self.weight() > self.most_bytes:
            self._answers.popitem(last=False)


class Turns:
    """At most ``most`` holders at once per key; the others wait their turn, in
    order. A key is kept only while someone holds or waits for it."""

    def __init__(self, most: int) -> None:
        self.most = most
        self._keys: dict[str, tuple[asyncio.Semaphore, list[int]]] = {}

    def __len__(self) -> int:
        return len(self._keys)

    def users(self, key: str) -> int:
        """How many hold or wait for a turn of ``key``."""
        found = self._keys.get(key)
        return 0 if found is None else found[1][0]

    @asynccontextmanager
    async def turn(self, key: str) -> AsyncIterator[None]:
        give_back = await self.take(key)
        try:
            yield
        finally:
            give_back()

    async def take(self, key: str) -> Callable[[], None]:
        """Wait for a turn of ``key``; what gives it back (calling it again does
        nothing), for a holder whose turn ends before its block does."""
        found = self._keys.get(key)
        if found is None:
            found = self._keys[key] = (asyncio.Semaphore(self.most), [0])
        gate, users = found
        users[0] += 1
        try:
            await gate.acquire()
        except BaseException:
            self._leave(key, users)
            raise
        held = True

        def give_back() -> None:
            nonlocal held
            if held:
                held = False
                gate.release()
                self._leave(key, users)

        return give_back

    def _leave(self, key: str, users: list[int]) -> None:
        users[0] -= 1
        if not users[0]:
            del self._keys[key]
