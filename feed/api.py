"""The JSON API under ``/api`` for posts, replies, reactions, presence and search
(channels and their members: channel_api.py).

Every write goes through the store (post and event row in one transaction), which
announces it to this process's streams and to the other processes once it has
committed (storage/announcements.py, on the commit announcement): an endpoint
validates, calls the store and answers, and announces nothing itself.

Creating a post or a reply takes an ``Idempotency-Key`` header
(idempotency.py): a retry gets the same answer and never writes twice. New posts are
limited per identity (security.py).

Request input is read and checked by inputs.py, which states the limits the OpenAPI
document gives.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from feed import security
from feed.idempotency import answer_once, idempotency_claim, once_for, remembered
from feed.inputs import (
    MAX_PAGE,
    before_post,
    check_fields,
    int_param,
    post_body,
    post_id,
    read_json,
    text_field,
)
from feed.limits import MAX_SEARCH_PAGE
from feed.permissions import Permissions
from feed.reactions import reaction_in
from feed.render import post_link
from feed.runtime import Runtime, runtime
from feed.search_params import search_asked
from feed.shapes import change_json, post_json, reactions_json
from feed.store import PostNotFound
from feed.values import Change, PostView


def post_answer(rt: Runtime, change: Change, mine: Sequence[str] = ()) -> dict[str, Any]:
    rt.metrics.announced(change.event_id)
    return change_json(change, mine)


async def editable(rt: Runtime, request: Request) -> tuple[Permissions, int]:
    """The requester's permissions and the id of the post in the path, if the
    requester may change it."""
    perms, post = await readable_post(rt, request)
    perms.check_edit(post)
    # Changes count against the same rate as posts: each one reaches every screen.
    security.of(request).check_post_rate(request, perms.identity.limit_key)
    return perms, post.id


async def change_answer(rt: Runtime, perms: Permissions, change: Change) -> dict[str, Any]:
    """A changed post's answer, with the requester's own reactions to it."""
    mine = await rt.store.my_reactions(perms.identity.name, [change.post.id])
    return post_answer(rt, change, mine.get(change.post.id, ()))


# -- endpoints ---------------------------------------------------------------------


async def posts_for(rt: Runtime, reader: str | None, posts: list[PostView]) -> list[dict[str, Any]]:
    """``posts`` as JSON, each with ``mine``: the reader's own reactions to it."""
    mine = await rt.store.my_reactions(reader, [p.id for p in posts])
    return [post_json(p) | {"mine": list(mine.get(p.id, ()))} for p in posts]


async def list_posts(request: Request) -> JSONResponse:
    rt = runtime(request)
    perms = await rt.access.check(request)
    channel = request.path_params["channel"]
    before = before_post(request)
    limit = int_param(request, "limit", low=1, high=MAX_PAGE) or rt.settings.page_size
    perms.check_read(channel)
    posts = await rt.store.list_posts(
        [channel], before=before, limit=limit, private=perms.private_readable()
    )
    next_before = posts[-1].id if len(posts) == limit else None
    listed = await posts_for(rt, perms.identity.name, posts)
    return JSONResponse({"posts": listed, "next_before": next_before})


async def search(request: Request) -> JSONResponse:
    """``GET /api/search``: posts that match ``q`` and the filters, best first, only in
    channels the requester may read (storage/search.py, on reads for a reader)."""
    rt = runtime(request)
    perms = await rt.access.check(request)
    channels = perms.selection(request.query_params.getlist("channel"))
    asked = search_asked(request, channels)
    async with security.searching(request, perms):
        results = await rt.store.search(
            asked.query,
            asked.filters,
            limit=asked.limit or min(rt.settings.page_size, MAX_SEARCH_PAGE),
            cursor=asked.cursor,
            private=perms.private_readable(),
        )
    posts = await posts_for(rt, perms.identity.name, [hit.post for hit in results.hits])
    found = [
        {"post": post, "snippet": hit.snippet, "link": post_link(hit.post)}
        for post, hit in zip(posts, results.hits, strict=True)
    ]
    more = None if results.next is None else results.next.text
    return JSONResponse({"results": found, "next_cursor": more})


