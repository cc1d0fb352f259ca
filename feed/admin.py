"""``/admin``: channels, live connections, recent events and the broker, kept live.

Only admins of the whole feed get in (``admins_only``); others are sent to sign
in, or refused with 403 once signed in.

The panels themselves, and what one stream sends of them, are panels.py's.

Rationale:

1. The page streams from its own endpoint, not ``/events``: what it shows is
   derived state (hub counters, broker status), not the event log as readers see
   it. Admin tabs are few, so sse-starlette's ``EventSourceResponse`` and its tasks
   per connection cost nothing that matters here, and admins watching the hub do
   not show up in the hub's own counts.
2. Shutdown: the server closes the hub first (server.py) and sse-starlette sets
   our shutdown event once uvicorn starts exiting; either ends the loop within a
   tick, and the response ends with its final chunk inside the grace period.
3. The stream opens with ``hello`` and beats like an HTML ``/events`` stream, so
   feed-stream.js shows the same live/offline badge and reloads the page after a deploy.
4. The stream shows every channel's events, private ones too, so it is rechecked like
   ``/events``: it registers with the access recheck (watch.py) for as long as it
   lasts, which ends it, with its final chunk, once the admin's token is revoked or
   their session is signed out of or expires. The reconnect is then sent to sign in.
5. ``FEED_MAX_STREAM_SECONDS`` ends an admin stream as it ends ``/events`` (reconnects.py,
   on the maximum age), with the same last frame: a tab left open for days is a
   long-lived connection like any other, and a replaced or added worker gets its share
   of them back only if they end. The tab comes back at once with a fresh snapshot.
6. An admin stream is one of its address's open streams (``FEED_MAX_STREAMS_PER_CLIENT``),
   counted and refused as ``/events`` streams are (security.py): the limit is on the
   connections an address holds, whatever they follow.
7. A form's answer replaces the whole channels panel, the form that was sent included,
   so it says where the focus goes, for a keyboard and a screen reader to go on from
   there. Done, the control that sent it keeps it (htmx finds it again by its id), and
   a sentence in the page's status line (``said``, outside the panel, so that it is a
   live region the answer only fills) says what changed. Refused, the sentence is said
   where the form is: the create form's above its fields, a row's in the row. The field
   the error is about takes the focus (``autofocus``), marked invalid and described by
   the error; with no such field, the control that sent it keeps it, described by the
   error; with no row left to say it in (the channel is gone), the panel says it, above
   the create form, and takes the focus. The error is an alert, and the status line
   is emptied: what the last action did is no longer the news.
8. A refusal is answered with the panel and its status (404, 409, 413, 422), and the
   page swaps it in whatever the status (feed-admin.js, which also says the refusals
   that come without the panel). Those that cannot come with it are errors.py's JSON:
   403 (not an admin, or no CSRF token), 503 (the database is unavailable: the panel
   could not be read either), 500; so is the 401 of a form sent once signed out, where
   a page would be sent to sign in: the sign-in page, fetched by htmx after the
   redirect, would take the panel's place. A channel archived meanwhile refuses
   nothing: its title and replies setting still change, and archiving it again
   changes nothing and says it is archived.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
from markupsafe import Markup
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from feed import security
from feed.access import check_csrf
from feed.errors import ClientError
from feed.identity import Identity
from feed.inputs import (
    MAX_DESCRIPTION_CHARS,
    MAX_TITLE_CHARS,
    channel_name,
    read_form,
    text_field,
)
from feed.panels import (
    AdminFeed,
    broker_html,
    channels_table_html,
    connections_html,
    newest_events,
    recent_html,
)
from feed.permissions import unauthorized
from feed.runtime import Runtime, runtime
from feed.sse import AGED, CLOSING, HEARTBEAT_NAME, SEP, Format, ended_frame, hello, lifetime
from feed.store import ChannelExists, ChannelNotFound, StoreError
from feed.viewers import SignInFirst, viewer
from feed.watch import Watch

logger = logging.getLogger("feed.admin")

TICK = 1.0  # seconds between looks at the hub, the broker and the log
SHUTDOWN_GRACE = 2.0  # at most this long for the stream to end by itself on shutdown
SEND_TIMEOUT = 30.0  # a tab that takes no bytes for this long is dropped
# Search engines must not index operator pages, even if a proxy rule slips.
NO_INDEX = {"X-Robots-Tag": "noindex"}
CHANNELS_PANEL = "partials/admin_channels.html"


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
    invalid: str | None = None,
    row_error: dict[str, str] | None = None,
    gone: str | None = None,
) -> dict[str, Any]:
    """``error``: the create form's, about its field ``invalid`` if any; ``row_error``: a
    row's (``name``, ``message``, the ``control`` it is about, ``title`` as sent);
    ``gone``: the panel's own, when the row it was about is gone (rationale 7)."""
    values = {k: (form or {}).get(k, "") for k in CREATE_FIELDS}
    return {
        "form": values,
        "error": error,
        "invalid": invalid,
        "gone": gone,
        "table": Markup(await channels_table_html(rt, row_error)),
        "max_title": MAX_TITLE_CHARS,
        "max_description": MAX_DESCRIPTION_CHARS,
    }


