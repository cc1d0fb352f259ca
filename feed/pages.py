"""The HTML pages: the dashboard, the kiosk, their partials, mentions and compose
(search_pages.py has the search page).

Every page that streams is told, in ``<meta>`` tags read by feed-stream.js, which
release rendered it and the heartbeat interval (so it knows when the stream has gone
quiet), and its post list carries the event id its posts are current up to. A
re-fetched list says the same in the ``X-Feed-Last-Event-Id`` header, so the page
can skip stream events the new list already reflects.

Each list has a rule, which says what it shows given the database's posts; the page
renders it, and feed-lists.js keeps it after every event, live or replayed:

1. The kiosk (``kiosk_window``): pinned posts first, then the newest others,
   ``KIOSK_POSTS`` in all. When a post leaves that window (deleted, or unpinned and
   older than the rest), the one that takes its place was never sent to the page:
   feed-refetch.js re-fetches the list (``/partials/kiosk``, with its snapshot id).
   Its pinned posts are a section too (rationale 2), of up to ``KIOSK_POSTS``, and the
   newest others fill what it leaves; having no "Older posts", a kiosk shows nothing
   past its window, pinned or not.
2. The dashboard (``dashboard_window``): its *pinned section*, its newest ``page_size``
   pinned posts, and its *history*, every other post, pinned or not, down to its
   *floor*, the oldest post of its history it has loaded: the last one of the first
   page if that page was full, else 0 (it shows them all). So it shows its pinned
   posts, its first page, and everything that arrived since. "Older posts" loads the
   next page of history and lowers the floor to that page's last post (0 after the
   last page); the floor rides on the button (``data-floor``). A pinned post past the
   section is in its chronological place in the history, still marked pinned, so
   "Older posts" reaches it like any other: with many channels on one dashboard the
   section fills easily, and a post left out of both would be shown nowhere. The
   section stays bounded, so a feed with many pinned posts does not push its news
   below the fold; and the history is the one list of everything else, so every
   post is on exactly one of the section and the pages of history
   (storage/posts.py, on a list's pinned section).
3. A post of the history under the dashboard's floor leaves the page (unpinned there,
   or pushed out of a full section by a newer pin): it is back in its place in
   history, where "Older posts" finds it once. Kept in place instead, it would show
   among newer posts as if it were one of them, and a later page of older posts
   would bring it a second time.
4. A dashboard whose full section loses a post (unpinned, deleted) moves the newest
   pinned post of its history up into the section. If that post is under its floor,
   the page was never sent it: as the kiosk does, it re-fetches its list, since only
   the server knows the post. The re-fetched list is the first page again, with its
   floor. With no floor (every post loaded), the page has them all and asks nothing.
5. Read state. A dashboard shown to someone with read state (reading.py) carries
   their unread counts and read positions, and each post it lists the id of the
   event that made it (``data-event-id``) and that of its newest reply
   (``data-reply-event-id``): feed-unread.js reports a post, and the replies under
   it, read by those ids once it has been on screen, and draws the "new since you
   last looked" divider under the oldest post the reader had not read when the page
   was made. Those ids are read with the list, in its snapshot (storage/posts.py,
   on a page's posts' events), so none is newer than the list's position. A page of
   older posts is read in a snapshot of its own, later than the page's position:
   feed-unread.js reports nothing past the position the page has applied (its
   stream's), whatever ids its cards carry.
6. A kiosk watching a search searches when its page is made and when its list is
   re-fetched, within its identity's searches at once (security.py, on searches in
   flight). Refused, the page is still made, with a 429: its stream opens from where
   this process is (as a stream that does not resume), and its list says it waits
   and is fetched by feed-refetch.js after the ``Retry-After``, messages held
   meanwhile as for any re-fetch. So a wall of screens on one link all end up showing the same list.
7. A list's document order is the order it is shown in, so that the keyboard and a
   screen reader meet the posts as the eye does: the dashboard's pinned section, then
   its history; the kiosk's headline (its newest unpinned post), its pinned posts,
   then the others; each part newest first. The stylesheet moves nothing (no ``order``), and
   feed-lists.js moves a card whose place changes live (feed-lists.js, on order).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from feed import reading
from feed.access import KIOSK_PARAM
from feed.errors import ClientError
from feed.inputs import before_post, choice, post_body, post_form_bytes, read_form
from feed.permissions import Permissions
from feed.render import SNAPSHOT_HEADER, page_url
from feed.runtime import Runtime, runtime
from feed.search import Query
from feed.search_params import search_query
from feed.search_values import Cursor, Filters
from feed.security import TooManySearches, admit_post, searching
from feed.store import StoreError
from feed.values import ChannelView, FrontPage, PostView
from feed.viewers import SignInFirst, viewer

KIOSK_POSTS = 30  # posts a kiosk shows and keeps in its DOM, pinned ones first
THEMES = ("auto", "light", "dark")


def screens(count: int) -> str:
    return f"{count} screen{'' if count == 1 else 's'} watching"


def _stream_context(rt: Runtime) -> dict[str, Any]:
    return {"release": rt.settings.release, "heartbeat": rt.settings.heartbeat}


def _snapshot(last_event_id: int) -> dict[str, str]:
    return {SNAPSHOT_HEADER: str(last_event_id)}


def _newest_first(posts: list[PostView]) -> list[PostView]:
    return sorted(posts, key=lambda p: p.id, reverse=True)


def _sections(posts: list[PostView], size: int) -> tuple[list[PostView], list[PostView]]:
    """A list's pinned section, its newest ``size`` pinned posts, and every other post,
    each newest first (rationale 2)."""
    ordered = _newest_first(posts)
    section = [p for p in ordered if p.pinned][:size]
    kept = {p.id for p in section}
    return section, [p for p in ordered if p.id not in kept]


def dashboard_window(posts: list[PostView], size: int, floor: int) -> list[PostView]:
    """What a dashboard shows (rationale 2, 3): its pinned section, its newest ``size``
    pinned posts, then every other post down to ``floor``, each newest first
    (rationale 7). feed-lists.js keeps the live list by the same rule; a first page is
    this rule applied to ``front_page``."""
    section, history = _sections(posts, size)
    return [*section, *(p for p in history if p.id >= floor)]


def _first_page(page: FrontPage, size: int) -> list[PostView]:
    return dashboard_window(page.posts, size, page.older_before or 0)


def _list_context(
    posts: list[PostView], channel: str | None, before: int | None, older_before: int | None
) -> dict[str, Any]:
    older_url = older_before and page_url("/partials/posts", channel=channel, before=older_before)
    return {
        "posts": posts,
        "before": before,
        "older_before": older_before,
        "older_url": older_url,
    }


async def _read_state(rt: Runtime, perms: Permissions, page: FrontPage) -> dict[str, Any]:
    """What a page shows of its reader's read state (rationale 5), if they have one."""
    ids = {"created": page.created, "replied": page.replied}
    name = reading.person(perms.identity)
    if name is None:
        return {**ids, "read_state": None}
    channels = perms.readable()
    found = await rt.store.unread(
        name, [c.name for c in channels], private=perms.private_readable()
    )
    state = reading.unread_json(found) | {
        "notify": sorted(c.name for c in channels if c.announcement_only),
        "person": name,
    }
    return {**ids, "read_state": state}


