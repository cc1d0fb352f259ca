"""``/admin``: channels, live connections, recent events and the broker, kept live.

Only admins of the whole feed get in (``admins_only``); others are sent to sign
in, or refused with 403 once signed in.

Rationale:

1. The page streams from its own endpoint, not ``/events``: what it shows is
   derived state (hub counters, broker status), not the event log as readers see
   it. Admin tabs are few, so sse-starlette's ``EventSourceResponse`` and its tasks
   per connection cost nothing that matters here, and admins watching the hub do
   not show up in the hub's own counts.
2. Every (re)connect starts with every panel in full, so a page that lost its
   stream needs no resume id: after the first messages it is whole again.
3. Each tick re-renders the connections and broker panels and sends one only when
   its HTML differs from what this connection sent last. Ages are shown in whole
   minutes, so an idle server sends nothing but heartbeats.
4. New log events are polled from the store, like the relay does, so events
   written by other processes show up too. Rows are prepended; the server knows
   which rows the page holds and removes the oldest with an out-of-band delete in
   the same message, so the list stays bounded without any page script.
5. A burst of more events than the list shows replaces the whole list instead of
   streaming rows that would be deleted straight away.
6. A channel event re-renders the channels table, so changes made through the
   API, the CLI or another tab appear here.
7. Shutdown: the server closes the hub first (server.py) and sse-starlette sets
   our shutdown event once uvicorn starts exiting; either ends the loop within a
   tick, and the response ends with its final chunk inside the grace period.
8. The stream opens with ``hello`` and beats like an HTML ``/events`` stream, so
   feed.js shows the same live/offline badge and reloads the page after a deploy.
9. The stream shows every channel's events, private ones too, so it is rechecked like
   ``/events``: it registers with the access recheck (watch.py) for as long as it
   lasts, which ends it, with its final chunk, once the admin's token is revoked or
   their session is signed out of or expires. The reconnect is then sent to sign in.
"""

from __future__ import annotations

import functools
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
from markupsafe import Markup
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from feed.access import check_csrf
from feed.errors import ClientError
from feed.events import HubStats
from feed.identity import Identity
from feed.inputs import (
    MAX_DESCRIPTION_CHARS,
    MAX_TITLE_CHARS,
    channel_name,
    read_form,
    text_field,
)
from feed.models import FeedEvent
from feed.runtime import Runtime, runtime
from feed.sse import CLOSING, SEP, Format, frame, hello
from feed.store import ChannelExists, ChannelNotFound, StoreError
from feed.viewers import SignInFirst, viewer
from feed.watch import Watch

logger = logging.getLogger("feed.admin")

RECENT_ROWS = 30  # log events the page shows
TICK = 1.0  # seconds between looks at the hub, the broker and the log
SHUTDOWN_GRACE = 2.0  # at most this long for the stream to end by itself on shutdown
SEND_TIMEOUT = 30.0  # a tab that takes no bytes for this long is dropped
# Search engines must not index operator pages, even if a proxy rule slips.
NO_INDEX = {"X-Robots-Tag": "noindex"}
CHANNELS_PANEL = "partials/admin_channels.html"


# -- rendering ---------------------------------------------------------------------


