"""Running feed under uvicorn, with shutdown that does not wait on open streams.

uvicorn's graceful shutdown waits for every connection to finish, and an SSE
stream never finishes by itself. So the moment shutdown starts we close the hub,
which ends every stream with a final chunk (clients reconnect elsewhere and
resume), and ``timeout_graceful_shutdown`` bounds whatever is left.
"""

from __future__ import annotations

import logging
import socket

import uvicorn
from starlette.applications import Starlette

from feed.app import create_app
from feed.events import Hub
from feed.settings import Settings

INCOMPLETE = "ASGI callable returned without completing response."


class _DroppedStreamFilter(logging.Filter):
    # The stream endpoint leaves a response incomplete on purpose when it drops a
    # slow subscriber (see stream.py); uvicorn reports that as an error.
    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != INCOMPLETE


class FeedServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, hub: Hub) -> None:
        super().__init__(config)
        self._hub = hub

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self._hub.close()
        await super().shutdown(sockets)


def build_server(settings: Settings, app: Starlette | None = None) -> FeedServer:
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
    return FeedServer(config, app.state.hub)


def serve(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    build_server(settings).run()
