"""The HTML pages: the dashboard, its partial of posts, mentions and compose
(kiosk.py has the kiosk, search_pages.py the search page, threads.py a thread's page).

Every page that streams is told, in ``<meta>`` tags read by feed-stream.js, which
release rendered it and the heartbeat interval (so it knows when the stream has gone
quiet), and its post list carries the event id its posts are current up to. A
re-fetched list says the same in the ``X-Feed-Last-Event-Id`` header, so the page
can skip stream events the new list already reflects.

The rule each list follows is lists.py's.

Rationale:

1. Read state. A dashboard shown to someone with read state (reading.py) carries
   their unread counts and read positions, and each post it lists the id of the
   event that made it (``data-event-id``) and that of its newest reply
   (``data-reply-event-id``): feed-unread.js reports a post, and the replies under
   it, read by those ids once it has been on screen, and draws the "new since you
   last looked" divider under the oldest post the reader had not read when the page
   was made. Those ids are read with the list, in its snapshot (storage/lists.py,
   on a page's posts' events), so none is newer than the list's position. A page of
   older posts is read in a snapshot of its own, later than the page's position:
   feed-unread.js reports nothing past the position the page has applied (its
   stream's), whatever ids its cards carry.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from feed import reading
from feed.errors import ClientError
from feed.inputs import before_post, post_body, post_form_bytes, read_form
from feed.lists import first_page, list_context
from feed.permissions import Permissions
from feed.render import SNAPSHOT_HEADER, page_url
from feed.runtime import Runtime, runtime
from feed.security import admit_post
from feed.store import StoreError
from feed.values import FrontPage
from feed.viewers import SignInFirst, viewer


def screens(count: int) -> str:
    return f"{count} screen{'' if count == 1 else 's'} watching"


async def _read_state(rt: Runtime, perms: Permissions, page: FrontPage) -> dict[str, Any]:
    """What a page shows of its reader's read state (rationale 1), if they have one."""
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
    shown = first_page(page, rt.settings.page_size)
    response = rt.renderer.page(
        "dashboard.html",
        release=rt.settings.release,
        heartbeat=rt.settings.heartbeat,
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
        **list_context(shown, channel, None, page.older_before),
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
        posts = first_page(page, size)
        headers: dict[str, str] | None = {SNAPSHOT_HEADER: str(page.last_event_id)}
    else:
        page = await rt.store.older_posts(selected, before, size, private=private, reader=name)
        # Its snapshot is not where the page stands: the page's stream is (rationale 1).
        posts, headers = page.posts, None
    return rt.renderer.page(
        "partials/posts.html",
        headers=headers,
        oob=False,
        mine=page.mine,
        created=page.created,
        replied=page.replied,
        **list_context(posts, channel, before, page.older_before),
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
    Route("/compose", compose, methods=["POST"]),
]
