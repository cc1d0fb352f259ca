"""Wake-up hints between processes.

A broker moves one small fact: "events up to id N exist". It never carries the
events themselves; a process that hears a hint reads the rows from the store
(see ``relay.py``), so a lost or repeated hint can delay an event but never lose
or repeat it. Implementations are chosen by the scheme of ``FEED_BROKER_URL``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol
from urllib.parse import urlsplit

# Called with the newest event id the sender knows of, or None for "look anyway"
# (after a reconnect, when hints may have been missed).
HintHandler = Callable[[int | None], None]


class Broker(Protocol):
    """What the relay needs from a broker."""

    async def start(self, on_hint: HintHandler) -> None: ...

    async def publish(self, event_id: int) -> None:
        """Tell every process, this one included, that ``event_id`` is committed."""
        ...

    async def close(self) -> None: ...


class MemoryBroker:
    """Hints within one process: the default, for a single worker."""

    def __init__(self) -> None:
        self._on_hint: HintHandler | None = None

    async def start(self, on_hint: HintHandler) -> None:
        self._on_hint = on_hint

    async def publish(self, event_id: int) -> None:
        if self._on_hint is not None:
            self._on_hint(event_id)

    async def close(self) -> None:
        self._on_hint = None


def broker_from_url(url: str) -> Broker:
    scheme = urlsplit(url).scheme
    if scheme == "memory":
        return MemoryBroker()
    raise ValueError(f"Unsupported broker URL scheme {scheme!r}; use memory://.")