async def create_post(request: Request) -> Response:
    rt = runtime(request)
    perms = await rt.access.check(request)
    channel = request.path_params["channel"]
    security.admit_post(request, perms, channel)
    payload = await read_json(request, rt.settings.max_body_bytes)
    author = perms.identity.name
    assert author is not None  # admit_post let a writer in
    claim = idempotency_claim(request, payload, author)
    body = post_body(payload, author, rt.settings.max_post_chars)
    if claim is not None:
        answer = remembered(change_json, lambda change: f"/api/posts/{change.post.id}")
        once = await once_for(
            request, rt.store.create_post_once(claim, channel, author, body, answer)
        )
        return answer_once(rt, once)
    change = await rt.store.create_post(channel, author, body)
    headers = {"Location": f"/api/posts/{change.post.id}"}
    return JSONResponse(post_answer(rt, change), status_code=201, headers=headers)


async def readable_post(
    rt: Runtime, request: Request, *, counted: bool = False
) -> tuple[Permissions, PostView]:
    """The post in the path and the requester's permissions, if it may read the post
    (else 404); with its reactions only if ``counted``."""
    perms = await rt.access.check(request)
    found = post_id(request)
    post = await rt.store.get_post(found, private=perms.private_readable(), counted=counted)
    # A post one may not read is answered like one that does not exist.
    if not perms.may_read(post.channel):
        raise PostNotFound(found)
    return perms, post


async def create_reply(request: Request) -> Response:
    """A reply to the post in the path (storage/threads.py): posted as a post is."""
    rt = runtime(request)
    perms, parent = await readable_post(rt, request)
    security.admit_reply(request, perms, parent.channel)
    payload = await read_json(request, rt.settings.max_body_bytes)
    author = perms.identity.name
    assert author is not None  # admit_reply let a signed-in identity in
    claim = idempotency_claim(request, payload, author)
    body = post_body(payload, author, rt.settings.max_post_chars)
    if claim is not None:
        answer = remembered(change_json, lambda change: f"/api/posts/{change.post.id}")
        write = rt.store.create_post_once(
            claim, parent.channel, author, body, answer, parent=parent.id
        )
        return answer_once(rt, await once_for(request, write))
    change = await rt.store.create_reply(parent.channel, parent.id, author, body)
    headers = {"Location": f"/api/posts/{change.post.id}"}
    return JSONResponse(post_answer(rt, change), status_code=201, headers=headers)


async def list_replies(request: Request) -> JSONResponse:
    """The replies to the post in the path, newest first, paged as a channel's posts."""
    rt = runtime(request)
    perms, parent = await readable_post(rt, request)
    before = before_post(request)
    limit = int_param(request, "limit", low=1, high=MAX_PAGE) or rt.settings.page_size
    replies = await rt.store.list_replies(
        parent.id, before=before, limit=limit, private=perms.private_readable()
    )
    next_before = replies[-1].id if len(replies) == limit else None
    listed = await posts_for(rt, perms.identity.name, replies)
    return JSONResponse({"replies": listed, "next_before": next_before})


async def get_post(request: Request) -> JSONResponse:
    rt = runtime(request)
    perms, post = await readable_post(rt, request, counted=True)
    return JSONResponse({"post": (await posts_for(rt, perms.identity.name, [post]))[0]})


async def list_reactions(request: Request) -> JSONResponse:
    """Who reacted to the post with what, in the order they did."""
    rt = runtime(request)
    perms, post = await readable_post(rt, request)
    listed = await rt.store.who_reacted(post.id)
    mine = await rt.store.my_reactions(perms.identity.name, [post.id])
    return JSONResponse(
        {
            "post": post.id,
            "reactions": [{"reaction": r, "count": n, "names": names} for r, n, names in listed],
            "mine": list(mine.get(post.id, ())),
        }
    )


