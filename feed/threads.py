"""Threads in the browser: a thread's own page, the region that opens under a card,
and the form that replies.

A thread is a top-level post and its replies (storage/threads.py). Its page renders
the post, its replies and the event id they are current up to from one snapshot
(``Store.thread_page``), and streams ``/events?thread=ID`` from that id, as the
dashboard does with its list. The region under a card is the same partial, fetched
by feed-threads.js with that id in ``X-Feed-Last-Event-Id``; the page's own stream
keeps it live from then on.

Rationale:

1. A thread shows its newest ``page_size`` replies, oldest first, and says how many
   earlier ones it leaves out: the page stays bounded however long the thread grows,
   and the API pages through the rest.
2. The reply form answers as the compose form does: the cleared form, or the form
   with its error and the text kept (422). The reply itself reaches the page through
   the stream, as every post does.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from feed.errors import ClientError
from feed.inputs import post_body, post_form_bytes, post_id, read_form
from feed.permissions import Permissions
from feed.render import SNAPSHOT_HEADER
from feed.runtime import Runtime, runtime
from feed.security import admit_reply
from feed.store import NotAThread, PostDeleted, PostNotFound, StoreError
from feed.values import PostView, ThreadPage
from feed.viewers import viewer


async def _thread(rt: Runtime, perms: Permissions, request: Request) -> ThreadPage:
    """The thread in the path, if this reader may read it: else 404, as for no post."""
    found = post_id(request)
    private = perms.private_readable()
    try:
        page = await rt.store.thread_page(
            found, rt.settings.page_size, private=private, reader=perms.reactor()
        )
    except (PostDeleted, NotAThread):
        # Said only to a reader of the post's channel: to anyone else, a post that is
        # gone or is a reply is no different from one that never was.
        if not perms.may_read((await rt.store.get_post(found, private=private)).channel):
            raise PostNotFound(found) from None
        raise
    if not perms.may_read(page.post.channel):
        raise PostNotFound(found)
    return page


def _thread_context(rt: Runtime, perms: Permissions, page: ThreadPage) -> dict[str, Any]:
    return {
        "parent": page.post,
        "replies": page.replies,
        "earlier": page.post.replies - len(page.replies),  # rationale 1
        "can_reply": perms.may_reply(page.post.channel),
        "viewer": perms.identity.name,
        "reader": perms.reactor(),
        "mine": page.mine,
        "max_chars": rt.settings.max_post_chars,
    }


async def thread_page(request: Request) -> Response:
    """``/posts/{id}``: the thread's own page, live."""
    rt = runtime(request)
    seen = await viewer(request)
    try:
        page = await _thread(rt, seen.perms, request)
    except (PostNotFound, PostDeleted, NotAThread):
        message = f"There is no post with id {request.path_params['post_id']}."
        return rt.renderer.page("not_found.html", 404, message=message, **seen.context())
    stream = {"format": "html", "thread": page.post.id, "last_event_id": page.last_event_id}
    response = rt.renderer.page(
        "thread.html",
        release=rt.settings.release,
        heartbeat=rt.settings.heartbeat,
        **(seen.context() | _thread_context(rt, seen.perms, page)),
        post=page.post,
        last_event_id=page.last_event_id,
        stream_url=f"/events?{urlencode(stream)}",
        feed_url=f"/partials/post/{page.post.id}",
    )
    return seen.apply(response, request)


async def thread_partial(request: Request) -> HTMLResponse:
    """The region under a card: its replies and the reply form."""
    rt = runtime(request)
    perms = await rt.access.check(request)
    page = await _thread(rt, perms, request)
    return rt.renderer.page(
        "partials/thread.html",
        headers={SNAPSHOT_HEADER: str(page.last_event_id)},
        **_thread_context(rt, perms, page),
    )


async def post_partial(request: Request) -> HTMLResponse:
    """A thread page's whole list, re-fetched after a ``resync``: the card with its
    thread, or nothing once the post is gone."""
    rt = runtime(request)
    perms = await rt.access.check(request)
    try:
        page = await _thread(rt, perms, request)
    except PostDeleted:
        last = await rt.store.latest_event_id()
        return HTMLResponse("", headers={SNAPSHOT_HEADER: str(last)})
    return rt.renderer.page(
        "partials/post.html",
        headers={SNAPSHOT_HEADER: str(page.last_event_id)},
        **_thread_context(rt, perms, page),
        post=page.post,
        thread_open=True,
    )


async def reply_form(request: Request) -> HTMLResponse:
    """The reply form posts here (rationale 2)."""
    rt = runtime(request)
    # Identity and CSRF first: a refused request is answered as such, not in the form.
    perms = await rt.access.check(request)
    found = post_id(request)
    parent: PostView = await rt.store.get_post(found, private=perms.private_readable())
    if not perms.may_read(parent.channel):
        raise PostNotFound(found)
    admit_reply(request, perms, parent.channel)
    author = perms.identity.name
    assert author is not None  # admit_reply let a signed-in identity in
    context: dict[str, Any] = {"parent": parent, "viewer": author}
    context["max_chars"] = rt.settings.max_post_chars
    body = ""
    invalid = False  # whether the error is the text's, which the field then points to
    try:
        limit = post_form_bytes(rt.settings.max_body_bytes, rt.settings.max_post_chars)
        form = await read_form(request, limit)
        body = form.get("body", "")
        invalid = True
        text = post_body({"body": body}, author, rt.settings.max_post_chars, "The reply")
        invalid = False
        change = await rt.store.create_reply(parent.channel, parent.id, author, text)
        rt.metrics.announced(change.event_id)
    except (ClientError, StoreError) as exc:
        if isinstance(exc, ClientError) and exc.status in (400, 401, 403, 413):
            raise
        error = exc.message if isinstance(exc, ClientError) else str(exc)
        context |= {"body": body, "error": error, "invalid": invalid}
        return rt.renderer.page("partials/reply_form.html", 422, **context)
    return rt.renderer.page("partials/reply_form.html", body="", error=None, **context)


routes = [
    Route("/posts/{post_id}", thread_page, methods=["GET"]),
    Route("/posts/{post_id}/replies", reply_form, methods=["POST"]),
    Route("/partials/thread/{post_id}", thread_partial, methods=["GET"]),
    Route("/partials/post/{post_id}", post_partial, methods=["GET"]),
]
