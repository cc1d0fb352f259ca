"""What a search request asks, read and checked: the ``q`` of a search or a live search,
its filters, its cursor and its page size. The query language itself is search.py's;
the rules for reading numbers and text are inputs.py's, as for every request.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from starlette.requests import Request

from feed import search, text
from feed.errors import ClientError
from feed.inputs import choice, int_param
from feed.limits import MAX_SEARCH_PAGE
from feed.search import Query, QueryError
from feed.search_values import Cursor, Filters

MAX_AUTHOR_CHARS = 200


@dataclass(frozen=True, slots=True)
class SearchAsked:
    """What a search request asks: its words (None: filters only), filters, page."""

    query: Query | None
    filters: Filters
    cursor: Cursor
    limit: int | None


def search_query(raw: str | None) -> Query | None:
    """The ``q`` of a search or a live search, parsed (search.py); a 400 with the
    parser's sentence if it is no query. Empty: None."""
    if raw is None or not raw.strip():
        return None
    refused = text.problem(raw, multiline=False)
    if refused is not None:
        raise ClientError(400, f"The search {refused}.", "q")
    try:
        return search.parse(raw)
    except QueryError as exc:
        raise ClientError(400, str(exc), "q") from None


def search_asked(request: Request, channels: Sequence[str] | None) -> SearchAsked:
    """A search request's parameters (``channel=`` already checked by the caller)."""
    params = request.query_params
    try:
        cursor = Cursor.parse(params.get("cursor"))
    except QueryError as exc:
        raise ClientError(400, str(exc), "cursor") from None
    author = params.get("author") or None
    if author is not None:
        refused = text.problem(author, multiline=False)
        if refused is not None or len(author) > MAX_AUTHOR_CHARS:
            raise ClientError(400, f"The parameter 'author' {refused or 'is too long'}.", author)
    pinned = choice(params.get("pinned"), "The parameter 'pinned'", ("true", "false"), default="")
    filters = Filters(
        channels=None if channels is None else tuple(channels),
        author=author,
        after=moment(params.get("after"), "after"),
        before=moment(params.get("before"), "before"),
        pinned=None if not pinned else pinned == "true",
    )
    limit = int_param(request, "limit", low=1, high=MAX_SEARCH_PAGE)
    return SearchAsked(search_query(params.get("q")), filters, cursor, limit)


def moment(raw: str | None, name: str) -> datetime | None:
    """An ISO 8601 date or time (UTC unless it says otherwise), None if not sent."""
    if not raw:
        return None
    try:
        found = datetime.fromisoformat(raw) if raw.isascii() else None
    except ValueError:
        found = None
    if found is None:
        raise ClientError(
            400, f"The parameter {name!r} must be a date or time such as 2026-11-30.", raw
        )
    # Years at the calendar's ends overflow once moved to UTC.
    if not 1 < found.year < 9999:
        raise ClientError(
            400, f"The parameter {name!r} must be a date between 0002-01-01 and 9998-12-31.", raw
        )
    return found if found.tzinfo is not None else found.replace(tzinfo=UTC)