async def _dashboard(request: Request, channel: str | None) -> Response:
    rt = runtime(request)
    seen = await viewer(request)
    perms = seen.perms
    channels = perms.readable()
    if channel is not None and not perms.may_read(channel):
        message = f"There is no channel named #{channel}."
        return seen.apply(
            rt.renderer.page("not_found.html", 404, message=message, **seen.context()), request
        )
    selected = perms.selection(None if channel is None else [channel])
    page = await rt.store.front_page(
        selected,
        rt.settings.page_size,
        private=perms.private_readable(),
        reader=perms.reactor(),
        events=True,
    )
    info = perms.channels.get(channel) if channel else None
    summed, _workers = rt.presence.total()
    postable = perms.postable()
    can_post = any(c.name == channel for c in postable) if channel else bool(postable)
    default = channel or next((c.name for c in postable if c.name == "general"), None)
    shown = _first_page(page, rt.settings.page_size)
    response = rt.renderer.page(
        "dashboard.html",
        **_stream_context(rt),
        **seen.context(),
        can_post=can_post,
        last_event_id=page.last_event_id,
        channels=channels,
        current=channel,
        # This page opens a stream as soon as it loads: count it already.
        watching=screens(1 + (summed.watching(channel) if channel else summed.streams)),
        heading=info.title if info else "All channels",
        description=info.description if info else "",
        stream_url=page_url(
            "/events", format="html", channel=channel, last_event_id=page.last_event_id
        ),
        feed_url=page_url("/partials/posts", channel=channel),
        fixed_channel=channel,
        postable=postable,
        form={"channel": default or (postable[0].name if postable else ""), "body": ""},
        error=None,
        max_chars=rt.settings.max_post_chars,
        max_pinned=rt.settings.page_size,
        reader=perms.reactor(),
        mine=page.mine,
        **_list_context(shown, channel, None, page.older_before),
        **await _read_state(rt, perms, page),
    )
    return seen.apply(response, request)


async def home(request: Request) -> Response:
    return await _dashboard(request, None)


async def channel_page(request: Request) -> Response:
    return await _dashboard(request, request.path_params["channel"])


