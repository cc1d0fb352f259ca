"""Browser hygiene and per-client limits: security headers, CORS, post rates and
open streams per client.

Rationale:

1. The Content-Security-Policy allows scripts and styles from feed's own origin
   only. Pages have no inline script or style (htmx's injected indicator styles
   are turned off in ``base.html``), so an injected ``<script>`` or ``onerror``
   would not run even if it got past the sanitiser (render.py). ``img-src`` also
   allows ``data:`` for the favicon, which is inline in ``base.html``.
2. ``frame-ancestors`` defaults to ``'none'``: kiosks are whole pages, and a page
   that can be framed can be clickjacked. ``FEED_FRAME_ANCESTORS`` lists the
   origins that may frame feed (an intranet portal, say).
3. On streams. ``GET /events`` bypasses Starlette (app.FeedApp), so its middleware never
   sees it. The headers a stream needs (nosniff, caching, CORS) are computed here
   once, when the stream opens, and the stream puts them in its first message: no
   wrapper sits on the stream's writes.
4. Limits are keyed by the client address in the ASGI scope. Behind a reverse
   proxy that is the proxy's address unless uvicorn trusts the proxy's
   ``X-Forwarded-For``: it does so for proxies listed in
   ``FEED_FORWARDED_ALLOW_IPS`` (default ``127.0.0.1``). The post rate is
   counted per identity (access.py), so people behind one NAT do not share it.
5. Limits live in each process's memory (the post rate in rate_limiter.py's token
   buckets). With N workers a client may reach N times the rate in the worst case,
   which is what a safety limit needs; an exact shared count would cost a database
   write per request.
6. Almost every answer depends on who asks: a private channel's posts, a page with
   the viewer's name and CSRF token, a stream filtered by its reader's grants. A
   cache that stored one (a proxy, a CDN, a shared browser profile) could hand it
   to someone else, so every answer carries ``Cache-Control: private, no-store``,
   set here, whatever an endpoint said, unless its path is in ``SHARED_PATHS``:
   static files, ``/openapi.json`` and the probes, which are the same for anyone.
   A new route is private until it is listed there. Streams get the same header
   (rationale 3): ``no-store`` keeps proxies from storing them, as ``no-cache``
   did, and also says what ``no-cache`` did not: this answer is one reader's.
7. On searches in flight. A search may read many posts, holding one of the store's
   connections while it does, and those connections serve everyone's posts and pages
   too. So searches are counted as streams are, in flight rather than per minute, by
   identity as posts are (rationale 4), and one more than
   ``FEED_MAX_SEARCHES_PER_CLIENT`` is refused with a 429 before it reaches the store:
   a page that searches as one types cancels its request before, so a person never
   has many in flight, and a script that wants many waits for its answers. Every road
   to the store's search asks here (``searching``; tests/test_search_limits.py finds
   them): the API (the CLI too), the search page, a kiosk watching a search (its page
   and its re-fetched list). A kiosk link is its own identity, so its screens share a
   count; a refused page waits the ``Retry-After`` and asks again by itself
   (feed-search.js; feed-refetch.js, spread for a wall of screens). A live search's
   stream is matched in memory, event by event, and counts as a stream.
8. Starlette's CORS middleware sits inside the layer that answers an unhandled error
   with a 500, so that answer would carry no CORS headers, and a script on an allowed
   origin could read neither its sentence nor its request id. ``SecurityHeaders``,
   outside both, adds what the middleware would have (``cors_headers``) to an answer
   to an allowed origin that has none.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from starlette.datastructures import Headers
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from feed.connections import holder_of
from feed.errors import ClientError, error_response
from feed.permissions import Permissions
from feed.rate_limiter import RateLimiter
from feed.settings import Settings

RawHeaders = list[tuple[bytes, bytes]]

# Rationale 6: answers on these paths (or under them, ending in "/") are the same for
# whoever asks; every other answer is private to its asker.
SHARED_PATHS = ("/static/", "/openapi.json", "/healthz", "/readyz", "/metrics")
PRIVATE = (b"cache-control", b"private, no-store")
CORS_ORIGIN = b"access-control-allow-origin"

SCOPE_KEY = "feed.security"
# Where a request finds what gives back its read's turn (fairness.py): a search, which
# its own limit counts instead, gives it back as it begins (7).
READ_TURN = "feed.read_turn"
# Where a stream finds the headers chosen for it (rationale 3).
STREAM_HEADERS = "feed.stream_headers"
STREAM_RETRY_AFTER = 10
# A search takes milliseconds to a few tenths of a second: a second is enough for one.
SEARCH_RETRY_AFTER = 1

CORS_METHODS = ("GET", "POST", "PATCH", "DELETE")
CORS_REQUEST_HEADERS = (
    "Authorization",
    "Content-Type",
    "Idempotency-Key",
    "Last-Event-ID",
    "Prefer",
)
# What scripts on another origin may read from an answer.
CORS_EXPOSED_HEADERS = (
    "Location",
    "Retry-After",
    "Idempotent-Replayed",
    "Preference-Applied",
    "X-Feed-Last-Event-Id",
    "X-Request-Id",
)


def content_security_policy(frame_ancestors: str) -> str:
    return "; ".join(
        [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' data:",
            "connect-src 'self'",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            f"frame-ancestors {frame_ancestors}",
        ]
    )


_SHARED_TREES = tuple(p for p in SHARED_PATHS if p.endswith("/"))
_SHARED_EXACT = frozenset(p for p in SHARED_PATHS if not p.endswith("/"))


def shared(path: str) -> bool:
    """Whether the answer at ``path`` is the same for whoever asks (rationale 6)."""
    return path in _SHARED_EXACT or path.startswith(_SHARED_TREES)


def client_address(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


class TooManySearches(ClientError):
    """A search refused: its identity already has as many in flight as it may (7).
    Pages show it in their own words and ask again after ``retry_after`` seconds."""

    def __init__(self, limit: int, who: str) -> None:
        searches = "search" if limit == 1 else "searches"
        super().__init__(
            429,
            f"Too many searches from {who}: at most {limit} {searches} at once. "
            f"Try again in {SEARCH_RETRY_AFTER} s.",
            {"limit": limit, "retry_after": SEARCH_RETRY_AFTER},
            headers={"Retry-After": str(SEARCH_RETRY_AFTER)},
        )
        self.retry_after = SEARCH_RETRY_AFTER


class StreamCounter:
    """Open streams (or searches in flight) per key, refusing more than ``limit`` at once."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: dict[str, int] = {}

    def open(self, key: str) -> bool:
        count = self._open.get(key, 0)
        if count >= self.limit:
            return False
        self._open[key] = count + 1
        return True

    def close(self, key: str) -> None:
        count = self._open.pop(key, 0) - 1
        if count > 0:
            self._open[key] = count

    def count(self, key: str) -> int:
        return self._open.get(key, 0)


