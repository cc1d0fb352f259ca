"""Why a request of the command line's to a server failed, as the command tells it.

Rationale:

1. Failures come in kinds, so the command can give each its exit code (cli.py, on
   exit codes): ``NotSendable`` (a URL that is not one, or text no server could take,
   found before any request), ``Refused`` (the server answered 4xx; its reason is in
   the message), ``Unreachable`` (no answer, or the server failed with a 5xx) and
   ``NotFeed`` (an answer no feed server gives).
2. A refusal's ``Retry-After``, in seconds or as a date, is honoured up to
   ``MAX_RETRY_AFTER`` (client.py reads the answer: only it speaks HTTP).
"""

from __future__ import annotations

import email.utils
import math
from datetime import UTC, datetime

MAX_RETRY_AFTER = 60.0  # the longest Retry-After honoured (2)


class Failure(Exception):
    """A request that could not be made or was not answered with success (1)."""

    status: int | None = None  # the server's answer, if it answered
    retry_after: float | None = None  # seconds, as its Retry-After said


class NotSendable(Failure):
    """Nothing was sent: the URL or a value could not be (1)."""


class Refused(Failure):
    """The server refused the request (4xx) and said why."""


class Unreachable(Failure):
    """No answer from the server, or it failed (5xx)."""


class NotFeed(Failure):
    """The server answered with what feed never sends: no feed is there."""


def retry_after(value: str) -> float | None:
    """A ``Retry-After`` in seconds, from its seconds or (a proxy's) date form, up to
    ``MAX_RETRY_AFTER``; None if it says neither."""
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:  # "-0000": UTC, as HTTP dates are
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    if math.isnan(seconds):
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def not_now(failure: Failure) -> bool:
    """An answer a stream that was open waits out rather than ends on (client.py, on
    following a stream)."""
    return isinstance(failure, Unreachable) or failure.status == 429
