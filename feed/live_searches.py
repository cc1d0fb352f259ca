"""The different live searches followed, per client and in all, within their limits.

Rationale:

1. What a live search costs. Each event is matched once against each different live
   search, whatever the number of its streams (events.py and post_words.py, on
   live searches), on the event loop that writes every stream. So it is the number of
   different searches, not of streams, that one client must not be able to raise
   without bound: a thousand streams of one search cost one match per event, and a
   thousand different searches that never match cost a thousand, for nothing the
   client even receives.
2. Counted by whom. As searches in flight are (security.py, on searches in flight):
   by identity (``Identity.limit_key``: a person by any of their tokens or sessions,
   a kiosk link), or signed out by the client's address (an IPv6 client's /64). A
   search the client already follows is always allowed another stream: screens of
   one kiosk link, or a person's tabs, showing one search.
3. In all. Clients from many addresses could still add searches without bound, so
   the process follows at most ``FEED_MAX_LIVE_SEARCHES`` different ones. A search
   that someone already follows costs nothing more and is never refused for this.
   A refusal is "not now" (503): it is no fault of this client's.
4. Refused before the stream begins, with ``Retry-After``: an EventSource that gets
   an error status stops, and cannot read why. The page asks once more to read the
   answer, shows its ``error`` sentence, these classes' words, and opens its stream
   again after the ``Retry-After`` (feed-source.js, on why a stream was refused), so a
   page whose search was refused says why, and comes back once another is closed.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from feed.errors import RETRY_AFTER_SECONDS, ClientError

# Seconds a client refused for its own number of searches is told to wait: closing one
# of its other searches is what it takes, which a person does at once or not at all.
CLIENT_RETRY_AFTER = 10


class TooManyLiveSearches(ClientError):
    """A live search refused: its client already follows as many as it may (2)."""

    def __init__(self, limit: int, who: str) -> None:
        searches = "live search" if limit == 1 else "different live searches"
        super().__init__(
            429,
            f"Too many live searches from {who}: at most {limit} {searches} at once. "
            "Close one, or try again later.",
            {"limit": limit, "retry_after": CLIENT_RETRY_AFTER},
            headers={"Retry-After": str(CLIENT_RETRY_AFTER)},
        )


class LiveSearchesFull(ClientError):
    """A live search refused: the process follows as many different ones as it may (3)."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            503,
            f"This server follows as many different live searches as it may ({limit}); "
            "try again shortly.",
            {"limit": limit, "retry_after": RETRY_AFTER_SECONDS},
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )


class LiveSearches:
    """Streams of each live search, by client and in all (1)."""

    def __init__(self, per_client: int, most: int) -> None:
        self.per_client = per_client
        self.most = most
        # client -> search text -> its streams of that search
        self._by_client: dict[str, dict[str, int]] = {}
        # search text -> every client's streams of it
        self._all: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._all)

    def of(self, client: str) -> int:
        """How many different searches ``client`` follows."""
        return len(self._by_client.get(client, ()))

    @contextmanager
    def following(self, client: str, text: str, *, signed_in: bool) -> Iterator[None]:
        """One stream of the search ``text`` by ``client``, for as long as this lasts;
        ``TooManyLiveSearches`` or ``LiveSearchesFull`` if it is one search too many."""
        self.open(client, text, signed_in=signed_in)
        try:
            yield
        finally:
            self.close(client, text)

    def open(self, client: str, text: str, *, signed_in: bool) -> None:
        mine = self._by_client.get(client)
        if mine is None or text not in mine:
            if mine is not None and len(mine) >= self.per_client:
                raise TooManyLiveSearches(self.per_client, "you" if signed_in else "this address")
            if text not in self._all and len(self._all) >= self.most:
                raise LiveSearchesFull(self.most)
            if mine is None:
                mine = self._by_client[client] = {}
        mine[text] = mine.get(text, 0) + 1
        self._all[text] = self._all.get(text, 0) + 1

    def close(self, client: str, text: str) -> None:
        mine = self._by_client.get(client, {})
        _drop(mine, text)
        if not mine:
            self._by_client.pop(client, None)
        _drop(self._all, text)


def _drop(counts: dict[str, int], key: str) -> None:
    left = counts.get(key, 0) - 1
    if left > 0:
        counts[key] = left
    else:
        counts.pop(key, None)
