"""Hints within one process: the default, for a single worker."""

from __future__ import annotations

from feed.brokers import BrokerStatus, HintHandler, PresenceHandler


class MemoryBroker:
    def __init__(self) -> None:
        self._on_hint: HintHandler | None = None

    async def start(self, on_hint: HintHandler) -> None:
        self._on_hint = on_hint

    async def publish(self, event_id: int) -> None:
        if self._on_hint is not None:
            self._on_hint(event_id)

    def listen_presence(self, handler: PresenceHandler) -> None:
        pass  # one process: there is nobody else to hear from

    async def share_presence(self, payload: str) -> None:
        pass

    def status(self) -> BrokerStatus:
        return BrokerStatus("memory", connected=self._on_hint is not None)

    async def close(self) -> None:
        self._on_hint = None
