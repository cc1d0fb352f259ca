"""The part the PostgreSQL and Redis brokers share: a connection that listens for
hints, reconnects with backoff when it is lost, and says how it is doing.

Rationale:

1. After every successful (re)connect the relay is told to look anyway
   (``on_hint(None)``), and that access may have changed (``on_access()``): hints
   sent while the connection was down are gone, but the events and the grants are in
   the database, so one catch-up read and one recheck find them.
2. Backoff doubles from 0.1 s to 10 s with jitter, so a fleet of workers that lost
   the same server does not reconnect in lockstep.
3. The listening connection is pinged when it has been quiet for a while: a
   connection cut without a FIN (a dead NAT entry, a failed-over server) would
   otherwise look healthy forever while hints go nowhere.
4. A process hears its own hints back from the server. They cost a look that finds
   nothing new, and one more recheck after an access change: its relay had the
   commit from the store already (storage/announcements.py, on the
   commit announcement).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from abc import ABC, abstractmethod
from collections.abc import Callable

from feed import tasks
from feed.brokers import ACCESS_HINT, AccessHandler, BrokerStatus, HintHandler, PresenceHandler

logger = logging.getLogger("feed.broker")

BACKOFF_MIN = 0.1
BACKOFF_MAX = 10.0
PING_INTERVAL = 10.0
FIRST_CONNECT_WAIT = 5.0


class ListeningBroker(ABC):
    kind = "listening"

    def __init__(self, url: str) -> None:
        self._url = url
        self._on_hint: HintHandler | None = None
        self._on_access: AccessHandler | None = None
        self._on_presence: PresenceHandler | None = None
        self._task: asyncio.Task[None] | None = None
        self._connected = False
        self._connections = 0
        self._last_error: str | None = None
        self._first = asyncio.Event()

    @abstractmethod
    async def _listen(self, connected: Callable[[], None]) -> None:
        """Connect, subscribe, call ``connected()``, then pass hints to ``_heard``
        until the connection fails (raise) or the task is cancelled."""

    async def start(self, on_hint: HintHandler, on_access: AccessHandler) -> None:
        """Start listening; waits briefly for the first connection, then carries on
        without it (polling covers the gap, and ``/readyz`` reports it)."""
        self._on_hint = on_hint
        self._on_access = on_access
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"{self.kind}-hints")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._first.wait(), FIRST_CONNECT_WAIT)

    async def close(self) -> None:
        self._on_hint = None
        self._on_access = None
        self._on_presence = None
        await tasks.stop(self._task)
        self._task = None
        self._connected = False

    def status(self) -> BrokerStatus:
        return BrokerStatus(
            self.kind,
            connected=self._connected,
            reconnects=max(0, self._connections - 1),
            last_error=self._last_error,
        )

    def listen_presence(self, handler: PresenceHandler) -> None:
        self._on_presence = handler

    def _presence(self, payload: str) -> None:
        if self._on_presence is not None:
            self._on_presence(payload)

    def _heard(self, payload: str | bytes) -> None:
        """A hint from the server: an event id, or that access changed."""
        if payload in (ACCESS_HINT, ACCESS_HINT.encode()):
            self._access()
        else:
            self._hint(parse_hint(payload))

    def _hint(self, event_id: int | None) -> None:
        if self._on_hint is not None:
            self._on_hint(event_id)

    def _access(self) -> None:
        if self._on_access is not None:
            self._on_access()

    def _on_connected(self) -> None:
        self._connected = True
        self._connections += 1
        self._first.set()
        if self._connections > 1:
            logger.warning("%s broker connection is back; catching up", self.kind)
        self._hint(None)
        self._access()

    async def _run(self) -> None:
        delay = BACKOFF_MIN
        while True:
            try:
                await self._listen(self._on_connected)
                raise ConnectionError("the listening connection ended")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                was_connected, self._connected = self._connected, False
                # Driver messages span several lines; a log line should not.
                self._last_error = " ".join(f"{type(exc).__name__}: {exc}".split())
                if was_connected:
                    delay = BACKOFF_MIN
                    logger.warning(
                        "%s broker connection lost (%s); reconnecting", self.kind, self._last_error
                    )
                else:
                    logger.warning(
                        "%s broker unreachable (%s); retrying in %.1f s",
                        self.kind,
                        self._last_error,
                        delay,
                    )
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, BACKOFF_MAX)


def parse_hint(payload: str | bytes) -> int | None:
    """The event id in a hint, or None for a payload feed did not send."""
    try:
        return int(payload)
    except ValueError:
        return None
