"""Wake-up hints between processes.

A broker moves one small fact: "events up to id N exist". It never carries the
events themselves; a process that hears a hint reads the rows from the store
(see ``relay.py``), so a lost or repeated hint can delay an event but never lose
or repeat it. Implementations are chosen by the scheme of ``FEED_BROKER_URL`` and
imported only when chosen, so a deployment needs only the client library of the
broker it uses.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

# Called with the newest event id the sender knows of, or None for "look anyway"
# (after a (re)connect, when hints may have been missed).
HintHandler = Callable[[int | None], None]

# Called with a presence report from another process (presence.py).
PresenceHandler = Callable[[str], None]

# The channels hints and presence reports travel on, in PostgreSQL and Redis alike.
HINT_CHANNEL = "feed_events"
PRESENCE_CHANNEL = "feed_presence"


@dataclass(frozen=True, slots=True)
class BrokerStatus:
    """What ``/readyz`` and the logs say about a broker."""

    kind: str
    connected: bool
    reconnects: int = 0
    last_error: str | None = None

    def as_dict(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "connected": self.connected,
            "reconnects": self.reconnects,
            "last_error": self.last_error,
        }


class Broker(Protocol):
    """What the relay needs from a broker."""

    async def start(self, on_hint: HintHandler) -> None: ...

    async def publish(self, event_id: int) -> None:
        """Tell every process, this one included, that ``event_id`` is committed.

        Never raises: the event is already committed, and processes that miss the
        hint find it by polling.
        """
        ...

    def status(self) -> BrokerStatus: ...

    def listen_presence(self, handler: PresenceHandler) -> None:
        """Pass presence reports from other processes to ``handler``."""
        ...

    async def share_presence(self, payload: str) -> None:
        """Send this process's presence report to the others; may raise if unreachable."""
        ...

    async def close(self) -> None: ...


def broker_from_url(url: str) -> Broker:
    scheme = urlsplit(url).scheme.split("+")[0]
    if scheme == "memory":
        from feed.brokers.memory import MemoryBroker

        return MemoryBroker()
    if scheme in ("postgresql", "postgres"):
        from feed.brokers.postgres import PostgresBroker

        return PostgresBroker(url)
    if scheme in ("redis", "rediss"):
        from feed.brokers.redis import RedisBroker

        return RedisBroker(url)
    raise ValueError(
        f"Unsupported broker URL scheme {scheme!r}; use memory://, postgresql:// or redis://."
    )
