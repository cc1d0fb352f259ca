"""Reads take turns per client, so that one client's burst never holds up the others.

Rationale:

1. A read (a page, a partial, an API ``GET``) may read and shape up to a page of 200
   posts, and the server has one event loop and a few database connections for
   everyone. Twenty connections from one address reading 200 posts each, over and
   over, took a small read from another address from 8 ms to 159 ms (the median), and
   to 510 ms at worst. So one client's reads run at most ``FEED_READS_PER_CLIENT`` at
   once; the rest wait their turn, in order, while other clients' reads go ahead
   (``sharing.Turns``, as replays take theirs). With 2 (the default), the same attack
   left that read at 19 ms (1: 11 ms; 4: 34 ms), and the attacker got as many reads
   done as before: one event loop makes them no faster side by side.
2. Waiting, not refusing. An office's screens behind one address that reload at once
   after a restart are served in turn, never told 429: the server would do that much
   work either way, and a client's own reads only queue behind each other. A client is
   whoever the request is from, as the search limit counts (``Identity.limit_key``: a
   person by any token or session, a kiosk link, or signed out, an address), so people
   behind one office address do not wait for each other; an IPv6 address counts as
   its /64, as connections do (connections.py). Who it is is asked here for the key
   only, and asked again by its endpoint once its turn comes, so that a credential
   revoked, or a session signed out of or expired, while the read waited is refused
   then. A request from no known address (a socket path) takes no turn: nothing tells
   its clients apart. Streams have their own limits (security.py), searches theirs (a
   count in flight, 429 beyond), and posts a rate.
3. A client that leaves while its read waits is not served: the server marks its
   request as disconnected (uvicorn's request cycle, ``disconnected``), so a burst of
   requests closed at once costs nothing but their turns. Under any other server the
   read is made and its answer goes nowhere, as before. The request's log line says
   499, the client closed the request.
4. Not counted: streams (``/events``), the static assets (files, no database) and the
   health checks, so that a load balancer's probes never wait behind its own traffic
   (all of it may come from its address).
5. A turn ends when the answer begins. What a read costs comes before its status line
   (the reads and the shaping), and a long-lived answer (the admin page's stream) would
   otherwise hold its client's turn for as long as it is open.
6. A search gives its turn back as it begins: searches are counted by a limit of
   their own (security.py, on searches in flight), whose 429 says "too many searches"
   and which the pages know how to wait out. Taking a turn as well, a search beyond
   that limit would wait for a turn instead, and the limit would never be reached.
7. At most ``waiting_most`` of one client's reads wait at once: beyond, a read is
   a 503 with Retry-After. A client that left leaves its read waiting until its turn
   (uvicorn tells the app nothing until it asks), so a client that keeps its turns busy
   and opens and closes connections meanwhile must not pile up waiters for ever. As many
   as an address may hold connections (FEED_MAX_STREAMS_PER_CLIENT twice) is more
   than any honest client's page loads.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from feed.connections import holder_of
from feed.errors import unavailable
from feed.runtime import runtime_of
from feed.security import READ_TURN, Security, SecurityHeaders
from feed.sharing import Turns

READS = frozenset({"GET", "HEAD"})
# Where the app keeps whether the client has left, found on the server's own ``send``
# before any wrapper hides it (3).
GONE = "feed.gone"
CLIENT_LEFT = 499
# Paths that are no reads of the feed's data (4).
UNCOUNTED = ("/events", "/static/", "/healthz", "/readyz", "/metrics")
BUSY = "This client has too many requests waiting; try again shortly."


def counted(scope: Scope) -> bool:
    """Whether this request is a read that takes a turn (4)."""
    return (
        scope["type"] == "http"
        and scope["method"] in READS
        and not scope["path"].startswith(UNCOUNTED)
    )


def gone_from(send: Send) -> Callable[[], bool]:
    """Whether the client behind the server's own ``send`` has left (3)."""
    cycle = getattr(send, "__self__", None)
    if cycle is None or not hasattr(cycle, "disconnected"):
        return lambda: False
    return lambda: bool(cycle.disconnected)


class Fair:
    """``app``'s reads, at most ``most`` at once per client (1), at most
    ``waiting_most`` of them waiting (7)."""

    def __init__(self, app: ASGIApp, security: Security, most: int, waiting_most: int) -> None:
        self._app = app
        self._busy = SecurityHeaders(unavailable(BUSY), security)
        self.turns = Turns(most)
        self.waiting_most = waiting_most
        self.abandoned = 0  # reads whose client left before their turn (3)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        key = await _client(scope) if counted(scope) else None
        if key is None:
            await self._app(scope, receive, send)
            return
        if self.turns.users(key) >= self.most_in_line:
            await self._busy(scope, receive, send)  # (7)
            return
        give_back = await self.turns.take(key)
        scope[READ_TURN] = give_back  # (6)
        try:
            gone = scope.get(GONE)
            if gone is not None and gone():
                self.abandoned += 1
                # The server drops what is sent to a client that left (3).
                await send({"type": "http.response.start", "status": CLIENT_LEFT})
                await send({"type": "http.response.body", "body": b""})
                return

            async def send_begun(message: Message) -> None:
                if message["type"] == "http.response.start":
                    give_back()  # (5)
                await send(message)

            await self._app(scope, receive, send_begun)
        finally:
            give_back()

    @property
    def most_in_line(self) -> int:
        """Holders and waiters of one client's turns, at most."""
        return self.turns.most + self.waiting_most


async def _client(scope: Scope) -> str | None:
    """Whose turns a request takes (2), or None for none."""
    client = scope.get("client")
    if not client:
        return None
    try:
        who = await runtime_of(scope["state"]).access.recognise(scope)
    except Exception:  # refused or unknown: its endpoint answers that itself
        who = None
    key = None if who is None else who.limit_key
    return key or holder_of(str(client[0]))
