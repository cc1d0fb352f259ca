"""The JSON API under ``/api``.

Every write goes through the store (post and event row in one transaction), which
announces it to this process's streams and to the other processes once it has
committed (storage/log.py, on the commit announcement): an endpoint validates, calls the
store and answers, and announces nothing itself.

Creating a post or a channel takes an ``Idempotency-Key`` header: the key is stored
with the write and its answer (storage/keys.py, on idempotency keys), so a retry gets that same
answer, marked ``Idempotent-Replayed: true``, and never writes twice. New posts are
limited per identity (security.py).

Rationale:

1. A request body is hostile until checked. Anything the parser, the rest of feed
   or the database driver could not take is refused here with a 400 or 422, never
   left to fail later with a 500: nesting deeper than ``MAX_JSON_DEPTH`` (Python's
   parser runs out of stack near a thousand levels, and so would the fingerprint
   below), NaN and Infinity (not JSON, and no answer could echo them), integers of
   thousands of digits, and strings that are not text (text.py) wherever they sit.
   Numbers in paths and queries are ASCII digits; beyond 64 bits they are no id.
2. An ``Idempotency-Key`` belongs to whoever sent it: the store keeps a digest of the
   sender's name with the key, so another identity sending the same key and body
   gets its own answer, never the first sender's post. The digest fits the key
   column as it is (a name and a key of 255 characters would not), and the store
   needs no notion of owners.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from feed import logs, security, text
from feed.errors import ClientError
from feed.identity import Identity, identity_name
from feed.limits import (
    CHANNEL_NAME,
    IDEMPOTENCY_KEY,
    MAX_CHANNEL_NAME_CHARS,
    MAX_DESCRIPTION_CHARS,
    MAX_ID,
    MAX_IDEMPOTENCY_KEY_CHARS,
    MAX_JSON_DEPTH,
    MAX_PAGE,
    MAX_TITLE_CHARS,
)
from feed.models import Answer, Change, ChannelChange, Claim, Once
from feed.permissions import Permissions, forbidden_unless_admin
from feed.render import channel_json, post_json
from feed.runtime import Runtime, runtime
from feed.store import IdempotencyKeyReused, PostNotFound

WHOLE_NUMBER = re.compile(r"[+-]?[0-9]+")
# Fields whose text may span lines (text.py); every other text field is one line.
MULTILINE_FIELDS = frozenset({"body", "description"})
REPLAYED_HEADER = "Idempotent-Replayed"


async def read_json(request: Request, limit: int) -> dict[str, Any]:
    """The request's JSON object, or a ClientError that says what is wrong with it."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/json":
        shown = media_type or "none"
        raise ClientError(415, "Send the body as JSON (Content-Type: application/json).", shown)
    raw = await read_body(request, limit)
    if not raw.strip():
        raise ClientError(400, "The request body is empty; send a JSON object.")
    payload = parse_json(raw)
    if not isinstance(payload, dict):
        raise ClientError(422, "The request body must be a JSON object.", type(payload).__name__)
    return payload


def parse_json(raw: bytes) -> Any:
    """``raw`` as JSON that the rest of feed can take (rationale 1), or a ClientError."""
    try:
        payload = json.loads(raw, parse_constant=_no_constant, parse_float=_finite)
    except UnicodeDecodeError:
        raise ClientError(400, "The request body is not valid UTF-8.") from None
    except json.JSONDecodeError as exc:
        raise ClientError(400, "The request body is not valid JSON.", str(exc)) from None
    except RecursionError:
        raise _too_deep() from None
    except ValueError:  # NaN, Infinity, 1e999, or an integer of thousands of digits
        raise ClientError(
            400, "The request body holds a number that is not finite or is far too long."
        ) from None
    _check_shape(payload)
    return payload


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):
        raise ValueError(f"{literal[:40]} is not a finite number")
    return value


def _too_deep() -> ClientError:
    return ClientError(
        400, f"The request body is nested more than {MAX_JSON_DEPTH} levels deep.", MAX_JSON_DEPTH
    )


