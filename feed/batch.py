"""``POST /api/posts:batch``: up to ``MAX_BATCH_ITEMS`` posts and replies in one request.

The body is a JSON array, or NDJSON (one object a line). Each item is what a single
``POST /api/channels/{channel}/posts`` would send, plus where it goes and its key:
``{"channel": "general", "body": "...", "idempotency_key": "..."}``, or a reply,
``{"parent": 12, "body": "..."}``. The answer has one result per item, in order.

Rationale:

1. One answer per item. A result is what the single request would have answered: its
   ``status`` with the same JSON (``post`` and ``event_id`` for a 201; ``error`` and
   ``detail`` for a refusal), and ``replayed``. Items are checked in the order a single
   post is (where it goes and who may post there, the rate, then the body), so each
   refusal is the one its single request would get. What is wrong with the batch as a
   whole (batch_input.py, on a batch's envelope), or with who sends it (nobody signed
   in), is one answer for the request.
2. A well-formed batch is answered ``200 OK``, whatever its items' fate: the request
   was understood and every item has its answer. ``207 Multi-Status`` says the same
   but is WebDAV's, with an XML body clients expect to go with it, and a 201 or a 4xx
   for the whole would be wrong for some of the items. The one exception: when the
   database could not be reached for any item, the request is answered 503, with
   Retry-After, like every request that could not be served now.
3. A batch is charged as many posts as it holds: each item that may go where it
   names takes its turn at the identity's rate (security.py), as its single request
   would, and those past the rate are refused with 429 while the rest are written.
   Splitting posts into batches gains no rate that single posts do not have. The
   turns are taken from the rate once for the batch, at the first item that takes
   one, for every item still to come, as many as the rate allows; those past it are
   refused as they would be alone, and the turns of items that never came to the
   rate (refused for their place) are given back when the batch is read.
4. Keys are per item (``idempotency_key``); the header is refused, since one key
   cannot stand for answers that differ by item. An item's key makes the claim its
   single request would make (idempotency.py), so a key used in a batch replays alone
   and the other way round, and a retried batch writes nothing twice.
5. The written items go through the store's one road together (storage/new_posts.py,
   on batches): one transaction, one commit announcement, event ids in the items'
   order; the 200 is sent once they are committed.
6. ``Prefer: return=minimal`` (RFC 7240; batch_input.py, on ``Prefer``) answers each
   written item with its ``status``, ``id``, ``channel`` (where it went, which a
   reply's item does not say), ``event_id`` and ``replayed``, not the post: a client
   that sent the posts has the rest, and encoding a thousand of them back cost more
   than reading and checking them. Refusals are answered in full either way. The
   answer says ``Preference-Applied``, and every answer varies by ``Prefer``.
7. What depends only on the sender is read once per batch (``Sender``): its name,
   what its rate is counted by, and whether it may post or reply in each channel its
   items name, which cannot change between two items of one request. Each item still
   takes its own turn at the rate (3).
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from feed import security
from feed.batch_input import PREFER_MINIMAL, Item, prefers_minimal, read_batch
from feed.errors import ClientError, error_body, store_status
from feed.idempotency import item_claim, remembered
from feed.inputs import MAX_ID, post_body, text_field
from feed.limits import MAX_POST_ID
from feed.permissions import Permissions, unauthorized
from feed.runtime import Runtime, runtime
from feed.shapes import change_json
from feed.store import IdempotencyKeyReused, PostNotFound, StoreError, StoreUnavailable
from feed.values import Change, NewPost, Once, PostView

# The fields that say where an item goes and its key; the rest is a single post's body.
PLACES = ("channel", "parent", "idempotency_key")
# The fields of an item whose body is checked without a copy of it (8).
ITEM_FIELDS = frozenset(PLACES) | {"body", "author"}


class Asked(NamedTuple):
    """One item, read: where it goes, its key, and the item itself."""

    channel: str | None
    parent: int | None
    key: object
    item: dict[str, Any]

    @property
    def payload(self) -> dict[str, Any]:
        """What its single request would send."""
        return {k: v for k, v in self.item.items() if k not in PLACES}

    @property
    def path(self) -> str:
        """Where its single request would go."""
        if self.parent is not None:
            return f"/api/posts/{self.parent}/replies"
        return f"/api/channels/{self.channel}/posts"


def asked(item: dict[str, Any]) -> Asked:
    """``item`` read (1); a ClientError if it says nowhere, or two places, to go."""
    channel, parent = item.get("channel"), item.get("parent")
    if (channel is None) == (parent is None):
        raise ClientError(
            422, "Each item names its 'channel', or the 'parent' post it replies to.", sorted(item)
        )
    if channel is not None and not isinstance(channel, str):
        raise ClientError(422, "The field 'channel' must be a channel's name.", "channel")
    if parent is not None and (
        isinstance(parent, bool) or not isinstance(parent, int) or not 1 <= parent <= MAX_ID
    ):
        raise ClientError(422, "The field 'parent' must be a post id.", "parent")
    if parent is not None and parent > MAX_POST_ID:
        raise ClientError(404, f"There is no post with id {parent}.", parent)
    return Asked(channel, parent, item.get("idempotency_key"), item)


async def create_posts(request: Request) -> JSONResponse:
    rt = runtime(request)
    perms = await rt.access.check(request)
    if not perms.identity.signed_in:
        raise unauthorized("Posting needs a writer's token or a signed-in session.")
    read = await read_batch(request, rt.settings.max_body_bytes)
    if "idempotency-key" in request.headers:
        raise ClientError(
            400, "A batch takes a key per item, in its 'idempotency_key' field, not the header."
        )
    items = [_read(item) for item in read]
    parents = await _parents(rt, perms, items)
    sender = Sender(perms, security.of(request), rt.settings.max_post_chars)
    results: list[dict[str, Any] | None] = []
    news: list[NewPost] = []
    keys: list[object] = []
    try:
        for n, item in enumerate(items):
            try:
                if isinstance(item, ClientError):
                    raise item
                news.append(_admitted(request, sender, item, parents, len(items) - n))
                keys.append(item.key)
                results.append(None)
            except ClientError as exc:
                results.append({"status": exc.status, **error_body(exc.message, exc.detail)})
            except StoreError as exc:
                results.append({"status": store_status(exc), **error_body(str(exc))})
    finally:
        sender.give_back()
    written = await rt.store.create_posts(news) if news else []
    unavailable = [w for w in written if isinstance(w, StoreUnavailable)]
    if written and len(unavailable) == len(written):  # nothing was written (2)
        raise unavailable[0]
    minimal = prefers_minimal(request)
    answers = iter(zip(written, keys, strict=True))
    done = [r if r is not None else _result(*next(answers), minimal) for r in results]
    rt.metrics.announced(max((r.get("event_id") or 0 for r in done), default=0) or None)
    headers = {"Vary": "Prefer"} | ({"Preference-Applied": PREFER_MINIMAL} if minimal else {})
    return JSONResponse({"results": done}, headers=headers)


def _read(item: Item) -> Asked | ClientError:
    if isinstance(item, ClientError):
        return item
    try:
        return asked(item)
    except ClientError as exc:
        return exc


Parents = dict[int, PostView | StoreError]


async def _parents(rt: Runtime, perms: Permissions, items: list[Asked | ClientError]) -> Parents:
    """The posts the replies among ``items`` answer, or why each cannot be answered."""
    found: Parents = {}
    for item in items:
        if isinstance(item, ClientError) or item.parent is None or item.parent in found:
            continue
        try:
            post = await rt.store.get_post(item.parent, private=perms.private_readable())
            # A post one may not read is answered like one that does not exist.
            found[item.parent] = post if perms.may_read(post.channel) else PostNotFound(post.id)
        except PostNotFound as exc:
            found[item.parent] = exc
    return found


class Sender:
    """Who sends a batch, read once for all its items (7)."""

    def __init__(self, perms: Permissions, limits: security.Security, max_chars: int) -> None:
        self.perms = perms
        self.limits = limits
        self.max_chars = max_chars
        self.limit_key = perms.identity.limit_key
        # Turns at the rate taken for the batch's items and not yet used (3).
        self._turns, self._taken = 0, False
        author = perms.identity.name
        assert author is not None  # checked as signed in
        self.author = author
        # Whether the sender may post (False) or reply (True) in a channel: its refusal.
        self._places: dict[tuple[str, bool], ClientError | None] = {}

    def take_turn(self, request: Request, left: int) -> None:
        """An item's turn at the rate (3), ``left`` items of the batch still to come,
        this one included: the turns of all of them are taken at once, and whatever the
        identity's rate does not allow is refused item by item, as alone."""
        if self._turns:
            self._turns -= 1
            return
        key = self.limit_key
        if key is not None and not self._taken:
            self._taken = True
            self._turns = self.limits.posts.take_up_to(key, left)
            if self._turns:
                self._turns -= 1
                return
        self.limits.check_post_rate(request, key)

    def give_back(self) -> None:
        """The turns taken for items that did not come to theirs."""
        if self.limit_key is not None:
            self.limits.posts.give_back(self.limit_key, self._turns)
        self._turns = 0

    def check_place(self, channel: str, reply: bool) -> None:
        """``Permissions.check_reply`` or ``check_post``, asked once per channel."""
        key = (channel, reply)
        if key not in self._places:
            try:
                (self.perms.check_reply if reply else self.perms.check_post)(channel)
                self._places[key] = None
            except ClientError as exc:
                self._places[key] = exc
        refused = self._places[key]
        if refused is not None:  # a new one, not the first one raised again
            raise ClientError(refused.status, refused.message, refused.detail)