async def _panel(rt: Runtime, status: int = 200, said: str = "", **context: Any) -> HTMLResponse:
    """The channels panel as the answer to one of its forms, with what it did for the
    page's status line (rationale 7)."""
    panel = await _channels_panel(rt, **context)
    return rt.renderer.page(CHANNELS_PANEL, status, NO_INDEX, said=said, **panel)


def _failure(exc: ClientError | StoreError) -> tuple[int, str]:
    """The status and sentence for a form error the page shows inline."""
    if isinstance(exc, ClientError):
        return exc.status, exc.message
    if isinstance(exc, ChannelExists):
        return 409, str(exc)
    if isinstance(exc, ChannelNotFound):
        return 404, str(exc)
    raise exc  # the database is unavailable: errors.py answers 503 with Retry-After


async def _row_refused(
    rt: Runtime,
    exc: ClientError | StoreError,
    name: str,
    control: str,
    form: dict[str, str] | None = None,
) -> HTMLResponse:
    """A row's form refused: the error in its row, about ``control`` (``title``, the
    field, or the ``replies`` or ``archive`` button); in the panel if the row is gone."""
    status, message = _failure(exc)
    if isinstance(exc, ChannelNotFound):  # no row to say it in (rationale 7)
        return await _panel(rt, status, gone=message)
    row_error = {"name": name, "message": message, "control": control}
    if form and "title" in form:  # what was typed stays, to be fixed
        row_error["title"] = form["title"]
    return await _panel(rt, status, row_error=row_error)


def _description(form: dict[str, str]) -> str:
    description = form.get("description", "")
    if not description.strip():
        return ""
    return text_field(form, "description", MAX_DESCRIPTION_CHARS, "The description").strip()


# The create form's fields, in the form's order, each read and checked as the API's.
CREATE_FIELDS: dict[str, Callable[[dict[str, str]], str]] = {
    "name": lambda form: channel_name({"name": form.get("name", "").strip()}),
    "title": lambda form: text_field(form, "title", MAX_TITLE_CHARS, "The title").strip(),
    "description": _description,
}


async def create_channel(request: Request) -> HTMLResponse:
    rt = runtime(request)
    form: dict[str, str] = {}
    invalid: str | None = None  # the field a refusal is about (rationale 7)
    try:
        form = await read_form(request, rt.settings.max_body_bytes)
        values = []
        for field, read in CREATE_FIELDS.items():
            invalid = field
            values.append(read(form))
        invalid = "name"  # a name that is taken
        change = await rt.store.create_channel(*values)
    except (ClientError, StoreError) as exc:
        status, message = _failure(exc)
        return await _panel(rt, status, form=form, error=message, invalid=invalid)
    rt.metrics.announced(change.event_id)
    return await _panel(rt, said=f"Created #{values[0]}.")


async def retitle_channel(request: Request) -> HTMLResponse:
    """Renaming changes the title; the name is fixed, as links and kiosk URLs carry it."""
    rt = runtime(request)
    name = request.path_params["channel"]
    form: dict[str, str] = {}
    try:
        form = await read_form(request, rt.settings.max_body_bytes)
        title = text_field(form, "title", MAX_TITLE_CHARS, "The title").strip()
        change = await rt.store.update_channel(name, title=title)
    except (ClientError, StoreError) as exc:
        return await _row_refused(rt, exc, name, "title", form)
    rt.metrics.announced(change.event_id)
    return await _panel(rt, said=f"#{name} is now titled “{title}”.")


async def archive_channel(request: Request) -> HTMLResponse:
    rt = runtime(request)
    name = request.path_params["channel"]
    archived = request.url.path.endswith("/archive")
    try:
        change = await rt.store.set_archived(name, archived)
    except StoreError as exc:
        return await _row_refused(rt, exc, name, "archive")
    rt.metrics.announced(change.event_id)
    return await _panel(rt, said=f"#{name} {'archived' if archived else 'restored'}.")