def _check_shape(payload: Any) -> None:
    """Refuse nesting deeper than MAX_JSON_DEPTH and strings that are not text
    (text.py, on lone surrogates), wherever they are: a field name or an ignored value is
    echoed in refusals and fingerprinted for idempotency."""
    # (value, depth, the top-level field it is in, if any)
    pending: list[tuple[Any, int, str | None]] = [(payload, 0, None)]
    while pending:
        value, depth, field = pending.pop()
        if isinstance(value, str):
            refused = text.not_text(value)
            if refused is not None:
                where = "A string in the request body" if field is None else f"The field {field!r}"
                raise ClientError(422, f"{where} {refused}.", field)
        elif isinstance(value, dict | list):
            if depth >= MAX_JSON_DEPTH:
                raise _too_deep()
            if isinstance(value, list):
                pending += [(item, depth + 1, field) for item in value]
                continue
            for key, item in value.items():
                pending.append((item, depth + 1, field if depth else key))
                pending.append((key, depth, field))  # checked before its value names it


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refusing more than ``limit`` bytes before reading them all."""
    too_big = ClientError(413, f"The request body is larger than {limit} bytes.", limit)
    declared = request.headers.get("content-length")
    if declared is not None and declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise too_big
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_big
        chunks.append(chunk)
    return b"".join(chunks)


def check_fields(
    payload: dict[str, Any], required: set[str], optional: frozenset[str] = frozenset()
) -> None:
    unknown = sorted(set(payload) - required - optional)
    if unknown:
        raise ClientError(422, f"Unknown field {unknown[0]!r}.", unknown)
    missing = sorted(required - set(payload))
    if missing:
        raise ClientError(422, f"The field {missing[0]!r} is required.", missing)


def text_field(payload: dict[str, Any], name: str, max_chars: int) -> str:
    """The field ``name`` as text feed may store (text.py): the fields in
    MULTILINE_FIELDS may span lines, others are one line."""
    value = payload.get(name)
    if not isinstance(value, str):
        raise ClientError(422, f"The field {name!r} must be a string.", name)
    if not value.strip():
        raise ClientError(422, f"The field {name!r} must not be empty.", name)
    if len(value) > max_chars:
        raise ClientError(
            422, f"The field {name!r} is longer than {max_chars} characters.", len(value)
        )
    refused = text.problem(value, multiline=name in MULTILINE_FIELDS)
    if refused is not None:
        raise ClientError(422, f"The field {name!r} {refused}.", name)
    return value


def channel_name(payload: dict[str, Any]) -> str:
    """The ``name`` field of a new channel, or a ClientError that says what a name is."""
    name = text_field(payload, "name", MAX_CHANNEL_NAME_CHARS)
    if not CHANNEL_NAME.fullmatch(name):
        raise ClientError(
            422,
            f"A channel name is 1 to {MAX_CHANNEL_NAME_CHARS} lower-case letters, digits, "
            "'-' or '_', starting with a letter or digit.",
            name,
        )
    return name


def post_body(rt: Runtime, who: Identity, payload: dict[str, Any]) -> str:
    """A new post's body. The author is whoever posts: an ``author`` field, which
    scripts written for older versions send, must name that identity."""
    check_fields(payload, {"body"}, frozenset({"author"}))
    if "author" in payload and payload["author"] != who.name:
        raise ClientError(
            422,
            f"The author of a post is the identity that writes it ({who.name!r}); "
            "leave out the 'author' field.",
            payload["author"],
        )
    return text_field(payload, "body", rt.settings.max_post_chars)


def flag(payload: dict[str, Any], name: str) -> bool | None:
    value = payload.get(name)
    if value is not None and not isinstance(value, bool):
        raise ClientError(422, f"The field {name!r} must be true or false.", name)
    return value


def whole_number(raw: str) -> int | None:
    """``raw`` as a whole number (ASCII digits, an optional sign), or None. One past the
    64-bit range stands for anything longer: ``int()`` refuses thousands of digits with
    an error of its own, and no id or count is that long."""
    if not WHOLE_NUMBER.fullmatch(raw):
        return None
    digits = raw.lstrip("+-").lstrip("0")
    if len(digits) > len(str(MAX_ID)):
        return -(MAX_ID + 1) if raw.startswith("-") else MAX_ID + 1
    return int(raw)


def post_id(request: Request) -> int:
    raw: str = request.path_params["post_id"]
    value = whole_number(raw)
    if value is None or value < 0 or value > MAX_ID:
        raise ClientError(404, f"There is no post with id {raw}.", raw)
    return value


def int_param(request: Request, name: str, *, low: int, high: int | None = None) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    value = whole_number(raw)
    if value is None:
        raise ClientError(400, f"The parameter {name!r} must be a whole number.", raw)
    if value < low or (high is not None and value > high):
        bounds = f"at least {low}" if high is None else f"between {low} and {high}"
        raise ClientError(400, f"The parameter {name!r} must be {bounds}.", raw)
    if value > MAX_ID:  # beyond what a database column holds: a 400, not a 500
        raise ClientError(400, f"The parameter {name!r} must be at most {MAX_ID}.", raw)
    return value


def timed(rt: Runtime, event_id: int | None) -> None:
    """Time a write that logged ``event_id``, from its request's arrival to now: its
    commit was announced before the store's answer came back."""
    started = logs.request_started.get()
    if event_id is not None and started is not None:
        rt.metrics.announce_seconds.observe(time.perf_counter() - started)


