"""The read-state API: what a person has not read, how far they have read each
channel, and the posts that mention them (reading.py has the rules, storage/reading.py
the positions). Every answer is the requester's own; someone without a person of
their own (anonymous, a kiosk link, a token limited to some channels) gets a 401."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from feed import reading
from feed.inputs import MAX_ID, MAX_PAGE, check_fields, event_id_field, int_param, read_json
from feed.runtime import runtime


async def my_unread(request: Request) -> JSONResponse:
    """What the requester has not read, per channel they may read."""
    rt = runtime(request)
    perms = await rt.access.check(request)
    name = reading.the_person(perms)
    found = await rt.store.unread(
        name, reading.readable_names(perms), private=perms.private_readable()
    )
    return JSONResponse(reading.unread_json(found))


async def mark_read(request: Request) -> JSONResponse:
    """Move the requester's position in a channel forward to ``up_to`` (an event id;
    taken as the channel's newest event at or before it), or to the channel's newest
    event if not sent."""
    rt = runtime(request)
    perms = await rt.access.check(request)
    name = reading.the_person(perms)
    channel = request.path_params["channel"]
    perms.check_read(channel)
    payload = await read_json(request, rt.settings.max_body_bytes)
    check_fields(payload, set(), frozenset({"up_to"}))
    up_to = event_id_field(payload, "up_to")
    mark = await rt.store.mark_read(name, channel, MAX_ID if up_to is None else up_to)
    rt.metrics.announced(mark.event_id)
    return JSONResponse(
        {"channel": mark.channel, "read_up_to": mark.up_to, "event_id": mark.event_id}
    )


async def mark_all_read(request: Request) -> JSONResponse:
    """Mark every channel the requester may read as read."""
    rt = runtime(request)
    perms = await rt.access.check(request)
    name = reading.the_person(perms)
    payload = await read_json(request, rt.settings.max_body_bytes)
    check_fields(payload, set())
    marks = await rt.store.mark_all_read(name, reading.readable_names(perms))
    return JSONResponse({"channels": {m.channel: {"read_up_to": m.up_to} for m in marks}})


async def my_mentions(request: Request) -> JSONResponse:
    """The posts that mention the requester, newest first."""
    rt = runtime(request)
    perms = await rt.access.check(request)
    name = reading.the_person(perms)
    before = int_param(request, "before", low=1)
    limit = int_param(request, "limit", low=1, high=MAX_PAGE) or rt.settings.page_size
    found = await rt.store.mentions(
        name,
        reading.readable_names(perms),
        private=perms.private_readable(),
        before=before,
        limit=limit,
    )
    next_before = found[-1].event_id if len(found) == limit else None
    mine = await rt.store.my_reactions(name, [m.post.id for m in found])
    listed = [reading.mention_json(m, mine.get(m.post.id, ())) for m in found]
    return JSONResponse({"mentions": listed, "next_before": next_before})


routes = [
    Route("/api/me/unread", my_unread, methods=["GET"]),
    Route("/api/me/read", mark_all_read, methods=["POST"]),
    Route("/api/me/mentions", my_mentions, methods=["GET"]),
    Route("/api/channels/{channel}/read", mark_read, methods=["POST"]),
]