def _admitted(
    request: Request, sender: Sender, item: Asked, parents: Parents, left: int
) -> NewPost:
    """The post ``item`` asks for, if its single request would be written (1, 3, 4);
    ``left`` items of the batch to come, this one included."""
    if item.parent is not None:
        parent = parents[item.parent]
        if isinstance(parent, StoreError):
            raise parent
        channel = parent.channel
        sender.check_place(channel, reply=True)
    else:
        assert item.channel is not None
        channel = item.channel
        sender.check_place(channel, reply=False)
    sender.take_turn(request, left)
    author = sender.author
    body = _body(item, author, sender.max_chars)
    if item.key is None:
        return NewPost(channel, author, body, parent=item.parent)
    claim = item_claim(item.key, item.path, item.payload, author)
    answer = remembered(change_json, lambda change: f"/api/posts/{change.post.id}")
    return NewPost(channel, author, body, parent=item.parent, claim=claim, answer=answer)


def _body(asked: Asked, author: str, max_chars: int) -> str:
    """``post_body`` of what ``asked``'s single request would send (8)."""
    item = asked.item
    if "body" in item and item.keys() <= ITEM_FIELDS and item.get("author", author) == author:
        return text_field(item, "body", max_chars)
    return post_body(asked.payload, author, max_chars)  # its refusal, as sent alone


def _result(written: Change | Once | Exception, key: object, minimal: bool) -> dict[str, Any]:
    if isinstance(written, Change):
        if minimal:  # (6)
            post, event_id = written.post, written.event_id
            return {
                "status": 201,
                "id": post.id,
                "channel": post.channel,
                "event_id": event_id,
                "replayed": False,
            }
        return {"status": 201, **change_json(written), "replayed": False}
    if isinstance(written, Once):
        kept: dict[str, Any] = json.loads(written.answer.body)
        if minimal and "post" in kept:
            post = kept.pop("post")
            kept = {"id": post["id"], "channel": post["channel"], **kept}
        return {"status": written.answer.status, **kept, "replayed": written.replayed}
    if isinstance(written, IdempotencyKeyReused):  # named as its sender sent it
        written = IdempotencyKeyReused(str(key))
    if isinstance(written, StoreError):
        return {"status": store_status(written), **error_body(str(written))}
    raise written


routes = [Route("/api/posts:batch", create_posts, methods=["POST"])]