def post_answer(rt: Runtime, change: Change) -> dict[str, Any]:
    timed(rt, change.event_id)
    return _post_content(change)


async def create_post_from(
    rt: Runtime, perms: Permissions, channel: str, payload: dict[str, Any]
) -> Change:
    """Validate and store a new post, once ``admit_post`` let it in; shared by the API
    and the compose form."""
    body = post_body(rt, perms.identity, payload)
    assert perms.identity.name is not None
    return await rt.store.create_post(channel, perms.identity.name, body)


def admit_post(request: Request, perms: Permissions, channel: str) -> None:
    """May this identity post in ``channel``, and is it within its rate? Checked before
    the body is read, so a refused request costs nothing."""
    perms.check_post(channel)
    security.of(request).check_post_rate(request, perms.identity.limit_key)


async def editable(rt: Runtime, request: Request) -> int:
    """The id of the post in the path, if the requester may change it."""
    perms = await rt.access.check(request)
    found = post_id(request)
    post = await rt.store.get_post(found, private=perms.private_readable())
    # A post one may not read is answered like one that does not exist.
    if not perms.may_read(post.channel):
        raise PostNotFound(found)
    perms.check_edit(post)
    # Changes count against the same rate as posts: each one reaches every screen.
    security.of(request).check_post_rate(request, perms.identity.limit_key)
    return found


def idempotency_claim(request: Request, payload: dict[str, Any], owner: str) -> Claim | None:
    """The request's ``Idempotency-Key`` with a fingerprint of what it asks, if it has one.

    The key is kept as ``owner``'s (rationale 2). The fingerprint covers the method, the
    path and the parsed body, so a retry that re-encodes the same JSON differently
    still matches."""
    key = request.headers.get("idempotency-key")
    if key is None:
        return None
    if not IDEMPOTENCY_KEY.fullmatch(key):
        raise ClientError(
            400,
            f"The Idempotency-Key header must be 1 to {MAX_IDEMPOTENCY_KEY_CHARS} visible "
            "ASCII characters.",
            key,
        )
    asked = json.dumps([request.method, request.url.path, payload], sort_keys=True)
    owned = hashlib.sha256(f"{owner}\x00{key}".encode()).hexdigest()
    return Claim(owned, hashlib.sha256(asked.encode()).hexdigest())


async def once_for(request: Request, write: Awaitable[Once]) -> Once:
    """``write``'s outcome; a reused key is named as its sender sent it, not as kept."""
    try:
        return await write
    except IdempotencyKeyReused:
        raise IdempotencyKeyReused(request.headers["idempotency-key"]) from None


def remembered(
    content: Callable[[Any], dict[str, Any]], location: Callable[[Any], str]
) -> Callable[[Any], Answer]:
    """How the store writes down a 201 answer, in the bytes JSONResponse would send."""

    def answer(change: Any) -> Answer:
        body = JSONResponse(content(change)).body
        return Answer(201, bytes(body).decode("utf-8"), location(change))

    return answer


def answer_once(rt: Runtime, once: Once) -> Response:
    """The first answer, or the same answer replayed."""
    timed(rt, once.event_id)
    headers = {"Location": once.answer.location} if once.answer.location else {}
    if once.replayed:
        headers[REPLAYED_HEADER] = "true"
    return Response(
        once.answer.body, once.answer.status, headers=headers, media_type="application/json"
    )


def _post_content(change: Change) -> dict[str, Any]:
    return {"post": post_json(change.post), "event_id": change.event_id}


def _channel_content(change: ChannelChange) -> dict[str, Any]:
    return {"channel": channel_json(change.channel), "event_id": change.event_id}


def channel_answer(rt: Runtime, change: ChannelChange) -> dict[str, Any]:
    timed(rt, change.event_id)
    return _channel_content(change)


def optional_text(payload: dict[str, Any], name: str, max_chars: int) -> str | None:
    return text_field(payload, name, max_chars) if name in payload else None


