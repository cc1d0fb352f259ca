"""The application factory, and the ASGI app it makes.

Rationale:

1. On streams served directly. ``GET /events`` (and ``HEAD``) is served straight from
   ``FeedApp``. A stream lives for hours and carries every event. Behind Starlette's
   middleware and router each one held a dozen more coroutine frames and closures,
   and every write passed through two more wrappers; with thousands of streams those
   objects made the garbage collector's full passes long enough to show in p99
   latency (docs/benchmarks.md). The route stays in Starlette's table too, so other
   methods get its 405 and the OpenAPI test sees it.
2. On posts served directly. ``POST /api/channels/{channel}/posts`` is the request
   feed answers most often, thousands a second from scripts, and Starlette's layers
   around it (its two exception middlewares, ours for the security headers, a router
   that tries every route in turn, and a wrapper per endpoint, each with its own
   closure around ``send``) cost about a quarter of a refused post's CPU
   (docs/benchmarks.md, the request path). ``FeedApp`` matches the routes in
   ``DIRECT`` itself and calls their endpoints with one ``Request``, adding the
   security headers (``Security.finish``) and answering errors with the app's own
   handlers, chosen as Starlette chooses them (``errors.handler_for``). What a client
   sees is the same: the request id and log line (logs.RequestLog, which stays
   outside both paths), the headers, the refusals. A request with an ``Origin``
   header, when CORS is configured, goes the long way, through Starlette's CORS
   middleware. A direct route stays in Starlette's table for OpenAPI and for other
   methods' 405, and no route before it may match its requests (tests/test_app.py).
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Match, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Message, Receive, Scope, Send

from feed import (
    access,
    admin,
    api,
    batch,
    channel_api,
    fairness,
    health,
    kiosk,
    logs,
    metrics,
    openapi,
    pages,
    presence,
    recent,
    search_pages,
    signin,
    threads,
    unread,
    viewers,
)
from feed.brokers import broker_from_url
from feed.errors import HANDLERS, Handler, Handlers, error_response, handler_for
from feed.events import Hub
from feed.inputs import address_not_utf8
from feed.live_searches import LiveSearches
from feed.reactions import Flusher
from feed.relay import Relay
from feed.render import PACKAGE_DIR, Renderer
from feed.replays import Replays
from feed.runtime import Runtime
from feed.security import SCOPE_KEY, Security, SecurityHeaders, shared
from feed.settings import Settings
from feed.store import Store
from feed.stream import EventStream
from feed.watch import Watch

logger = logging.getLogger("feed.app")

# HEAD too: it gets a GET's status under the same per-client limit, and no stream.
STREAM = frozenset({"GET", "HEAD"})


def from_env() -> FeedApp:
    """The app for the ``FEED_*`` settings in the environment, for an ASGI server that
    builds it: ``uvicorn --factory feed.app:from_env``. What ``feed serve`` does
    around the app and another server does not is in docs/deployment.md (Other ASGI
    servers). Logging, the garbage collector's thresholds and the open-files limit are
    set up as ``feed serve`` sets them, since they belong to the process, not the
    server."""
    settings = Settings.from_env(os.environ)
    from feed.server import configure_process  # which imports this module

    configure_process(settings)
    return create_app(settings)


def create_app(settings: Settings) -> FeedApp:
    """A feed app for ``settings``; the lifespan opens the store and starts the relay."""
    hub = Hub(settings.heartbeat)
    security = Security(settings)

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[dict[str, Any]]:
        store = Store.from_url(settings.database_url, notify=settings.broker_kind == "postgresql")
        await store.create_schema()
        gate = access.Access(settings, store)
        await gate.start()
        broker = broker_from_url(settings.broker_url)
        renderer = Renderer(reactions=settings.reaction_set)
        meters = metrics.Metrics(
            hub.stats, broker.status, gate.private_channels, metrics.shared_dir()
        )
        relay = Relay(store, broker, hub, renderer, settings.poll_interval, meters)
        watching = presence.Presence(hub, broker, settings.presence_interval, gate.private_channels)
        broker.listen_presence(watching.on_report)
        # Which channels are private is learnt from the log before the hub sees a batch
        # (access.py, on privacy learnt from the log).
        relay.on_delivered(gate.learn)
        relay.on_delivered(watching.delivered)
        # The store's other listeners (storage/announcements.py, on the commit
        # announcement): the relay is one (its start), the other processes another, this
        # one's access a third.
        watch = Watch(gate, settings.access_recheck)
        watch.on_privacy(hub.resync_outsiders)
        store.on_commit(watch.committed)
        store.on_commit(broker.hint_others)
        store.on_commit(meters.committed)
        relay.on_access(watch.follow)
        await relay.start()
        # Reaction events left pending, here or by a process that stopped (reactions.py).
        flusher = Flusher(store, settings.reaction_window, settings.poll_interval)
        await flusher.start()
        hub.start()
        watching.start()
        meters.start()
        watch.start()
        logger.info("feed is up: %s", settings.describe())
        if not await store.tokens():
            logger.warning(
                "no tokens yet: nobody can post. Make an admin with "
                "`feed token create NAME --role admin`, then sign in at /signin."
            )
        replays = Replays(store, renderer)
        relay.on_rollback(replays.forget)
        live = LiveSearches(settings.max_live_searches_per_client, settings.max_live_searches)
        rt = Runtime(
            settings,
            store,
            broker,
            hub,
            relay,
            renderer,
            meters,
            watching,
            gate,
            replays,
            watch,
            live,
        )
        try:
            yield {"feed": rt}
        finally:
            hub.close()
            await watch.close()
            await watching.close()
            await meters.close()
            await flusher.close()
            await relay.close()
            await gate.close()
            store.close()

    routes = [
        *channel_api.routes,
        *api.routes,
        *batch.routes,
        *admin.routes,
        *pages.routes,
        *kiosk.routes,
        *search_pages.routes,
        *threads.routes,
        *unread.routes,
        *signin.routes,
        *health.routes,
        Route("/events", EventStream(), methods=["GET"]),
        Route("/openapi.json", openapi.endpoint, methods=["GET"]),
        Mount("/static", StaticFiles(directory=PACKAGE_DIR / "static"), name="static"),
    ]
    handlers: dict[type[Exception], Handler] = dict(HANDLERS)
    handlers.update(viewers.HANDLERS.items())
    app = Starlette(
        routes=routes,
        middleware=security.middleware(),
        exception_handlers=dict(handlers),
        lifespan=lifespan,
    )
    # No route ends in a slash, and Starlette's redirect to one without it is built
    # from the request's Host header and keeps any method: a 404, as for any unknown
    # path, is the clearer answer.
    app.router.redirect_slashes = False
    return FeedApp(
        app,
        hub,
        security,
        handlers,
        DIRECT,
        reads_per_client=settings.reads_per_client,
        # As many as one address may hold connections (fairness.py, 7).
        waiting_per_client=2 * settings.max_streams_per_client,
    )


# Routes served without Starlette's layers (2).
DIRECT = (api.CREATE_POST,)


class FeedApp:
    """The ASGI app: ``GET /events`` (and ``HEAD``) straight from the server (1), the
    routes in ``direct`` nearly so (2), the rest through Starlette."""

    def __init__(
        self,
        starlette: Starlette,
        hub: Hub,
        security: Security,
        handlers: Handlers,
        direct: Iterable[Route] = (),
        *,
        reads_per_client: int,
        waiting_per_client: int,
    ) -> None:
        self.starlette = starlette
        # Around Starlette, so that its own 500s get the headers too.
        self._starlette = SecurityHeaders(starlette, security)
        self.hub = hub
        # Streams get their headers and per-client limit here (security.py, on streams).
        self.security = security
        self.handlers = handlers
        self.direct = tuple(direct)
        self._stream = EventStream()
        self.fair = fairness.Fair(self._routed, security, reads_per_client, waiting_per_client)
        self._logged = logs.RequestLog(self.fair)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/events" and scope["method"] in STREAM:
            # The id lives as long as the stream's task; no wrapper on its writes.
            logs.request_id.set(logs.new_id(scope["headers"]))
            await self.security.serve_stream(self._stream, scope, receive, send)
        else:
            if fairness.counted(scope):
                scope[fairness.GONE] = fairness.gone_from(send)
            # Reads ahead this request asks for wait for its answer (recent.py's 3).
            with recent.after_answer() as answered:

                async def send_answered(message: Message) -> None:
                    if message["type"] == "http.response.start":
                        answered()
                    await send(message)

                await self._logged(scope, receive, send_answered)

    async def _routed(self, scope: Scope, receive: Receive, send: Send) -> None:
        refused = address_not_utf8(scope) if scope["type"] == "http" else None
        if refused is not None:
            # Before any route reads the path (inputs.py, on paths).
            answer = SecurityHeaders(error_response(400, refused), self.security)
            await answer(scope, receive, send)
            return
        route = self._direct_route(scope)
        if route is None:
            await self._starlette(scope, receive, send)
        else:
            await self._serve(route, scope, receive, send)

    def _direct_route(self, scope: Scope) -> Route | None:
        if scope["type"] != "http" or self.direct == ():
            return None
        if self.security.origins and any(name == b"origin" for name, _ in scope["headers"]):
            return None  # CORS: Starlette's middleware answers it (2)
        for route in self.direct:
            match, found = route.matches(scope)
            if match is Match.FULL:
                scope.update(found)
                scope["route"] = route
                return route
        return None

    async def _serve(self, route: Route, scope: Scope, receive: Receive, send: Send) -> None:
        """``route``'s endpoint, with what Starlette's layers would add (2)."""
        scope["app"] = self.starlette
        scope[SCOPE_KEY] = self.security
        finish = self.security.finish
        private = not shared(scope["path"])
        started = False

        async def send_finished(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = finish(message.get("headers", []), private)
            await send(message)

        request = Request(scope, receive, send)
        try:
            response = await route.endpoint(request)
            await response(scope, receive, send_finished)
        except Exception as exc:
            if started:
                raise
            handler, expected = handler_for(self.handlers, exc)
            answer = await handler(request, exc)
            await answer(scope, receive, send_finished)
            if not expected:
                raise  # as Starlette does, for the server to log too
