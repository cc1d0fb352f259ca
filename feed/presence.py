"""Presence: how many screens are watching, per channel, summed over every process.

Rationale:

1. Each process counts its own open streams from the hub and, every
   ``FEED_PRESENCE_INTERVAL`` seconds, shares them through the broker (the same
   PostgreSQL or Redis that carries event hints). A process keeps the last report
   of every other process and forgets one after three intervals without a new one,
   so a worker that died stops counting within that bound: presence is at most
   three intervals stale, never stuck.
2. "Watching a channel" means receiving its events: streams of that channel plus
   streams of every channel. A stream of several channels watches each of them.
3. Pages learn the numbers from a ``presence`` event on HTML streams, sent only
   when the sum changed, without an ``id:`` (it is not part of the log).
4. With the memory broker there is one process, and nothing to share.
5. ``/api/presence`` (api.py) needs no credential, so reading the counts must not
   walk every open stream: they come from the hub's running counts (events.py, on the cost of
   unauthenticated scrapes). Which channels are private comes from the channel map
   (access.py, on privacy learnt from the log); when that changes, pages are told
   again at once, without the names they may no longer see.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from feed import tasks
from feed.brokers import Broker
from feed.census import EVERY_CHANNEL
from feed.events import Hub
from feed.sse import Format, frame
from feed.values import FeedEvent

logger = logging.getLogger("feed.presence")

# A report older than this many intervals no longer counts.
STALE_INTERVALS = 3


@dataclass(frozen=True, slots=True)
class Counts:
    everything: int = 0  # streams of every channel
    channels: Mapping[str, int] = field(default_factory=dict)  # streams naming a channel
    streams: int = 0

    def watching(self, channel: str) -> int:
        return self.everything + self.channels.get(channel, 0)

    def as_dict(self) -> dict[str, object]:
        return {
            "streams": self.streams,
            "everything": self.everything,
            "channels": dict(sorted(self.channels.items())),
        }


def _add(a: Counts, b: Counts) -> Counts:
    channels = dict(a.channels)
    for name, count in b.channels.items():
        channels[name] = channels.get(name, 0) + count
    return Counts(a.everything + b.everything, channels, a.streams + b.streams)


class Presence:
    def __init__(
        self,
        hub: Hub,
        broker: Broker,
        interval: float,
        private: Callable[[], frozenset[str]],
    ) -> None:
        """``private`` names the private channels now, as the gate alone knows them
        (``Access.private_channels``): a page is told the counts of those only if it
        may read them."""
        self._hub = hub
        self._broker = broker
        self.interval = interval
        self.worker = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self._others: dict[str, tuple[float, Counts]] = {}
        self._shown: tuple[Counts, frozenset[str]] | None = None
        self._task: asyncio.Task[None] | None = None
        self._failing = False
        self._private = private

    @property
    def stale_after(self) -> float:
        return self.interval * STALE_INTERVALS

    def local(self) -> Counts:
        """This process's open streams, from the hub's running counts (5)."""
        everything, channels = 0, dict[str, int]()
        for (name, _fmt), count in self._hub.by_channel_format().items():
            if name == EVERY_CHANNEL:
                everything += count
            else:
                channels[name] = channels.get(name, 0) + count
        return Counts(everything, channels, len(self._hub))

    def total(self) -> tuple[Counts, int]:
        """Every fresh process's counts added up, and how many processes that is."""
        cutoff = time.monotonic() - self.stale_after
        for worker in [w for w, (seen, _) in self._others.items() if seen < cutoff]:
            del self._others[worker]
        summed = self.local()
        for _seen, counts in self._others.values():
            summed = _add(summed, counts)
        return summed, 1 + len(self._others)

    def on_report(self, payload: str) -> None:
        """A report from another process, as the broker delivered it."""
        try:
            report = json.loads(payload)
            worker = str(report["worker"])
            counts = Counts(
                int(report["everything"]),
                {str(k): int(v) for k, v in report["channels"].items()},
                int(report["streams"]),
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            logger.warning("ignoring a presence report feed did not write: %.80r", payload)
            return
        if worker != self.worker:
            self._others[worker] = (time.monotonic(), counts)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="feed-presence")

    async def close(self) -> None:
        await tasks.stop(self._task)
        self._task = None

    async def _run(self) -> None:
        while True:
            local = self.local()
            report = {"worker": self.worker, **local.as_dict()}
            try:
                await self._broker.share_presence(json.dumps(report, separators=(",", ":")))
            except Exception as exc:
                # Once per outage: the hint listener already reports the broker's state.
                if not self._failing:
                    logger.warning("cannot share presence through the broker: %s", exc)
                self._failing = True
            else:
                self._failing = False
            self._announce()
            await asyncio.sleep(self.interval)

    def _announce(self) -> None:
        summed, _workers = self.total()
        private = self._private()
        if (summed, private) == self._shown:
            return
        self._shown = (summed, private)
        self._hub.broadcast_to_readers(
            Format.HTML, lambda readable: self._frame(summed, private, readable)
        )

    def delivered(self, events: Sequence[FeedEvent]) -> None:
        """``Relay.on_delivered``, after the channel map has learnt the batch: if a
        channel changed, tell pages at once what they may see now (5)."""
        if any(event.channel_view is not None for event in events):
            self._announce()

    def _frame(
        self, summed: Counts, private: frozenset[str], readable: frozenset[str] | None
    ) -> bytes:
        """The presence event for a page that may read the private channels ``readable``
        (None: all of them)."""
        hidden = frozenset() if readable is None else private - readable
        channels = {k: v for k, v in summed.channels.items() if k not in hidden}
        shown = Counts(summed.everything, channels, summed.streams)
        return frame(json.dumps(shown.as_dict(), separators=(",", ":")), event="presence")