# -- endpoints ---------------------------------------------------------------------


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
        payload, {"name", "title"}, frozenset({"description", "private", "announcement_only"})
    )
    name = channel_name(payload)
    title = text_field(payload, "title", MAX_TITLE_CHARS)
    description = optional_text(payload, "description", MAX_DESCRIPTION_CHARS) or ""
    access = {
        "private": flag(payload, "private") or False,
        "announcement_only": flag(payload, "announcement_only") or False,
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


CHANNEL_FIELDS = ("title", "description", "private", "announcement_only")


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


async def list_posts(request: Request) -> JSONResponse:
    rt = runtime(request)
    perms = await rt.access.check(request)
    channel = request.path_params["channel"]
    before = int_param(request, "before", low=1)
    limit = int_param(request, "limit", low=1, high=MAX_PAGE) or rt.settings.page_size
    perms.check_read(channel)
    posts = await rt.store.list_posts(
        [channel], before=before, limit=limit, private=perms.private_readable()
    )
    next_before = posts[-1].id if len(posts) == limit else None
    return JSONResponse({"posts": [post_json(p) for p in posts], "next_before": next_before})


async def create_post(request: Request) -> Response:
    rt = runtime(request)
    perms = await rt.access.check(request)
    channel = request.path_params["channel"]
    admit_post(request, perms, channel)
    payload = await read_json(request, rt.settings.max_body_bytes)
    author = perms.identity.name
    assert author is not None  # admit_post let a writer in
    claim = idempotency_claim(request, payload, author)
    if claim is not None:
        body = post_body(rt, perms.identity, payload)
        answer = remembered(_post_content, lambda change: f"/api/posts/{change.post.id}")
        once = await once_for(
            request, rt.store.create_post_once(claim, channel, author, body, answer)
        )
        return answer_once(rt, once)
    change = await create_post_from(rt, perms, channel, payload)
    headers = {"Location": f"/api/posts/{change.post.id}"}
    return JSONResponse(post_answer(rt, change), status_code=201, headers=headers)


async def get_post(request: Request) -> JSONResponse:
    rt = runtime(request)
    perms = await rt.access.check(request)
    found = post_id(request)
    post = await rt.store.get_post(found, private=perms.private_readable())
    if not perms.may_read(post.channel):
        raise PostNotFound(found)
    return JSONResponse({"post": post_json(post)})


async def edit_post(request: Request) -> JSONResponse:
    rt = runtime(request)
    found = await editable(rt, request)
    payload = await read_json(request, rt.settings.max_body_bytes)
    check_fields(payload, {"body"})
    body = text_field(payload, "body", rt.settings.max_post_chars)
    change = await rt.store.edit_post(found, body)
    return JSONResponse(post_answer(rt, change))


async def delete_post(request: Request) -> JSONResponse:
    rt = runtime(request)
    change = await rt.store.delete_post(await editable(rt, request))
    return JSONResponse(post_answer(rt, change))


async def pin_post(request: Request) -> JSONResponse:
    rt = runtime(request)
    pinned = request.url.path.endswith("/pin")
    change = await rt.store.set_pinned(await editable(rt, request), pinned)
    return JSONResponse(post_answer(rt, change))


routes = [
    Route("/api/channels", list_channels, methods=["GET"]),
    Route("/api/channels", create_channel, methods=["POST"]),
    Route("/api/channels/{channel}", update_channel, methods=["PATCH"]),
    Route("/api/channels/{channel}/archive", archive_channel, methods=["POST"]),
    Route("/api/channels/{channel}/restore", archive_channel, methods=["POST"]),
    Route("/api/channels/{channel}/members", list_members, methods=["GET"]),
    Route("/api/channels/{channel}/members/{name}", put_member, methods=["PUT"]),
    Route("/api/channels/{channel}/members/{name}", delete_member, methods=["DELETE"]),
    Route("/api/channels/{channel}/posts", list_posts, methods=["GET"]),
    Route("/api/channels/{channel}/posts", create_post, methods=["POST"]),
    Route("/api/posts/{post_id}", get_post, methods=["GET"]),
    Route("/api/posts/{post_id}", edit_post, methods=["PATCH"]),
    Route("/api/posts/{post_id}", delete_post, methods=["DELETE"]),
    Route("/api/posts/{post_id}/pin", pin_post, methods=["POST"]),
    Route("/api/posts/{post_id}/unpin", pin_post, methods=["POST"]),
]
