"""Hints by PostgreSQL LISTEN/NOTIFY.

The NOTIFY itself is sent by the store, inside the transaction that writes the
event (``Store(notify=True)``): PostgreSQL delivers it only if that transaction
commits, so a hint never announces an event that does not exist. This module
only listens.
"""

from __future__ import annotations

from collections.abc import Callable

import psycopg
from sqlalchemy.engine import make_url

from feed.brokers import HINT_CHANNEL
from feed.brokers.listener import PING_INTERVAL, ListeningBroker, parse_hint


def libpq_url(url: str) -> str:
    """``url`` without a SQLAlchemy driver suffix (``postgresql+psycopg://``)."""
    parsed = make_url(url)
    return parsed.set(drivername="postgresql").render_as_string(hide_password=False)


class PostgresBroker(ListeningBroker):
    kind = "postgresql"

    def __init__(self, url: str) -> None:
        super().__init__(libpq_url(url))

    async def publish(self, event_id: int) -> None:
        # Other processes hear the NOTIFY sent at commit; this one need not wait for it.
        self._hint(event_id)

    async def _listen(self, connected: Callable[[], None]) -> None:
        conn = await psycopg.AsyncConnection.connect(
            self._url, autocommit=True, connect_timeout=5, application_name="feed-hints"
        )
        async with conn:
            await conn.execute(f"LISTEN {HINT_CHANNEL}")
            connected()
            while True:
                # A bounded wait, not an endless generator: breaking out of an endless
                # one and closing the connection can hang, and we want to ping anyway.
                async for note in conn.notifies(timeout=PING_INTERVAL):
                    self._hint(parse_hint(note.payload))
                await conn.execute("SELECT 1")
