"""When the clients of ended streams come back: each stream's reconnect delay, and
the maximum age after which a stream ends.

Rationale:

1. Each stream's ``retry:`` hint is ``FEED_RETRY_MS`` plus up to half as much again,
   at random. A restart or a network blip drops every stream at the same moment; with
   one delay for all, every screen would come back in the same instant and overflow
   the listen queue (docs/benchmarks.md, connect storm). Spread over the extra half,
   they arrive over a second instead.
2. On the maximum age. With ``FEED_MAX_STREAM_SECONDS`` set, each stream ends after
   that long plus up to a quarter more, at random (sse.py's ``lifetime``): streams opened in
   the same second (every screen, after a restart) would otherwise end in the same
   second again, each time, and a quarter spreads a reconnect storm over a quarter
   of the age. It ends as a shutdown ends it, after what is pending and with the
   final chunk, so an EventSource (the pages, the kiosk, htmx's extension under
   them), ``feed tail`` and ``curl -N`` all see a finished response; the last frame
   is ``retry:`` 250 ms and a comment saying why (sse.py). The ending is already
   spread, so unlike a restart (1) there is no storm to spread the comeback over:
   the client comes back at once, with ``Last-Event-ID``, and resumes as after a
   restart; its next stream opens with the usual spread ``retry:`` again. The new
   connection is one more the kernel hands to any worker (server.py, on the
   listening sockets): that is how a restarted or added worker gets its share back.
   One timer per stream, only while the setting is on. A stream that ends before its
   replay is done (a client reading slowly) sends none of the live events waiting for
   it: they are newer than the rest of the replay, and the client's last id would skip
   it. Its resume replays from where it was, live events included.
"""

from __future__ import annotations

import asyncio
import random

from feed.sse import lifetime
from feed.subscribers import Subscriber


class Expiry:
    """Ends one stream when its time is up (2), and remembers that it did."""

    __slots__ = ("_handle", "_sub", "due")

    def __init__(self, sub: Subscriber, seconds: float) -> None:
        self._sub = sub
        self.due = False
        self._handle = asyncio.get_running_loop().call_later(lifetime(seconds), self._end)

    def _end(self) -> None:
        self.due = True
        self._sub.close()

    def cancel(self) -> None:
        self._handle.cancel()


def spread(retry_ms: int) -> int:
    """The reconnect delay for one stream: ``retry_ms`` to 1.5 times it (1)."""
    return retry_ms + random.randrange(retry_ms // 2 + 1)
