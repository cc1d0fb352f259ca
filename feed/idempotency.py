"""Idempotent requests over HTTP: the ``Idempotency-Key`` header, and the answers a
retry gets again.

Creating a post, a reply or a channel takes the header: the key is stored with the
write and its answer (storage/keys.py, on idempotency keys), so a retry gets that same
answer, marked ``Idempotent-Replayed: true``, and never writes twice.

Rationale:

1. An ``Idempotency-Key`` belongs to whoever sent it: the store keeps a digest of the
   sender's name with the key, so another identity sending the same key and body
   gets its own answer, never the first sender's post. The digest fits the key
   column as it is (a name and a key of 255 characters would not), and the store
   needs no notion of owners.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from feed.errors import ClientError
from feed.inputs import IDEMPOTENCY_KEY, MAX_IDEMPOTENCY_KEY_CHARS, header
from feed.runtime import Runtime
from feed.store import IdempotencyKeyReused
from feed.values import Answer, Claim, Once

REPLAYED_HEADER = "Idempotent-Replayed"


def idempotency_claim(request: Request, payload: dict[str, Any], owner: str) -> Claim | None:
    """The request's ``Idempotency-Key`` with a fingerprint of what it asks, if it has one.

    The key is kept as ``owner``'s (rationale 1). The fingerprint covers the method, the
    path and the parsed body, so a retry that re-encodes the same JSON differently
    still matches."""
    key = header(request.scope, b"idempotency-key")
    if key is None:
        return None
    return _claim(
        "The Idempotency-Key header", key, [request.method, request.url.path, payload], owner, 400
    )


def item_claim(key: Any, path: str, payload: dict[str, Any], owner: str) -> Claim:
    """The claim of a batch's item with the key ``key``: the one a single ``POST`` of
    ``payload`` to ``path`` would make, so a key is the same in a batch or alone."""
    return _claim("The field 'idempotency_key'", key, ["POST", path, payload], owner, 422)


def _claim(where: str, key: Any, asked: list[Any], owner: str, status: int) -> Claim:
    if not isinstance(key, str) or not IDEMPOTENCY_KEY.fullmatch(key):
        raise ClientError(
            status,
            f"{where} must be 1 to {MAX_IDEMPOTENCY_KEY_CHARS} visible ASCII characters.",
            None,  # not echoed: it may be anything, up to the headers' limit
        )
    fingerprint = json.dumps(asked, sort_keys=True)
    owned = hashlib.sha256(f"{owner}\x00{key}".encode()).hexdigest()
    return Claim(owned, hashlib.sha256(fingerprint.encode()).hexdigest())


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
    rt.metrics.announced(once.event_id)
    headers = {"Location": once.answer.location} if once.answer.location else {}
    if once.replayed:
        headers[REPLAYED_HEADER] = "true"
    return Response(
        once.answer.body, once.answer.status, headers=headers, media_type="application/json"
    )
