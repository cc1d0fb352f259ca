"""Running feed under uvicorn, with shutdown that does not wait on open streams.

uvicorn's graceful shutdown waits for every connection to finish, and an SSE
stream never finishes by itself. So the moment shutdown starts we close the hub,
which ends every stream with a final chunk (clients reconnect elsewhere and
resume), and ``timeout_graceful_shutdown`` bounds whatever is left.
"""

from __future__ import annotations

import gc
import logging
import socket

import uvicorn

from feed.app import FeedApp, create_app
from feed.events import Hub
from feed.settings import Settings

INCOMPLETE = "ASGI callable returned without completing response."

# Collect the youngest generation after this many new objects instead of 700. Each
# open stream keeps a few dozen long-lived objects; with thousands of streams the
# default thresholds ran a full collection every couple of seconds under load, each
# one pausing delivery for 250 ms and freeing nothing (docs/benchmarks.md).
GC_THRESHOLD = (50_000, 20, 10)


class _DroppedStreamFilter(logging.Filter):
    # The stream endpoint leaves a response incomplete on purpose when it drops a
    # slow subscriber (see stream.py); uvicorn reports that as an error.
    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != INCOMPLETE


class FeedServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, hub: Hub) -> None:
        super().__init__(config)
        self._hub = hub

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        # Modules, templates and the like live as long as the process: keep them out
        # of every future collection.
        gc.freeze()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self._hub.close()
        await super().shutdown(sockets)


def build_server(settings: Settings, app: FeedApp | None = None) -> FeedServer:
    app = app or create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        timeout_graceful_shutdown=max(1, round(settings.shutdown_timeout)),
        lifespan="on",
    )
    logging.getLogger("uvicorn.error").addFilter(_DroppedStreamFilter())
    return FeedServer(config, app.hub)


def serve(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    gc.set_threshold(*GC_THRESHOLD)
    build_server(settings).run()
