"""Replays, read in pages shared by streams that resume from the same place at the same
moment, and written in pieces.

Rationale:

1. After a restart or a network cut every screen reconnects within seconds, most of
   them with the same ``Last-Event-ID``. Each used to run its own query and render
   every event it had missed: 10,000 kiosks that missed 100 posts made 10,000 queries
   and a million renders, and took over a minute to be live again
   (docs/benchmarks.md, connect storm). Now the first stream to ask for a count or a
   page runs the query; the others that ask for the same one await that answer, and
   each page is encoded once per format.
2. When is an answer "the same one"? A stream joins the hub before it asks for its
   replay (stream.py, on joining before the replay), so it needs the replay to hold
   every event the relay published before it joined. The key therefore includes the
   id the relay had delivered when the stream joined: a stream that joined after the
   relay published anything newer gets answers of its own. Within one key, any change
   made after the query has its own, newer event, which every such stream receives
   live, so a shared page is never wrong by the time it is applied. Answers are kept
   for ``TTL`` seconds at most, and at most ``MAX_PAGES`` pages at once.
3. A replay can be up to ``FEED_REPLAY_LIMIT`` events of up to ``FEED_MAX_POST_CHARS``
   each, and a client that resumes may never read it. So a replay is read from the
   store ``PAGE`` events at a time and written ``PIECE`` bytes at a time, each piece
   only once the connection has taken the one before (the ASGI ``send`` waits for
   that). Between pieces a stream keeps only its ``Cursor``, never a page: a stalled
   stream holds one piece and its connection's write buffer, however large the
   replay, and a page lives only as long as the cache keeps it. A stream that comes
   back for the rest of a page after the cache let it go reads a page of its own from
   where it stopped.
4. Whether the replay is longer than ``FEED_REPLAY_LIMIT`` (then the client gets one
   ``resync`` instead) is counted in the database before anything is written, so the
   decision never waits for the pages.
"""

from __future__ import annotations

import asyncio
import bisect
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from feed.events import Format
from feed.models import FeedEvent
from feed.render import Renderer
from feed.store import Store

TTL = 2.0
PAGE = 100  # events read from the store at a time
# Bytes written to a stream at a time (one event at least): one piece is as much as an
# asyncio transport buffers before it asks its writer to wait.
PIECE = 64 * 1024
MAX_PAGES = 64  # 6,400 events at most: fewer than the 16 whole replays kept before
MAX_COUNTS = 256

# (after, channels, readable private channels, relay's delivered id)
Key = tuple[int, tuple[str, ...] | None, tuple[str, ...] | None, int]
K = TypeVar("K")
V = TypeVar("V")


class Cursor:
    """Where one stream is in its replay (rationale 3)."""

    __slots__ = ("after", "channels", "delivered", "format", "private", "sent", "start", "upto")

    def __init__(
        self,
        fmt: Format,
        after: int,
        channels: frozenset[str] | None,
        private: frozenset[str] | None,
        delivered: int,
        upto: int,
    ) -> None:
        self.format = fmt
        self.after = after  # the last event written
        self.start = after  # where the page it is reading begins
        self.channels = None if channels is None else tuple(sorted(channels))
        self.private = None if private is None else tuple(sorted(private))
        self.delivered = delivered
        self.upto = upto  # pages go on until one reaches this id; newer ones come live
        self.sent = 0

    def key(self, after: int) -> Key:
        return (after, self.channels, self.private, self.delivered)