async def posts_partial(request: Request) -> HTMLResponse:
    """A page of posts for the "Older posts" button, or the whole list after a resync."""
    rt = runtime(request)
    perms = await rt.access.check(request)
    channel = request.query_params.get("channel") or None
    before = before_post(request)
    selected = perms.selection(None if channel is None else [channel])
    private = perms.private_readable()
    name = perms.reactor()
    size = rt.settings.page_size
    if before is None:
        page = await rt.store.front_page(selected, size, private=private, reader=name, events=True)
        posts = _first_page(page, size)
        headers: dict[str, str] | None = _snapshot(page.last_event_id)
    else:
        page = await rt.store.older_posts(selected, before, size, private=private, reader=name)
        # Its snapshot is not where the page stands: the page's stream is (rationale 5).
        posts, headers = page.posts, None
    return rt.renderer.page(
        "partials/posts.html",
        headers=headers,
        oob=False,
        mine=page.mine,
        created=page.created,
        replied=page.replied,
        **_list_context(posts, channel, before, page.older_before),
    )


# -- the kiosk ------------------------------------------------------------------------


def kiosk_window(posts: list[PostView], size: int) -> list[PostView]:
    """What a kiosk shows (rationale 1): pinned posts first, then the newest others,
    ``size`` in all; in the order it shows them (rationale 7): the newest unpinned post
    (its headline), the pinned ones, then the others, each newest first. feed-lists.js
    keeps the live list by the same rule."""
    section, others = _sections(posts, size)
    recent = others[: size - len(section)]
    return [*recent[:1], *section, *recent[1:]]


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
        # Rationale 6: live from where this process is, the list asked for again.
        posts, last, busy = [], rt.relay.delivered, refused
    heading = " · ".join(c.title for c in chosen) or "All channels"
    return rt.renderer.page(
        "kiosk.html",
        200 if busy is None else busy.status,
        None if busy is None else busy.headers,
        **_stream_context(rt),
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
    """What a kiosk shows (rationale 1), and the event id it is current up to. A live
    search's kiosk shows its newest matching posts, pinned ones first, by the same rule:
    top-level posts, as every kiosk, since its stream's replies only update summaries
    (feed-threads.js) and a list with replies in it would differ once live. That
    search counts as any other (rationale 6)."""
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
        headers=_snapshot(last),
        kiosk=True,
        **_list_context(posts, None, None, None),
    )


async def compose(request: Request) -> HTMLResponse:
    """The compose form posts here; the new post reaches the page through the stream."""
    rt = runtime(request)
    # Identity and CSRF first: a refused request is answered as such, not in the form.
    perms = await rt.access.check(request)
    form: dict[str, str] = {}
    error: str | None = None
    invalid = False  # whether the error is the text's, which the field then points to
    try:
        limit = post_form_bytes(rt.settings.max_body_bytes, rt.settings.max_post_chars)
        form = await read_form(request, limit)
        channel = form.get("channel", "")
        admit_post(request, perms, channel)
        author = perms.identity.name
        assert author is not None  # admit_post let a writer in
        invalid = True
        text = form.get("body", "")
        body = post_body({"body": text}, author, rt.settings.max_post_chars, "The post")
        invalid = False
        rt.metrics.announced((await rt.store.create_post(channel, author, body)).event_id)
    except (ClientError, StoreError) as exc:
        # A form that cannot be read (400) has nothing to show again in the form.
        if isinstance(exc, ClientError) and exc.status in (400, 401, 403):
            raise
        error = exc.message if isinstance(exc, ClientError) else str(exc)
    values = {k: form.get(k, "") for k in ("channel", "body")}
    context: dict[str, Any] = {
        "postable": perms.postable(),
        "viewer": perms.identity.name,
        "fixed_channel": values["channel"] if form.get("fixed") else None,
        "max_chars": rt.settings.max_post_chars,
    }
    if error is not None:
        page = "partials/compose.html"
        return rt.renderer.page(page, 422, form=values, error=error, invalid=invalid, **context)
    cleared = {**values, "body": ""}
    return rt.renderer.page("partials/compose.html", form=cleared, error=None, **context)


async def mentions_page(request: Request) -> Response:
    """The posts that mention the viewer, newest first, the unread ones marked."""
    rt = runtime(request)
    seen = await viewer(request)
    perms = seen.perms
    name = reading.person(perms.identity)
    if name is None:
        raise SignInFirst(request.url.path)
    found = await rt.store.mentions(
        name,
        reading.readable_names(perms),
        private=perms.private_readable(),
        limit=rt.settings.page_size,
    )
    response = rt.renderer.page(
        "mentions.html",
        **seen.context(),
        channels=perms.readable(),
        mentions=found,
        mine=await rt.store.my_reactions(name, [m.post.id for m in found]),
    )
    return seen.apply(response, request)


routes = [
    Route("/", home, methods=["GET"]),
    Route("/mentions", mentions_page, methods=["GET"]),
    Route("/channels/{channel}", channel_page, methods=["GET"]),
    Route("/partials/posts", posts_partial, methods=["GET"]),
    Route("/kiosk", kiosk, methods=["GET"]),
    Route("/partials/kiosk", kiosk_partial, methods=["GET"]),
    Route("/compose", compose, methods=["POST"]),
]
