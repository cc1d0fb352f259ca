"""The kiosk: a wall display's page and its list, re-fetched (lists.py has the rule
of what it shows, ``kiosk_window``; pages.py the other pages).

Rationale:

1. A kiosk watching a search searches when its page is made and when its list is
   re-fetched, within its identity's searches at once (security.py, on searches in
   flight). Refused, the page is still made, with a 429: its stream opens from where
   this process is (as a stream that does not resume), and its list says it waits
   and is fetched by feed-refetch.js after the ``Retry-After``, messages held
   meanwhile as for any re-fetch. So a wall of screens on one link all end up showing the same list.
"""

from __future__ import annotations

from dataclasses import replace

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from feed.access import KIOSK_PARAM
from feed.errors import ClientError
from feed.inputs import choice
from feed.lists import kiosk_window, list_context
from feed.permissions import Permissions
from feed.render import SNAPSHOT_HEADER, page_url
from feed.runtime import Runtime, runtime
from feed.search import Query
from feed.search_params import search_query
from feed.search_values import Cursor, Filters
from feed.security import TooManySearches, searching
from feed.values import ChannelView, PostView
from feed.viewers import viewer

KIOSK_POSTS = 30  # posts a kiosk shows and keeps in its DOM, pinned ones first
THEMES = ("auto", "light", "dark")


def _kiosk_channels(request: Request, perms: Permissions) -> list[ChannelView]:
    """The channels asked for, each readable (or 404); for a kiosk link limited to
    some channels, those when none are asked for."""
    names = list(dict.fromkeys(request.query_params.getlist("channel")))
    if not names and perms.identity.scope is not None:
        return perms.readable()
    unknown = [name for name in names if not perms.may_read(name)]
    if unknown:
        raise ClientError(404, f"There is no channel named #{unknown[0]}.", unknown[0])
    return [perms.channels[name] for name in names]


def _kiosk_theme(request: Request) -> str:
    return choice(request.query_params.get("theme"), "theme", THEMES, default="auto")


async def kiosk(request: Request) -> Response:
    """A wall display: no controls, large type, live, and honest when it is not.

    A kiosk link's ``key`` rides along on every URL the page uses: a kiosk cannot
    sign in, and EventSource cannot send headers."""
    rt = runtime(request)
    try:
        seen = await viewer(request)
        chosen = _kiosk_channels(request, seen.perms)
        theme = _kiosk_theme(request)
        query = search_query(request.query_params.get("q"))
    except ClientError as exc:
        template = "not_found.html" if exc.status == 404 else "error.html"
        return rt.renderer.page(template, exc.status, message=exc.message)
    names = [c.name for c in chosen] or None
    key = request.query_params.get(KIOSK_PARAM) or None
    q = None if query is None else query.text
    busy: TooManySearches | None = None
    try:
        posts, last = await _kiosk_posts(rt, request, seen.perms, names, query)
    except TooManySearches as refused:
        # Rationale 1: live from where this process is, the list asked for again.
        posts, last, busy = [], rt.relay.delivered, refused
    heading = " · ".join(c.title for c in chosen) or "All channels"
    return rt.renderer.page(
        "kiosk.html",
        200 if busy is None else busy.status,
        None if busy is None else busy.headers,
        release=rt.settings.release,
        heartbeat=rt.settings.heartbeat,
        busy=None if busy is None else busy.retry_after,
        theme=theme,
        heading=heading if q is None else f"“{q}” · {heading}",
        posts=posts,
        max_posts=KIOSK_POSTS,
        search=q,
        last_event_id=last,
        stream_url=page_url(
            "/events", format="html", channel=names, q=q, last_event_id=last, key=key
        ),
        feed_url=page_url("/partials/kiosk", channel=names, q=q, key=key),
    )


async def _kiosk_posts(
    rt: Runtime,
    request: Request,
    perms: Permissions,
    names: list[str] | None,
    query: Query | None,
) -> tuple[list[PostView], int]:
    """What a kiosk shows (lists.py, on the kiosk), and the event id it is current up
    to. A live search's kiosk shows its newest matching posts, pinned ones first, by
    the same rule: top-level posts, as every kiosk, since its stream's replies only
    update summaries (feed-threads.js) and a list with replies in it would differ once
    live. That search counts as any other (rationale 1)."""
    private = perms.private_readable()
    selected = names or perms.selection(None)
    if query is None:
        page = await rt.store.front_page(selected, KIOSK_POSTS, private=private)
        return kiosk_window(page.posts, KIOSK_POSTS), page.last_event_id
    filters = Filters(channels=None if selected is None else tuple(selected), replies=False)
    async with searching(request, perms):
        # The pinned matches apart, as front_page reads them: a pinned one older than
        # the newest matches is still shown.
        pinned = await rt.store.search(
            query,
            replace(filters, pinned=True),
            limit=KIOSK_POSTS,
            cursor=Cursor(),
            private=private,
            newest=True,
        )
        found = await rt.store.search(
            query, filters, limit=KIOSK_POSTS, cursor=Cursor(), private=private, newest=True
        )
    posts = {hit.post.id: hit.post for hit in (*pinned.hits, *found.hits)}
    # Two reads: the list is current up to the older one's id, and the stream resends
    # what came after it, which a kiosk applies as it is now.
    last = min(pinned.last_event_id, found.last_event_id)
    return kiosk_window(list(posts.values()), KIOSK_POSTS), last


async def kiosk_partial(request: Request) -> HTMLResponse:
    """The kiosk's whole list, re-fetched after a ``resync``."""
    rt = runtime(request)
    perms = await rt.access.check(request)
    names = [c.name for c in _kiosk_channels(request, perms)] or None
    query = search_query(request.query_params.get("q"))
    posts, last = await _kiosk_posts(rt, request, perms, names, query)
    return rt.renderer.page(
        "partials/posts.html",
        headers={SNAPSHOT_HEADER: str(last)},
        kiosk=True,
        **list_context(posts, None, None, None),
    )


routes = [
    Route("/kiosk", kiosk, methods=["GET"]),
    Route("/partials/kiosk", kiosk_partial, methods=["GET"]),
]