async def set_replies(request: Request) -> HTMLResponse:
    """Whether readers of an announcement-only channel may reply (permissions.py, on
    replies): the form sends ``replies`` as ``on`` or ``off``."""
    rt = runtime(request)
    name = request.path_params["channel"]
    try:
        form = await read_form(request, rt.settings.max_body_bytes)
        setting = form.get("replies")
        if setting not in ("on", "off"):
            raise ClientError(422, "Send replies=on or replies=off.", setting)
        change = await rt.store.update_channel(name, replies=setting == "on")
    except (ClientError, StoreError) as exc:
        return await _row_refused(rt, exc, name, "replies")
    rt.metrics.announced(change.event_id)
    may = "may now reply" if setting == "on" else "may no longer reply"
    return await _panel(rt, said=f"Readers of #{name} {may}.")


# -- the live stream -----------------------------------------------------------------


async def _messages(rt: Runtime, tab: AdminTab) -> AsyncIterator[bytes]:
    feed = AdminFeed(rt)
    aged = rt.settings.max_stream_seconds
    due = time.monotonic() + lifetime(aged) if aged else math.inf  # rationale 5
    yield hello(rt.settings.release, rt.settings.heartbeat)
    try:
        for chunk in await feed.snapshot():
            yield chunk
        while True:
            with anyio.move_on_after(min(TICK, max(0.0, due - time.monotonic()))):
                await tab.stop.wait()
            if tab.ended is not None:
                yield ended_frame(Format.HTML, tab.ended)
                return
            if tab.stop.is_set() or rt.hub.closing:
                yield CLOSING
                return
            if time.monotonic() >= due:
                yield AGED
                return
            for chunk in await feed.tick():
                yield chunk
    except StoreError as exc:
        # The page shows itself offline and its EventSource reconnects.
        logger.warning("admin stream ends: %s", exc)


def _heartbeat() -> ServerSentEvent:
    # A named event, not a comment: feed-stream.js watches for it (sse.py, on heartbeats).
    return ServerSentEvent(data="", event=HEARTBEAT_NAME, sep=SEP)


class AdminTab:
    """One open admin stream, as the access recheck sees it (rationale 4)."""

    __slots__ = ("closed", "ended", "stop", "who")

    def __init__(self, who: Identity) -> None:
        self.who = who
        self.closed = False
        self.ended: str | None = None  # why its identity lost its access, if it did
        # Ends the stream within a tick; sse-starlette also sets it on shutdown (2).
        self.stop = anyio.Event()

    def end(self, why: str) -> None:
        """End the stream with an ``ended`` message (watch.py, on messages that tell):
        the page reloads, signed out, rather than retry for ever, refused."""
        self.ended = why
        self.closed = True
        self.stop.set()


class WatchedStream(EventSourceResponse):
    """An ``EventSourceResponse`` that the access recheck may end (rationale 4)."""

    def __init__(self, watch: Watch, tab: AdminTab, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.watch = watch
        self.tab = tab

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Within its address's stream limit, as every stream (6).
        await security.of(Request(scope)).serve_stream(
            self._watched, scope, receive, send, refused=NO_INDEX, through_starlette=True
        )

    async def _watched(self, scope: Scope, receive: Receive, send: Send) -> None:
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
        _messages(rt, tab),
        headers=NO_INDEX,  # and private, no-store, as every answer (security.py)
        ping=rt.settings.heartbeat,
        ping_message_factory=_heartbeat,
        sep=SEP,
        send_timeout=SEND_TIMEOUT,
        shutdown_event=tab.stop,
        shutdown_grace_period=min(SHUTDOWN_GRACE, rt.settings.shutdown_timeout / 2),
    )


SIGNED_OUT = "You are signed out, so this was not done: reload the page to sign in again."


def _signed_out(request: Request) -> Exception:
    """A page is sent to sign in; a form is told, in a sentence it can show (rationale 8)."""
    if request.method == "GET":
        return SignInFirst(request.url.path)
    return unauthorized(SIGNED_OUT)


def admins_only(endpoint: Callable[[Request], Awaitable[Response]]) -> Callable[..., Any]:
    """Let admins of the whole feed through; send others to sign in (a form: 401), or
    refuse them. Forms are htmx requests carrying the session's CSRF token (access.py,
    on cookies and CSRF)."""

    @functools.wraps(endpoint)
    async def guarded(request: Request) -> Response:
        try:
            seen = await viewer(request)
        except SignInFirst:
            raise _signed_out(request) from None
        who = seen.who
        if not who.is_admin:
            if not who.signed_in:
                raise _signed_out(request)
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
    Route("/admin/channels/{channel}/replies", admins_only(set_replies), methods=["POST"]),
    Route("/admin/channels/{channel}/restore", admins_only(archive_channel), methods=["POST"]),
]
