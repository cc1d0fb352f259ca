"""Idempotency keys: the answer a create got, kept so that a retry gets the same.

Rationale:

1. Idempotency keys. An ``Idempotency-Key`` is stored in the same transaction as the
   post (or channel) and its event, with the answer the client got: a crash leaves
   either all three or none. Writers are serialised (log.py, on writers taking turns),
   so a concurrent retry with the same key waits, then finds the key and gets the
   stored answer. A new post with a key takes the same road as any new post, the group
   commit (new_posts.py, on new posts written in groups): the group's transaction looks
   its keys up and writes them, and a retry that arrives in the same group as its
   first try gets that try's answer. A replayed answer writes no post. Only successful
   writes are remembered: a refused request wrote nothing and may simply be retried.
   Keys expire after ``IDEMPOTENCY_TTL``; expired ones are deleted by the next write
   that uses a key.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from sqlalchemy import delete
from sqlmodel import Session, col, select

from feed.models import IdempotencyKey
from feed.storage.engine import now
from feed.storage.refusals import IdempotencyKeyReused
from feed.values import Answer, Claim, Once

IDEMPOTENCY_TTL = timedelta(hours=24)


def kept_answers(session: Session, claims: Sequence[Claim]) -> dict[str, IdempotencyKey]:
    """The answers kept for ``claims``, by key; expired ones are deleted first."""
    if not claims:
        return {}
    expired = col(IdempotencyKey.created_at) < now() - IDEMPOTENCY_TTL
    session.execute(delete(IdempotencyKey).where(expired))
    keys = sorted({claim.key for claim in claims})
    found = session.exec(select(IdempotencyKey).where(col(IdempotencyKey.key).in_(keys)))
    return {row.key: row for row in found.all()}


def replay(claim: Claim, kept: IdempotencyKey) -> Once:
    """The answer kept for ``claim``'s key, if ``claim`` is the request that got it."""
    if kept.fingerprint != claim.fingerprint:
        raise IdempotencyKeyReused(claim.key)
    return Once(Answer(kept.status, kept.body, kept.location), None, True)


def keep(session: Session, claim: Claim, given: Answer) -> None:
    """Keep ``given`` as the answer to ``claim``, in this transaction."""
    session.add(kept(claim, given))


def kept(claim: Claim, given: Answer) -> IdempotencyKey:
    """The row that keeps ``given`` as the answer to ``claim``."""
    return IdempotencyKey(
        key=claim.key,
        fingerprint=claim.fingerprint,
        status=given.status,
        body=given.body,
        location=given.location,
        created_at=now(),
    )
