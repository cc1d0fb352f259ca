"""The admin page's live panels (connections, broker, recent events, channels): what
each shows, rendered whole for the page, and as the changes one admin stream sends.

Rationale:

1. Every (re)connect starts with every panel in full, so a page that lost its
   stream needs no resume id: after the first messages it is whole again.
2. Each tick re-renders the connections and broker panels and sends one only when
   its HTML differs from what this connection sent last. Ages are shown in whole
   minutes, so an idle server sends nothing but heartbeats.
3. New log events are polled from the store, like the relay does, so events
   written by other processes show up too. Rows are prepended; the server knows
   which rows the page holds and removes the oldest with an out-of-band delete in
   the same message, so the list stays bounded without any page script.
4. A burst of more events than the list shows replaces the whole list instead of
   streaming rows that would be deleted straight away.
5. A channel event re-renders the channels table, so changes made through the
   API, the CLI or another tab appear here.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

from markupsafe import Markup

from feed.census import HubStats
from feed.inputs import MAX_TITLE_CHARS
from feed.runtime import Runtime
from feed.sse import Format, frame
from feed.values import FeedEvent

RECENT_ROWS = 30  # log events the page shows


def age_text(seconds: float) -> str:
    """A coarse age: it changes once a minute, so a live panel is not re-sent every tick."""
    minutes = int(seconds // 60)
    if minutes < 1:
        return "under a minute"
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"


def size_text(size: int) -> str:
    if size < 1024:
        return f"{size} B"
    if size < 1024 * 1024:
        return f"{size / 1024:.1f} KiB"
    return f"{size / (1024 * 1024):.1f} MiB"


def connections_context(stats: HubStats, now: float) -> dict[str, Any]:
    """The hub's counts as a channel x format table ("*" = every channel, first)."""
    formats = [f.value for f in Format]
    channels = sorted({c for c, _ in stats.by_channel_format}, key=lambda c: (c != "*", c))
    rows = [(c, [stats.by_channel_format.get((c, f), 0) for f in formats]) for c in channels]
    oldest = None if stats.oldest_opened_at is None else now - stats.oldest_opened_at
    return {
        "stats": stats,
        "formats": formats,
        "rows": rows,
        "oldest": None if oldest is None else age_text(max(0.0, oldest)),
        "slowest": size_text(stats.largest_backlog_bytes),
    }


def connections_html(rt: Runtime) -> str:
    context = connections_context(rt.hub.stats(), time.time())
    limit = size_text(rt.settings.subscriber_backlog)
    return rt.renderer.template("partials/admin_connections.html", limit=limit, **context)


def broker_html(rt: Runtime) -> str:
    return rt.renderer.template(
        "partials/admin_broker.html",
        broker=rt.broker.status(),
        backend=rt.store.backend,
        delivered=rt.relay.delivered,
        release=rt.settings.release,
    )


def event_html(rt: Runtime, event: FeedEvent, drop: list[int] | None = None) -> str:
    """One row of the recent list; ``drop`` names rows to delete from the page with it."""
    text = rt.renderer.event_text(event)
    return rt.renderer.template(
        "partials/admin_event.html", event=event, text=text, drop=drop or []
    )


def recent_html(rt: Runtime, events: list[FeedEvent]) -> str:
    rows = [Markup(event_html(rt, e)) for e in reversed(events)]
    return rt.renderer.template("partials/admin_recent.html", rows=rows, max_rows=RECENT_ROWS)


async def channels_table_html(rt: Runtime, row_error: dict[str, str] | None = None) -> str:
    channels = await rt.store.list_channels()
    return rt.renderer.template(
        "partials/admin_channel_table.html",
        channels=channels,
        row_error=row_error,
        max_title=MAX_TITLE_CHARS,
    )


async def newest_events(rt: Runtime) -> tuple[list[FeedEvent], int]:
    """The newest events (oldest first), and the id the log is read up to."""
    return await rt.store.newest_events(RECENT_ROWS)


class AdminFeed:
    """What one admin stream has sent, so it sends only what changed."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.sent: dict[str, str] = {}
        self.read_up_to = 0
        self.shown: deque[int] = deque()  # row ids on the page, newest first

    def _panel(self, name: str, html: str) -> list[bytes]:
        if self.sent.get(name) == html:
            return []
        self.sent[name] = html
        return [frame(html, event=name)]

    async def snapshot(self) -> list[bytes]:
        """Every panel in full, whatever was sent before."""
        self.sent.clear()
        return [
            *await self._recent_all(),
            *await self._channels(),
            *self._panel("connections", connections_html(self.rt)),
            *self._panel("broker", broker_html(self.rt)),
        ]

    async def tick(self) -> list[bytes]:
        new = await self.rt.store.events_after(self.read_up_to, limit=RECENT_ROWS + 1)
        if len(new) > RECENT_ROWS:
            out = [*await self._recent_all(), *await self._channels()]
        else:
            out = [self._row(e) for e in new]
            if any(not e.kind.is_post for e in new):
                out += await self._channels()
        out += self._panel("connections", connections_html(self.rt))
        out += self._panel("broker", broker_html(self.rt))
        return out

    async def _recent_all(self) -> list[bytes]:
        events, self.read_up_to = await newest_events(self.rt)
        self.shown = deque(e.id for e in reversed(events))
        return [frame(recent_html(self.rt, events), event="recent-all")]

    async def _channels(self) -> list[bytes]:
        return self._panel("channels", await channels_table_html(self.rt))

    def _row(self, event: FeedEvent) -> bytes:
        self.read_up_to = max(self.read_up_to, event.id)
        self.shown.appendleft(event.id)
        drop = [self.shown.pop() for _ in range(len(self.shown) - RECENT_ROWS)]
        return frame(event_html(self.rt, event, drop), event="recent")