def age_text(seconds: float) -> str:
    """A coarse age: it changes once a minute, so a live panel is not re-sent every tick."""
    minutes = int(seconds // 60)
    if minutes < 1:
        return "under a minute"
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"


def size_text(size: int) -> str:
    if size < 1024:
        return f"{size} B"
    if size < 1024 * 1024:
        return f"{size / 1024:.1f} KiB"
    return f"{size / (1024 * 1024):.1f} MiB"


def connections_context(stats: HubStats, now: float) -> dict[str, Any]:
    """The hub's counts as a channel x format table ("*" = every channel, first)."""
    formats = [f.value for f in Format]
    channels = sorted({c for c, _ in stats.by_channel_format}, key=lambda c: (c != "*", c))
    rows = [(c, [stats.by_channel_format.get((c, f), 0) for f in formats]) for c in channels]
    oldest = None if stats.oldest_opened_at is None else now - stats.oldest_opened_at
    return {
        "stats": stats,
        "formats": formats,
        "rows": rows,
        "oldest": None if oldest is None else age_text(max(0.0, oldest)),
        "slowest": size_text(stats.largest_backlog_bytes),
    }


def connections_html(rt: Runtime) -> str:
    context = connections_context(rt.hub.stats(), time.time())
    limit = size_text(rt.settings.subscriber_backlog)
    return rt.renderer.template("partials/admin_connections.html", limit=limit, **context)


def broker_html(rt: Runtime) -> str:
    return rt.renderer.template(
        "partials/admin_broker.html",
        broker=rt.broker.status(),
        backend=rt.store.backend,
        delivered=rt.relay.delivered,
        release=rt.settings.release,
    )


def event_html(rt: Runtime, event: FeedEvent, drop: list[int] | None = None) -> str:
    """One row of the recent list; ``drop`` names rows to delete from the page with it."""
    text = rt.renderer.event_text(event)
    return rt.renderer.template(
        "partials/admin_event.html", event=event, text=text, drop=drop or []
    )


def recent_html(rt: Runtime, events: list[FeedEvent]) -> str:
    rows = [Markup(event_html(rt, e)) for e in reversed(events)]
    return rt.renderer.template("partials/admin_recent.html", rows=rows, max_rows=RECENT_ROWS)


async def channels_table_html(rt: Runtime, row_error: dict[str, str] | None = None) -> str:
    channels = await rt.store.list_channels()
    return rt.renderer.template(
        "partials/admin_channel_table.html",
        channels=channels,
        row_error=row_error,
        max_title=MAX_TITLE_CHARS,
    )


async def newest_events(rt: Runtime) -> tuple[list[FeedEvent], int]:
    """The newest events (oldest first), and the id the log is read up to."""
    return await rt.store.newest_events(RECENT_ROWS)


# -- the page and its forms ----------------------------------------------------------


async def admin_page(request: Request) -> HTMLResponse:
    rt = runtime(request)
    events, _ = await newest_events(rt)
    channels_panel = rt.renderer.template(CHANNELS_PANEL, **await _channels_panel(rt))
    return rt.renderer.page(
        "admin.html",
        headers=NO_INDEX,
        release=rt.settings.release,
        heartbeat=rt.settings.heartbeat,
        **request.state.viewer.context(),
        # Each part is rendered (and escaped) by its own template, as the stream does.
        channels_panel=Markup(channels_panel),
        connections=Markup(connections_html(rt)),
        broker=Markup(broker_html(rt)),
        recent=Markup(recent_html(rt, events)),
    )


async def _channels_panel(
    rt: Runtime,
    form: dict[str, str] | None = None,
    error: str | None = None,
    row_error: dict[str, str] | None = None,
) -> dict[str, Any]:
    values = {k: (form or {}).get(k, "") for k in ("name", "title", "description")}
    return {
        "form": values,
        "error": error,
        "table": Markup(await channels_table_html(rt, row_error)),
        "max_title": MAX_TITLE_CHARS,
        "max_description": MAX_DESCRIPTION_CHARS,
    }


async def _panel(rt: Runtime, status: int = 200, **context: Any) -> HTMLResponse:
    """The channels panel as the answer to one of its forms."""
    panel = await _channels_panel(rt, **context)
    return rt.renderer.page(CHANNELS_PANEL, status, NO_INDEX, **panel)


def _failure(exc: ClientError | StoreError) -> tuple[int, str]:
    """The status and sentence for a form error the page shows inline."""
    if isinstance(exc, ClientError):
        return exc.status, exc.message
    if isinstance(exc, ChannelExists):
        return 409, str(exc)
    if isinstance(exc, ChannelNotFound):
        return 404, str(exc)
    raise exc  # the database is unavailable: errors.py answers 503 with Retry-After


def new_channel_fields(form: dict[str, str]) -> tuple[str, str, str]:
    """Name, title and description from the create form, validated like the API's."""
    name = channel_name({"name": form.get("name", "").strip()})
    title = text_field(form, "title", MAX_TITLE_CHARS).strip()
    description = form.get("description", "")
    if description.strip():
        description = text_field(form, "description", MAX_DESCRIPTION_CHARS).strip()
    return name, title, description.strip()


async def create_channel(request: Request) -> HTMLResponse:
    rt = runtime(request)
    form: dict[str, str] = {}
    try:
        form = await read_form(request, rt.settings.max_body_bytes)
        change = await rt.store.create_channel(*new_channel_fields(form))
    except (ClientError, StoreError) as exc:
        status, message = _failure(exc)
        return await _panel(rt, status, form=form, error=message)
    rt.metrics.announced(change.event_id)
    return await _panel(rt)


async def retitle_channel(request: Request) -> HTMLResponse:
    """Renaming changes the title; the name is fixed, as links and kiosk URLs carry it."""
    rt = runtime(request)
    name = request.path_params["channel"]
    form: dict[str, str] = {}
    try:
        form = await read_form(request, rt.settings.max_body_bytes)
        title = text_field(form, "title", MAX_TITLE_CHARS).strip()
        change = await rt.store.update_channel(name, title=title)
    except (ClientError, StoreError) as exc:
        status, message = _failure(exc)
        if isinstance(exc, ChannelNotFound):  # no row to show it in
            return await _panel(rt, status, error=message)
        row_error = {"name": name, "message": message, "title": form.get("title", "")}
        return await _panel(rt, status, row_error=row_error)
    rt.metrics.announced(change.event_id)
    return await _panel(rt)


async def archive_channel(request: Request) -> HTMLResponse:
    rt = runtime(request)
    name = request.path_params["channel"]
    archived = request.url.path.endswith("/archive")
    try:
        change = await rt.store.set_archived(name, archived)
    except StoreError as exc:
        status, message = _failure(exc)
        return await _panel(rt, status, error=message)
    rt.metrics.announced(change.event_id)
    return await _panel(rt)


# -- the live stream -----------------------------------------------------------------


class AdminFeed:
    """What one admin stream has sent, so it sends only what changed."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.sent: dict[str, str] = {}
        self.read_up_to = 0
        self.shown: deque[int] = deque()  # row ids on the page, newest first

    def _panel(self, name: str, html: str) -> list[bytes]:
        if self.sent.get(name) == html:
            return []
        self.sent[name] = html
        return [frame(html, event=name)]

    async def snapshot(self) -> list[bytes]:
        """Every panel in full, whatever was sent before."""
        self.sent.clear()
        return [
            *await self._recent_all(),
            *await self._channels(),
            *self._panel("connections", connections_html(self.rt)),
            *self._panel("broker", broker_html(self.rt)),
        ]

    async def tick(self) -> list[bytes]:
        new = await self.rt.store.events_after(self.read_up_to, limit=RECENT_ROWS + 1)
        if len(new) > RECENT_ROWS:
            out = [*await self._recent_all(), *await self._channels()]
        else:
            out = [self._row(e) for e in new]
            if any(not e.kind.is_post for e in new):
                out += await self._channels()
        out += self._panel("connections", connections_html(self.rt))
        out += self._panel("broker", broker_html(self.rt))
        return out

    async def _recent_all(self) -> list[bytes]:
        events, self.read_up_to = await newest_events(self.rt)
        self.shown = deque(e.id for e in reversed(events))
        return [frame(recent_html(self.rt, events), event="recent-all")]

    async def _channels(self) -> list[bytes]:
        return self._panel("channels", await channels_table_html(self.rt))

    def _row(self, event: FeedEvent) -> bytes:
        self.read_up_to = max(self.read_up_to, event.id)
        self.shown.appendleft(event.id)
        drop = [self.shown.pop() for _ in range(len(self.shown) - RECENT_ROWS)]
        return frame(event_html(self.rt, event, drop), event="recent")


async def _messages(rt: Runtime, stop: anyio.Event) -> AsyncIterator[bytes]:
    feed = AdminFeed(rt)
    yield hello(rt.settings.release, rt.settings.heartbeat)
    try:
        for chunk in await feed.snapshot():
            yield chunk
        while True:
            with anyio.move_on_after(TICK):
                await stop.wait()
            if stop.is_set() or rt.hub.closing:
                yield CLOSING
                return
            for chunk in await feed.tick():
                yield chunk
    except StoreError as exc:
        # The page shows itself offline and its EventSource reconnects.
        logger.warning("admin stream ends: %s", exc)


def _heartbeat() -> ServerSentEvent:
    # A named event, not a comment: feed.js watches for it (sse.py, on heartbeats).
    return ServerSentEvent(data="", event="heartbeat", sep=SEP)


class AdminTab:
    """One open admin stream, as the access recheck sees it (rationale 9)."""

    __slots__ = ("closed", "stop", "who")

    def __init__(self, who: Identity) -> None:
        self.who = who
        self.closed = False
        # Ends the stream within a tick; sse-starlette also sets it on shutdown (7).
        self.stop = anyio.Event()

    def close(self) -> None:
        self.closed = True
        self.stop.set()


class WatchedStream(EventSourceResponse):
    """An ``EventSourceResponse`` that the access recheck may end (rationale 9)."""

    def __init__(self, watch: Watch, tab: AdminTab, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.watch = watch
        self.tab = tab

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        with self.watch.watching(self.tab):
            await super().__call__(scope, receive, send)


async def admin_stream(request: Request) -> EventSourceResponse:
    rt = runtime(request)
    # Who made this request (remembered from admins_only), not the session a page seen
    # through the proxy's header was given: the proxy vouches for each request.
    tab = AdminTab(await rt.access.identify(request.scope))
    return WatchedStream(
        rt.watch,
        tab,
        _messages(rt, tab.stop),
        headers=NO_INDEX,  # and private, no-store, as every answer (security.py)
        ping=rt.settings.heartbeat,
        ping_message_factory=_heartbeat,
        sep=SEP,
        send_timeout=SEND_TIMEOUT,
        shutdown_event=tab.stop,
        shutdown_grace_period=min(SHUTDOWN_GRACE, rt.settings.shutdown_timeout / 2),
    )


def admins_only(endpoint: Callable[[Request], Awaitable[Response]]) -> Callable[..., Any]:
    """Let admins of the whole feed through; send others to sign in, or refuse them.
    Forms are htmx requests carrying the session's CSRF token (access.py, on cookies
    and CSRF)."""

    @functools.wraps(endpoint)
    async def guarded(request: Request) -> Response:
        seen = await viewer(request)
        who = seen.who
        if not who.is_admin:
            if not who.signed_in:
                raise SignInFirst(request.url.path)
            raise ClientError(403, "Only an admin of the whole feed may use /admin.")
        if request.method != "GET" and who.ambient:
            check_csrf(request, who)
        request.state.viewer = seen
        return seen.apply(await endpoint(request), request)

    return guarded


routes = [
    Route("/admin", admins_only(admin_page), methods=["GET"]),
    Route("/admin/stream", admins_only(admin_stream), methods=["GET"]),
    Route("/admin/channels", admins_only(create_channel), methods=["POST"]),
    Route("/admin/channels/{channel}/title", admins_only(retitle_channel), methods=["POST"]),
    Route("/admin/channels/{channel}/archive", admins_only(archive_channel), methods=["POST"]),
    Route("/admin/channels/{channel}/restore", admins_only(archive_channel), methods=["POST"]),
]
