"""Hints within one process: the default, for a single worker."""

from __future__ import annotations

from typing import TYPE_CHECKING

from feed.brokers import AccessHandler, BrokerStatus, HintHandler, PresenceHandler

if TYPE_CHECKING:
    from feed.values import Commit


class MemoryBroker:
    def __init__(self) -> None:
        self._on_hint: HintHandler | None = None

    async def start(self, on_hint: HintHandler, on_access: AccessHandler) -> None:
        self._on_hint = on_hint

    def hint_others(self, commit: Commit) -> None:
        pass  # one process: its relay has the commit from the store already

    def listen_presence(self, handler: PresenceHandler) -> None:
        pass  # one process: there is nobody else to hear from

    async def share_presence(self, payload: str) -> None:
        pass

    def status(self) -> BrokerStatus:
        return BrokerStatus("memory", connected=self._on_hint is not None)

    async def close(self) -> None:
        self._on_hint = None
