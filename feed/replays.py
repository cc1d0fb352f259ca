"""Replays shared by streams that resume from the same place at the same moment.

After a restart or a network cut every screen reconnects within seconds, most of them
with the same ``Last-Event-ID``. Each used to run its own query and render every event
it had missed: 10,000 kiosks that missed 100 posts made 10,000 queries and a million
renders, and took over a minute to be live again (docs/benchmarks.md, connect storm).
Now the first stream to ask for a replay runs the query; the others that ask for the
same one await that result, and each format is encoded once per result.

When is a result "the same one"? A stream joins the hub before it asks for its replay
(stream.py, 1), so it needs the replay to hold every event the relay published before
it joined. The key therefore includes the id the relay had delivered when the stream
joined: a stream that joined after the relay published anything newer gets a result of
its own. Within one key, any change made after the query has its own, newer event,
which every such stream receives live, so a shared result is never wrong by the time
it is applied. Results are kept for ``TTL`` seconds at most, and at most ``MAX_KEYS``
of them at once.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from dataclasses import dataclass, field

from feed.events import Format
from feed.models import FeedEvent
from feed.render import Renderer
from feed.store import Store

TTL = 2.0
MAX_KEYS = 16
MAX_KNOWN = 1024

# (after, channels, readable private channels, limit, relay's delivered id)
Key = tuple[int, tuple[str, ...] | None, tuple[str, ...] | None, int, int]


@dataclass
class _Result:
    made_at: float
    events: asyncio.Task[list[FeedEvent]]
    encoded: dict[Format, bytes] = field(default_factory=dict)


class Replays:
    def __init__(self, store: Store, renderer: Renderer) -> None:
        self._store = store
        self._renderer = renderer
        self._results: OrderedDict[Key, _Result] = OrderedDict()
        # Event ids found in the log (or being looked up), oldest first.
        self._known: OrderedDict[int, asyncio.Future[bool]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._results)

    async def has_event(self, event_id: int) -> bool:
        """Whether the log holds ``event_id``, asked of the store once per id: an event,
        once there, stays (store.py), and a storm of streams resuming from one id
        needs one lookup, not one each."""
        known = self._known.get(event_id)
        if known is None:
            known = self._known[event_id] = asyncio.ensure_future(self._store.has_event(event_id))
            if len(self._known) > MAX_KNOWN:
                self._known.popitem(last=False)
        try:
            found = await asyncio.shield(known)
        except BaseException:
            if known.done() and self._known.get(event_id) is known:
                del self._known[event_id]
            raise
        if not found and self._known.get(event_id) is known:
            del self._known[event_id]  # it may yet be written
        return found

    async def events(self, key: Key) -> tuple[list[FeedEvent], _Result]:
        """The events after ``key``'s id, shared with whoever asked for the same key."""
        now = time.monotonic()
        self._expire(now)
        found = self._results.get(key)
        if found is None:
            after, channels, private, limit, _delivered = key
            query = self._store.events_after(
                after,
                None if channels is None else list(channels),
                limit=limit,
                private=None if private is None else list(private),
            )
            found = _Result(now, asyncio.ensure_future(query))
            self._results[key] = found
            # Let go of it even if no other replay comes along to expire it.
            asyncio.get_running_loop().call_later(TTL, self._expire_now)
        try:
            # Shielded: one stream that gives up must not cancel the others' query.
            return await asyncio.shield(found.events), found
        except BaseException:
            # A failed query is not kept: the next stream to ask tries again.
            if found.events.done() and self._results.get(key) is found:
                del self._results[key]
            raise

    def forget(self) -> None:
        """Drop every result and every id found: the log went back (relay.py)."""
        self._results.clear()
        self._known.clear()

    def encode(self, result: _Result, events: list[FeedEvent], fmt: Format) -> bytes:
        """``events`` in ``fmt``, encoded once per result."""
        data = result.encoded.get(fmt)
        if data is None:
            encode = self._renderer.encode
            data = result.encoded[fmt] = b"".join(encode(event, fmt) for event in events)
        return data

    def _expire_now(self) -> None:
        self._expire(time.monotonic())

    def _expire(self, now: float) -> None:
        while self._results:
            key, oldest = next(iter(self._results.items()))
            if now - oldest.made_at < TTL and len(self._results) < MAX_KEYS:
                return
            del self._results[key]