class Security:
    """One app's headers, CORS policy and limits."""

    def __init__(self, settings: Settings) -> None:
        self.origins = tuple(o for o in settings.cors_origins.split(",") if o.strip())
        self.origins = tuple(o.strip().rstrip("/") for o in self.origins)
        policy = content_security_policy(settings.frame_ancestors)
        self.headers: RawHeaders = [
            (b"content-security-policy", policy.encode()),
            (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", b"same-origin"),
        ]
        self.posts = RateLimiter(settings.post_rate)
        self.streams = StreamCounter(settings.max_streams_per_client)
        self.searches = StreamCounter(settings.max_searches_per_client)

    def finish(self, headers: Iterable[tuple[bytes, bytes]], private: bool) -> RawHeaders:
        """An answer's headers with the security headers it does not set itself, and if
        ``private`` the cache rule, whatever the endpoint said (rationale 6)."""
        # Loops rather than comprehensions: this runs for every answer.
        finished: RawHeaders = []
        present = set()
        for name, value in headers:
            lowered = name.lower()
            if not (private and lowered == PRIVATE[0]):
                finished.append((name, value))
                present.add(lowered)
        if private:
            finished.append(PRIVATE)
        for name, value in self.headers:
            if name not in present:
                finished.append((name, value))
        return finished

    def middleware(self) -> list[Middleware]:
        """Starlette's middleware: CORS if configured. The security headers go around
        Starlette, not in this list (``SecurityHeaders``)."""
        stack: list[Middleware] = []
        if self.origins:
            stack.append(
                Middleware(
                    CORSMiddleware,
                    allow_origins=self.origins,
                    allow_methods=CORS_METHODS,
                    allow_headers=CORS_REQUEST_HEADERS,
                    expose_headers=CORS_EXPOSED_HEADERS,
                )
            )
        return stack

    def cors_headers(self, scope: Scope) -> RawHeaders:
        """What CORSMiddleware would add to a simple request's answer."""
        if not self.origins:
            return []
        origin = Headers(scope=scope).get("origin")
        if origin is None:
            return []
        if "*" in self.origins:
            allowed = b"*"
        elif origin in self.origins:
            allowed = origin.encode("latin-1")
        else:
            return []
        return [
            (CORS_ORIGIN, allowed),
            (b"access-control-expose-headers", ", ".join(CORS_EXPOSED_HEADERS).encode()),
            (b"vary", b"Origin"),
        ]

    def check_post_rate(self, request: HTTPConnection, key: str | None = None) -> None:
        """Count a post, or a change to one (an edit, a pin, a delete: each reaches
        every screen), by ``key`` (an identity), or by the client's address without
        one; ClientError 429 once it is over the rate."""
        wait = self.posts.take(key or f"address:{client_address(request.scope)}")
        if wait:
            seconds = max(1, math.ceil(wait))
            who = "you" if key else "this address"
            raise ClientError(
                429,
                f"Too many posts from {who}: at most {int(self.posts.capacity)} posts "
                f"and changes a minute. Try again in {seconds} s.",
                {"retry_after": seconds},
                headers={"Retry-After": str(seconds)},
            )

    @asynccontextmanager
    async def searching(self, request: HTTPConnection, key: str | None) -> AsyncIterator[None]:
        """One search by ``key`` (an identity), or by the client's address without one,
        in flight for as long as this lasts; TooManySearches beyond the limit (7)."""
        counted = limit_key(request.scope, key)
        if not self.searches.open(counted):
            raise TooManySearches(self.searches.limit, "you" if key else "this address")
        give_back = request.scope.get(READ_TURN)
        if give_back is not None:
            give_back()
        try:
            yield
        finally:
            self.searches.close(counted)

    async def serve_stream(
        self,
        stream: Callable[[Scope, Receive, Send], Awaitable[None]],
        scope: Scope,
        receive: Receive,
        send: Send,
        *,
        refused: Mapping[str, str] | None = None,
        through_starlette: bool = False,
    ) -> None:
        """Run ``stream`` within this client's stream limit, with its headers in the scope.
        ``refused``: headers of the caller's own for a refusal. ``through_starlette``: the
        stream is an endpoint's, whose answers Starlette's layers give their headers
        (CORS included) and ``SecurityHeaders`` the security headers."""
        headers = [(b"x-content-type-options", b"nosniff"), PRIVATE, *self.cors_headers(scope)]
        client = client_address(scope)
        if not self.streams.open(client):
            answer = error_response(
                429,
                f"Too many open streams from this address (at most {self.streams.limit}); "
                "close one or try again later.",
                {"limit": self.streams.limit},
                headers={"Retry-After": str(STREAM_RETRY_AFTER), **(refused or {})},
            )
            if not through_starlette:
                answer.raw_headers.extend(headers)
            await answer(scope, receive, send)
            return
        scope[STREAM_HEADERS] = headers
        try:
            await stream(scope, receive, send)
        finally:
            self.streams.close(client)


def limit_key(scope: Scope, key: str | None) -> str:
    """Whom a per-client limit counts: ``key`` (an identity's ``limit_key``), or without
    one the client's address (an IPv6 client's /64)."""
    return key or f"address:{holder_of(client_address(scope))}"


def of(connection: HTTPConnection) -> Security:
    """The app's Security, which ``SecurityHeaders`` puts in every request's scope."""
    found = connection.scope[SCOPE_KEY]
    assert isinstance(found, Security)
    return found


def admit_post(request: HTTPConnection, perms: Permissions, channel: str) -> None:
    """May this identity post in ``channel``, and is it within its rate? Checked before
    the body is read, so a refused request costs nothing; the API and the compose form
    both ask."""
    perms.check_post(channel)
    of(request).check_post_rate(request, perms.identity.limit_key)


def admit_reply(request: HTTPConnection, perms: Permissions, channel: str) -> None:
    """``admit_post`` for a reply to a post of ``channel``: replies count against the
    same rate as posts."""
    perms.check_reply(channel)
    of(request).check_post_rate(request, perms.identity.limit_key)


def searching(request: HTTPConnection, perms: Permissions) -> AbstractAsyncContextManager[None]:
    """A search by this identity in flight, within its limit (7): every road to the
    store's search asks, the API, the search page and the kiosk."""
    return of(request).searching(request, perms.identity.limit_key)


def stream_headers(scope: Scope) -> Iterable[tuple[bytes, bytes]]:
    """The headers ``Security.serve_stream`` chose for this stream (none in unit tests)."""
    found: RawHeaders = scope.get(STREAM_HEADERS, [])
    return found


class SecurityHeaders:
    """Adds the security headers, and the cache rule, to every answer Starlette gives.

    It wraps the whole Starlette app rather than sitting in its middleware list:
    Starlette answers an unhandled error in its outermost layer, outside every
    middleware it is given, and that 500 must carry the headers too."""

    def __init__(self, app: ASGIApp, security: Security) -> None:
        self.app = app
        self.security = security

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope[SCOPE_KEY] = self.security
        finish = self.security.finish
        private = not shared(scope["path"])

        cors = self.security.cors_headers(scope)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = finish(message.get("headers", []), private)
                if cors and not any(name.lower() == CORS_ORIGIN for name, _ in headers):
                    headers += cors  # an answer from outside the CORS middleware (8)
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
