"""Reactions in a running process: which reactions there are, and the flusher that
writes the events of toggles left pending by the coalescing (storage/reactions.py,
on coalescing).

Rationale:

1. One flusher per process, told by its store when a toggle is left pending and when
   that post's window ends; it sleeps until the earliest such end, then writes an
   event for every post whose window has ended, whichever process left it pending.
   Writes go through the one write lock, so two flushers never report the same
   toggles twice: the second finds nothing pending.
2. It also flushes at start-up, and sweeps every ``sweep`` seconds, for toggles left
   pending by a process that stopped before its window ended (a crash, a deploy).
   Those wait for one sweep at most, and any toggle of that post writes them at once.
3. A failed flush (the database unavailable) is retried at the next sweep; nothing
   is lost, since the toggles stay pending in the database.
4. A reaction in a path is one of the set, compared as sent. Anything else, however
   long or odd, is a 404 that names the reactions there are and echoes at most a few
   characters of what came (a %-escape that is not UTF-8 never gets here: inputs.py,
   on paths).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Sequence

from feed import tasks
from feed.errors import ClientError
from feed.store import Store, StoreUnavailable

logger = logging.getLogger("feed.reactions")

ECHOED = 20  # characters of an unknown reaction repeated in the answer (4)


def reaction_in(raw: str, allowed: Sequence[str]) -> str:
    """``raw`` if it is one of the reactions ``allowed``; else a 404 (4)."""
    if raw in allowed:
        return raw
    shown = raw[:ECHOED].encode("utf-8", "replace").decode("utf-8")
    raise ClientError(
        404, f"There is no reaction {shown!r}; the reactions are {' '.join(allowed)}.", shown
    )


class Flusher:
    """Writes the reaction events of posts whose window has ended (1, 2)."""

    def __init__(self, store: Store, window: float, sweep: float) -> None:
        self._store = store
        self._window = window
        self._sweep = sweep
        self._next = math.inf  # the earliest end of a pending window known here
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.flushes = 0

    def due(self, at: float) -> None:
        """A toggle was left pending until ``at`` (a POSIX time)."""
        if at < self._next:
            self._next = at
            self._wake.set()

    async def start(self) -> None:
        self._store.on_pending(self.due)
        await self._flush()  # what a stopped process left pending (2)
        self._task = asyncio.get_running_loop().create_task(self._run(), name="feed-reactions")

    async def close(self) -> None:
        await tasks.stop(self._task)
        self._task = None

    async def _run(self) -> None:
        while True:
            wait = min(self._sweep, max(0.0, self._next - time.time()))
            try:
                await asyncio.wait_for(self._wake.wait(), wait)
                self._wake.clear()
                continue  # an earlier end: sleep again until it
            except TimeoutError:
                pass
            await self._flush()

    async def _flush(self) -> None:
        self._next = math.inf
        try:
            later = await self._store.flush_reactions(self._window)
        except StoreUnavailable as exc:
            logger.warning("cannot write pending reactions (%s); retrying", exc.__cause__)
            return
        except Exception:
            logger.exception("could not write pending reactions; retrying")
            return
        self.flushes += 1
        if later is not None:
            self.due(later)
