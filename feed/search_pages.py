"""The search page and its results as one types (htmx), beside the other pages
(pages.py, kiosk.py, threads.py); the search language is search.py's, its parameters
search_params.py's."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from feed.errors import ClientError
from feed.limits import MAX_SEARCH_PAGE
from feed.permissions import Permissions
from feed.render import page_url
from feed.runtime import Runtime, runtime
from feed.search_params import SearchAsked, search_asked
from feed.search_values import Results
from feed.security import TooManySearches, searching
from feed.viewers import viewer


async def search_page(request: Request) -> Response:
    """``/search?q=``: a search box with results as one types (htmx: debounced, the
    request before cancelled), the URL shareable. A malformed search shows its
    sentence where the results would be, with a 400."""
    rt = runtime(request)
    seen = await viewer(request)
    status, context, headers = await _search_results(rt, request, seen.perms)
    response = rt.renderer.page(
        "search.html",
        status,
        headers,
        **seen.context(),
        channels=seen.perms.readable(),
        **context,
    )
    return seen.apply(response, request)


async def search_partial(request: Request) -> HTMLResponse:
    """The results alone, for the search box; the address bar follows the search."""
    rt = runtime(request)
    perms = await rt.access.check(request)
    status, context, headers = await _search_results(rt, request, perms)
    headers["HX-Replace-Url"] = page_url("/search", q=context["q"] or None)
    return rt.renderer.page("partials/search_results.html", status, headers, **context)


async def _search_results(
    rt: Runtime, request: Request, perms: Permissions
) -> tuple[int, dict[str, Any], dict[str, str]]:
    """The status, the template's context and the headers of a search's results; a
    refused search shows its sentence (a malformed one), or that the page asks again
    (one too many at once, security.py, on searches in flight: feed-search.js asks after
    ``busy`` s)."""
    q = request.query_params.get("q", "")
    context: dict[str, Any] = {"q": q, "hits": [], "error": None, "busy": None, "more_url": None}
    context["continued"] = "cursor" in request.query_params  # "More results"
    try:
        channels = perms.selection(request.query_params.getlist("channel"))
        asked = search_asked(request, channels)
        if asked.query is None:
            return 200, context, {}
        found = await _search(rt, request, asked, perms)
    except TooManySearches as busy:
        return busy.status, {**context, "busy": busy.retry_after}, dict(busy.headers or {})
    except ClientError as exc:
        return exc.status, {**context, "error": exc.message}, dict(exc.headers or {})
    more = found.next and page_url("/partials/search", q=q, cursor=found.next.text)
    return 200, {**context, "hits": found.hits, "more_url": more}, {}


async def _search(rt: Runtime, request: Request, asked: SearchAsked, perms: Permissions) -> Results:
    async with searching(request, perms):
        return await rt.store.search(
            asked.query,
            asked.filters,
            limit=asked.limit or min(rt.settings.page_size, MAX_SEARCH_PAGE),
            cursor=asked.cursor,
            private=perms.private_readable(),
        )


routes = [
    Route("/search", search_page, methods=["GET"]),
    Route("/partials/search", search_partial, methods=["GET"]),
]
