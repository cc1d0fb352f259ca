"""Wake-up hints between processes.

A broker moves two small facts: "events up to id N exist" and "access changed". It
never carries the events or the changes themselves; a process that hears a hint
reads the rows from the store (see ``relay.py``), so a lost or repeated hint can
delay an event but never lose or repeat it. Implementations are chosen by the scheme
of ``FEED_BROKER_URL`` and imported only when chosen, so a deployment needs only the
client library of the broker it uses.

A process's own commits reach its own relay straight from the store
(storage/announcements.py, on the commit announcement); the broker only tells the
others, as one of the store's commit listeners (``hint_others``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from feed.values import Commit

# Called with the newest event id the sender knows of, or None for "look anyway"
# (after a (re)connect, when hints may have been missed).
HintHandler = Callable[[int | None], None]

# Called when another process changed access (tokens, sessions, memberships,
# channels), or may have while hints were missed.
AccessHandler = Callable[[], None]

# Called with a presence report from another process (presence.py).
PresenceHandler = Callable[[str], None]

# The channels hints and presence reports travel on, in PostgreSQL and Redis alike. A
# hint is an event id, or ACCESS_HINT.
HINT_CHANNEL = "feed_events"
PRESENCE_CHANNEL = "feed_presence"
ACCESS_HINT = "access"


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

    async def start(self, on_hint: HintHandler, on_access: AccessHandler) -> None: ...

    def hint_others(self, commit: Commit) -> None:
        """Tell the other processes what this one committed: its newest event, and
        that access changed if it did (``Store.on_commit``).

        Never waits and never raises: the change is already committed, and processes
        that miss the hint find its events by polling and its access change at their
        next recheck.
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