async def react(request: Request) -> JSONResponse:
    """``PUT`` gives the caller's reaction to the post, ``DELETE`` takes it back; each
    is idempotent. The post's screens hear of it within the reaction window."""
    rt = runtime(request)
    perms, post = await readable_post(rt, request)
    reaction = reaction_in(request.path_params["reaction"], rt.settings.reaction_set)
    perms.check_react(post.channel)
    name = perms.identity.name
    assert name is not None  # check_react let someone signed in through
    # Toggles count against the posting rate: each one may reach every screen.
    security.of(request).check_post_rate(request, perms.identity.limit_key)
    reacted = request.method == "PUT"
    toggle = await rt.store.toggle_reaction(
        post.id, name, reaction, reacted, rt.settings.reaction_window
    )
    rt.metrics.announced(toggle.event_id)
    return JSONResponse(
        {
            "post": post.id,
            "reaction": reaction,
            "reacted": reacted,
            "changed": toggle.changed,
            "reactions": reactions_json(toggle.post.reactions),
            "mine": list(toggle.mine),
            "event_id": toggle.event_id,
        }
    )


async def edit_post(request: Request) -> JSONResponse:
    rt = runtime(request)
    perms, found = await editable(rt, request)
    payload = await read_json(request, rt.settings.max_body_bytes)
    check_fields(payload, {"body"})
    body = text_field(payload, "body", rt.settings.max_post_chars)
    change = await rt.store.edit_post(found, body)
    return JSONResponse(await change_answer(rt, perms, change))


async def delete_post(request: Request) -> JSONResponse:
    rt = runtime(request)
    _, found = await editable(rt, request)
    change = await rt.store.delete_post(found)
    return JSONResponse(post_answer(rt, change))


async def pin_post(request: Request) -> JSONResponse:
    rt = runtime(request)
    pinned = request.url.path.endswith("/pin")
    perms, found = await editable(rt, request)
    change = await rt.store.set_pinned(found, pinned)
    return JSONResponse(await change_answer(rt, perms, change))


async def presence(request: Request) -> JSONResponse:
    """How many screens watch each channel one may read, over every process
    (presence.py)."""
    rt = runtime(request)
    perms = await rt.access.check(request)
    summed, workers = rt.presence.total()
    # Private channels one may not read are not named, not even with a count.
    names = sorted(c.name for c in perms.readable())
    return JSONResponse(
        {
            "streams": summed.streams,
            "watching": {name: summed.watching(name) for name in names},
            "workers": workers,
            "stale_after_seconds": rt.presence.stale_after,
        }
    )


# -- read state (reading.py) ----------------------------------------------------------


# Served directly by app.FeedApp, not through Starlette's layers (app.py, on posts
# served directly); in the table too, for the OpenAPI document and other methods' 405.
CREATE_POST = Route("/api/channels/{channel}/posts", create_post, methods=["POST"])

routes = [
    Route("/api/channels/{channel}/posts", list_posts, methods=["GET"]),
    CREATE_POST,
    Route("/api/posts/{post_id}", get_post, methods=["GET"]),
    Route("/api/posts/{post_id}", edit_post, methods=["PATCH"]),
    Route("/api/posts/{post_id}", delete_post, methods=["DELETE"]),
    Route("/api/posts/{post_id}/replies", list_replies, methods=["GET"]),
    Route("/api/posts/{post_id}/replies", create_reply, methods=["POST"]),
    Route("/api/posts/{post_id}/pin", pin_post, methods=["POST"]),
    Route("/api/posts/{post_id}/unpin", pin_post, methods=["POST"]),
    Route("/api/posts/{post_id}/reactions", list_reactions, methods=["GET"]),
    Route("/api/posts/{post_id}/reactions/{reaction}", react, methods=["PUT", "DELETE"]),
    Route("/api/presence", presence, methods=["GET"]),
    Route("/api/search", search, methods=["GET"]),
]