@dataclass
class Page:
    """Up to ``PAGE`` events after a key's id, and their encodings."""

    events: list[FeedEvent]
    ids: list[int] = field(init=False)
    encoded: dict[Format, list[bytes]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.ids = [event.id for event in self.events]

    @property
    def full(self) -> bool:
        """There may be more events after this page."""
        return len(self.events) >= PAGE


class Shared(Generic[K, V]):
    """Answers made once per key and shared with whoever asks for the same key, for
    ``TTL`` seconds at most, ``most`` of them at once (rationale 1)."""

    def __init__(self, most: int) -> None:
        self.most = most
        self._answers: OrderedDict[K, tuple[float, asyncio.Task[V]]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._answers)

    def __contains__(self, key: K) -> bool:
        self._expire(time.monotonic(), room=0)
        return key in self._answers

    async def get(self, key: K, make: Callable[[], Awaitable[V]]) -> V:
        """The answer for ``key``: one already made or being made, or ``make()``'s."""
        now = time.monotonic()
        self._expire(now)
        found = self._answers.get(key)
        if found is None:
            found = (now, asyncio.ensure_future(make()))
            self._answers[key] = found
            # Let go of it even if no other replay comes along to expire it.
            asyncio.get_running_loop().call_later(TTL, self._expire_now)
        task = found[1]
        try:
            # Shielded: one stream that gives up must not cancel the others' query.
            return await asyncio.shield(task)
        except BaseException:
            # A failed query is not kept: the next stream to ask tries again.
            if task.done() and self._answers.get(key) is found:
                del self._answers[key]
            raise

    def _expire_now(self) -> None:
        self._expire(time.monotonic(), room=0)

    def _expire(self, now: float, room: int = 1) -> None:
        """Drop what is older than ``TTL``, then the oldest until ``room`` more fit."""
        while self._answers:
            key, (made_at, _) = next(iter(self._answers.items()))
            if now - made_at < TTL and len(self._answers) + room <= self.most:
                return
            del self._answers[key]


class Replays:
    def __init__(self, store: Store, renderer: Renderer) -> None:
        self._store = store
        self._renderer = renderer
        self._counts: Shared[tuple[Key, int], int] = Shared(MAX_COUNTS)
        self._pages: Shared[Key, Page] = Shared(MAX_PAGES)

    def __len__(self) -> int:
        return len(self._pages)

    async def count(self, cursor: Cursor, limit: int) -> int:
        """How many events the cursor's replay holds, counted up to ``limit`` (4)."""
        after, channels, private, _ = key = cursor.key(cursor.after)
        return await self._counts.get(
            (key, limit),
            lambda: self._store.count_events_after(
                after,
                None if channels is None else list(channels),
                limit=limit,
                private=None if private is None else list(private),
            ),
        )

    async def next_piece(self, cursor: Cursor) -> bytes | None:
        """The next piece of the cursor's replay, which it moves past; None at the end."""
        while True:
            if cursor.key(cursor.start) not in self._pages:
                cursor.start = cursor.after  # its page was let go: read on from here
            page = await self._page(cursor.key(cursor.start))
            found = self._piece(page, cursor)
            if found:
                return found
            last = max(page.ids[-1], cursor.after) if page.ids else cursor.after
            if not page.full or last >= cursor.upto:
                return None
            cursor.start = cursor.after = last

    async def _page(self, key: Key) -> Page:
        after, channels, private, _ = key

        async def read() -> Page:
            events = await self._store.events_after(
                after,
                None if channels is None else list(channels),
                limit=PAGE,
                private=None if private is None else list(private),
            )
            return Page(events)

        return await self._pages.get(key, read)

    def _piece(self, page: Page, cursor: Cursor) -> bytes:
        """The events of ``page`` after the cursor, up to ``PIECE`` bytes (one at least)."""
        encoded = page.encoded.get(cursor.format)
        if encoded is None:
            encode = self._renderer.encode
            encoded = page.encoded[cursor.format] = [encode(e, cursor.format) for e in page.events]
        first = end = bisect.bisect_right(page.ids, cursor.after)
        size = 0
        while end < len(encoded):
            size += len(encoded[end])
            if size > PIECE and end > first:
                break
            end += 1
        if end == first:
            return b""
        cursor.after = page.ids[end - 1]
        cursor.sent += end - first
        return b"".join(encoded[first:end])
