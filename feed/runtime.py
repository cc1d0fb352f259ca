"""The objects one running app owns, created by its lifespan."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.requests import HTTPConnection

from feed.brokers import Broker
from feed.events import Hub
from feed.live_searches import LiveSearches
from feed.relay import Relay
from feed.render import Renderer
from feed.settings import Settings
from feed.store import Store

if TYPE_CHECKING:
    from feed.access import Access
    from feed.metrics import Metrics
    from feed.presence import Presence
    from feed.replays import Replays
    from feed.watch import Watch


@dataclass(frozen=True, slots=True)
class Runtime:
    settings: Settings
    store: Store
    broker: Broker
    hub: Hub
    relay: Relay
    renderer: Renderer
    metrics: Metrics
    presence: Presence
    access: Access
    replays: Replays
    watch: Watch
    live_searches: LiveSearches


def runtime_of(state: Mapping[str, Any]) -> Runtime:
    """The runtime from a request's lifespan state (``request.state`` or ``scope["state"]``)."""
    found = state["feed"]
    assert isinstance(found, Runtime)
    return found


def runtime(request: HTTPConnection) -> Runtime:
    return runtime_of(request.scope["state"])
