"""Hints by PostgreSQL LISTEN/NOTIFY.

The NOTIFY itself is sent by the store, inside the transaction that writes the
event or changes access (``Store(notify=True)``): PostgreSQL delivers it only if that
transaction commits, so a hint never announces a change that does not exist. This
module only listens.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import psycopg
from sqlalchemy.engine import make_url

from feed.brokers import HINT_CHANNEL, PRESENCE_CHANNEL
from feed.brokers.listener import PING_INTERVAL, ListeningBroker

if TYPE_CHECKING:
    from feed.values import Commit


def libpq_url(url: str) -> str:
    """``url`` without a SQLAlchemy driver suffix (``postgresql+psycopg://``)."""
    parsed = make_url(url)
    return parsed.set(drivername="postgresql").render_as_string(hide_password=False)


class PostgresBroker(ListeningBroker):
    kind = "postgresql"

    def __init__(self, url: str) -> None:
        super().__init__(libpq_url(url))
        # The listening connection is busy waiting; reports go out on their own.
        self._speaker: psycopg.AsyncConnection[object] | None = None

    def hint_others(self, commit: Commit) -> None:
        pass  # the store's NOTIFY went out with the commit itself

    async def share_presence(self, payload: str) -> None:
        try:
            if self._speaker is None or self._speaker.closed:
                self._speaker = await psycopg.AsyncConnection.connect(
                    self._url, autocommit=True, connect_timeout=5, application_name="feed-presence"
                )
            await self._speaker.execute("SELECT pg_notify(%s, %s)", (PRESENCE_CHANNEL, payload))
        except psycopg.Error:
            await self._drop_speaker()
            raise

    async def _drop_speaker(self) -> None:
        speaker, self._speaker = self._speaker, None
        if speaker is not None:
            await speaker.close()

    async def close(self) -> None:
        await super().close()
        await self._drop_speaker()

    async def _listen(self, connected: Callable[[], None]) -> None:
        conn = await psycopg.AsyncConnection.connect(
            self._url, autocommit=True, connect_timeout=5, application_name="feed-hints"
        )
        async with conn:
            await conn.execute(f"LISTEN {HINT_CHANNEL}")
            await conn.execute(f"LISTEN {PRESENCE_CHANNEL}")
            connected()
            while True:
                # A bounded wait, not an endless generator: breaking out of an endless
                # one and closing the connection can hang, and we want to ping anyway.
                async for note in conn.notifies(timeout=PING_INTERVAL):
                    if note.channel == PRESENCE_CHANNEL:
                        self._presence(note.payload)
                    else:
                        self._heard(note.payload)
                await conn.execute("SELECT 1")
