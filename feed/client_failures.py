"""Why a request of the command line's to a server failed, as the command tells it.

Rationale:

1. Failures come in kinds, so the command can give each its exit code (cli.py, on
   exit codes): ``NotSendable`` (a URL that is not one, or text no server could take,
   found before any request), ``Refused`` (the server answered 4xx; its reason is in
   the message), ``Unreachable`` (no answer, or the server failed with a 5xx) and
   ``NotFeed`` (an answer no feed server gives).
2. A refusal's ``Retry-After``, in seconds or as a date, is honoured up to
   ``MAX_RETRY_AFTER`` (client.py reads the answer: only it speaks HTTP).
3. A refusal's reason is shown shortened: feed's own (the ``error`` of its JSON) up to
   ``MAX_ERROR`` characters, which none of feed's reasons reach, and another server's
   first line up to ``MAX_REASON``. Either may quote what was sent (a name of
   thousands of characters) or be anything a server likes.
4. A redirect is not followed: it would take the token to wherever it points. It is
   named, with the ``--url`` that would reach the server it points at: a server moved
   to https:// answers so every request made over http://.
"""

from __future__ import annotations

import email.utils
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urljoin

from feed.redaction import redact_url

MAX_RETRY_AFTER = 60.0  # the longest Retry-After honoured (2)
MAX_REASON = 200  # characters of an answer that is not feed's, shown as its reason (3)
MAX_ERROR = 500  # characters of feed's own reason (3)


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


@dataclass(frozen=True, slots=True)
class Answer:
    """A server's answer as client.py read it, whole (within its bounds)."""

    url: str  # what was asked, query and all
    status: int
    reason: str  # the status's phrase
    headers: Mapping[str, str]  # names in any case
    body: bytes


def refusal(answer: Answer, base: str) -> Failure:
    """The failure an answer of error says, with its reason (3) and Retry-After; ``base``
    is the server's URL, as --url gave it."""
    try:
        said = json.loads(answer.body)["error"]
        message = shortened(str(said), MAX_ERROR)
    except (ValueError, KeyError, TypeError):
        message = _first_line(answer.body.decode("utf-8", "replace"))
    location = answer.headers.get("location", "")
    if 300 <= answer.status < 400 and location:
        message = _redirect(urljoin(answer.url, location), answer.url, base)
    said = f"the server answered {answer.status}: {message or answer.reason}"
    failure = Refused(said) if answer.status < 500 else Unreachable(said)
    failure.status = answer.status
    failure.retry_after = retry_after(answer.headers.get("retry-after", ""))
    return failure


def _first_line(text: str) -> str:
    """Another server's reason (a proxy's page, say): its first line, if it is text."""
    lines = text.strip().splitlines()
    first = lines[0].strip() if lines else ""
    return shortened(first, MAX_REASON) if first and not first.startswith("<") else ""


def _redirect(target: str, asked: str, base: str) -> str:
    """Where a redirect points, and the --url that reaches it if the path asked for is
    kept (4); passwords hidden."""
    said = f"a redirect to {shortened(redact_url(target), MAX_REASON)}, not followed"
    path = asked[len(base) :] if asked.startswith(base) else ""
    if not path or not target.endswith(path) or target == asked:
        return f"{said}: if feed is there, give its URL as --url"
    moved = target[: -len(path)]
    return f"{said}: if feed is there, use --url {shortened(redact_url(moved), MAX_REASON)}"


def shortened(text: str, most: int) -> str:
    """``text``, cut to ``most`` characters with an ellipsis if it is longer."""
    return text if len(text) <= most else f"{text[: most - 1]}…"


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
