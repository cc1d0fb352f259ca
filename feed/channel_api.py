"""The JSON API for channels and their members, under ``/api/channels``: anyone lists
the channels they may read; an admin creates, changes, archives and restores them and
says who belongs to a private one.

As every endpoint (api.py), these validate, call the store and answer: the store
announces each change once it has committed. Creating a channel takes an
``Idempotency-Key`` header (idempotency.py).
"""

from __future__ import annotations

from typing import Any

from starlette.convertors import Convertor, register_url_convertor
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from feed.errors import ClientError
from feed.idempotency import answer_once, idempotency_claim, once_for, remembered
from feed.identity import identity_name
from feed.inputs import (
    MAX_DESCRIPTION_CHARS,
    MAX_TITLE_CHARS,
    channel_name,
    check_fields,
    flag,
    optional_text,
    read_json,
    text_field,
)
from feed.permissions import forbidden_unless_admin
from feed.runtime import Runtime, runtime
from feed.shapes import channel_json
from feed.values import ChannelChange


def _channel_content(change: ChannelChange) -> dict[str, Any]:
    return {"channel": channel_json(change.channel), "event_id": change.event_id}


def channel_answer(rt: Runtime, change: ChannelChange) -> dict[str, Any]:
    rt.metrics.announced(change.event_id)
    return _channel_content(change)


async def list_channels(request: Request) -> JSONResponse:
    rt = runtime(request)
    # Read afresh, not from the access checks' recent copy (access.py, on recent
    # answers): a list is asked for to see what is there now, and it must answer 503
    # when it cannot know.
    await rt.access.channels(fresh=True)
    perms = await rt.access.check(request)
    return JSONResponse({"channels": [channel_json(c) for c in perms.readable()]})


async def admin_only(request: Request) -> Runtime:
    rt = runtime(request)
    forbidden_unless_admin((await rt.access.check(request)).identity)
    return rt


async def create_channel(request: Request) -> Response:
    rt = await admin_only(request)
    payload = await read_json(request, rt.settings.max_body_bytes)
    check_fields(
        payload,
        {"name", "title"},
        frozenset({"description", "private", "announcement_only", "replies"}),
    )
    name = channel_name(payload)
    title = text_field(payload, "title", MAX_TITLE_CHARS)
    description = optional_text(payload, "description", MAX_DESCRIPTION_CHARS) or ""
    access = {
        "private": flag(payload, "private") or False,
        "announcement_only": flag(payload, "announcement_only") or False,
        "replies": flag(payload, "replies") is not False,
    }
    location = f"/api/channels/{name}/posts"
    who = await rt.access.identify(request.scope)
    assert who.name is not None  # an admin
    claim = idempotency_claim(request, payload, who.name)
    if claim is not None:
        answer = remembered(_channel_content, lambda _: location)
        once = await once_for(
            request,
            rt.store.create_channel_once(
                claim, name, title.strip(), description.strip(), answer, **access
            ),
        )
        return answer_once(rt, once)
    change = await rt.store.create_channel(name, title.strip(), description.strip(), **access)
    headers = {"Location": location}
    return JSONResponse(channel_answer(rt, change), status_code=201, headers=headers)


CHANNEL_FIELDS = ("title", "description", "private", "announcement_only", "replies")


async def update_channel(request: Request) -> JSONResponse:
    rt = await admin_only(request)
    payload = await read_json(request, rt.settings.max_body_bytes)
    unknown = sorted(set(payload) - set(CHANNEL_FIELDS))
    if unknown or not payload:
        fields = ", ".join(repr(f) for f in CHANNEL_FIELDS)
        raise ClientError(422, f"Send one or more of {fields}.", unknown or None)
    title = optional_text(payload, "title", MAX_TITLE_CHARS)
    description = optional_text(payload, "description", MAX_DESCRIPTION_CHARS)
    change = await rt.store.update_channel(
        request.path_params["channel"],
        title=title.strip() if title is not None else None,
        description=description.strip() if description is not None else None,
        private=flag(payload, "private"),
        announcement_only=flag(payload, "announcement_only"),
        replies=flag(payload, "replies"),
    )
    return JSONResponse(channel_answer(rt, change))


async def archive_channel(request: Request) -> JSONResponse:
    rt = await admin_only(request)
    archived = request.url.path.endswith("/archive")
    change = await rt.store.set_archived(request.path_params["channel"], archived)
    return JSONResponse(channel_answer(rt, change))


async def list_members(request: Request) -> JSONResponse:
    rt = await admin_only(request)
    channel = request.path_params["channel"]
    members = await rt.store.members(channel=channel)
    if not members and channel not in await rt.store.channel_names():
        raise ClientError(404, f"There is no channel named {channel!r}.", channel)
    listed = [{"name": m.name, "may_post": m.may_post} for m in members]
    return JSONResponse({"channel": channel, "members": listed})


async def put_member(request: Request) -> JSONResponse:
    """Make ``name`` a member of the channel: it may read it if private, and post
    there if announcement-only and ``may_post``."""
    rt = await admin_only(request)
    payload = await read_json(request, rt.settings.max_body_bytes)
    check_fields(payload, set(), frozenset({"may_post"}))
    try:
        name = identity_name(request.path_params["name"])
    except ValueError as exc:
        raise ClientError(422, f"That is not a usable name: {exc}.") from None
    member = await rt.store.set_member(
        request.path_params["channel"], name, may_post=flag(payload, "may_post") or False
    )
    return JSONResponse(
        {"channel": member.channel, "name": member.name, "may_post": member.may_post}
    )


async def delete_member(request: Request) -> JSONResponse:
    rt = await admin_only(request)
    channel, name = request.path_params["channel"], request.path_params["name"]
    if not await rt.store.remove_member(channel, name):
        raise ClientError(404, f"{name!r} is not a member of #{channel}.", name)
    return JSONResponse({"channel": channel, "name": name, "removed": True})


class _MemberName(Convertor[str]):
    """A member's name in its path: the rest of it, "/" and line breaks included. A name
    may hold a "/" (identity.py), sent escaped (%2F), which the server has decoded by
    now; what a name may not hold is refused by its own rule, with the reason, not
    answered 404 as a path that matches nothing."""

    regex = "(?s:.+)"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("member", _MemberName())


routes = [
    Route("/api/channels", list_channels, methods=["GET"]),
    Route("/api/channels", create_channel, methods=["POST"]),
    Route("/api/channels/{channel}", update_channel, methods=["PATCH"]),
    Route("/api/channels/{channel}/archive", archive_channel, methods=["POST"]),
    Route("/api/channels/{channel}/restore", archive_channel, methods=["POST"]),
    Route("/api/channels/{channel}/members", list_members, methods=["GET"]),
    Route("/api/channels/{channel}/members/{name:member}", put_member, methods=["PUT"]),
    Route("/api/channels/{channel}/members/{name:member}", delete_member, methods=["DELETE"]),
]
