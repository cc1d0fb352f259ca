"""Hints by Redis pub/sub (or any server speaking its protocol, such as Valkey).

A hint is written after the writing transaction has committed, without waiting for
Redis's reply, so no request waits for Redis. If Redis is unreachable at that moment the
change is still committed and acknowledged; other processes find its events by
polling, or on the catch-up after their own reconnect. Hints waiting for the connection
are merged: all a process needs to hear is the newest event id, and whether access
changed, which goes first, so that the streams there are rechecked before later
events reach them.

Rationale:

1. The hint is written to the socket in the commit callback itself, before this
   process's relay fans the same commit out to its own streams (the store calls its
   listeners in order, and the broker's comes first): otherwise the other processes
   start their fan-out one whole fan-out later, and the processes take turns instead
   of working side by side. A pooled ``publish`` takes several loop turns before it
   writes, so hints go out on a connection of their own, kept open, by a plain
   non-blocking write of the packed command to its stream (the connection's
   ``_writer``: redis-py has no public call that writes without awaiting). The
   replies are read after, by a task, with a timeout. When the connection is not
   open yet, or its write buffer is past ``WRITE_LIMIT``, the hints wait, merged, for
   a sender task that connects or drains first. On any error the connection is
   dropped and what was waiting is lost: a lost hint is only a delay (other
   processes poll), and the next hint reconnects.
2. Closed by Redis. A server with an idle ``timeout`` (a common setting) closes the
   hints' connection between bursts. Our end is then only half-closed: the transport
   still takes writes, and a hint written to it went nowhere, the first of every
   burst. So a connection whose reading side has seen the end counts as cut too, and
   the hints wait for a new one instead.
3. One Redis, several deployments. Pub/sub ignores the database number of the URL:
   every client of a server hears every channel. So outside database 0 the channels'
   names carry the number (``feed_events:5``), and deployments sharing a server, each
   on a database of its own, hear neither each other's hints (which would make them
   read their logs, and recheck every stream at each other's access changes) nor
   each other's presence. Database 0 keeps the plain names.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import redis.asyncio as redis
from redis.asyncio.connection import Connection, parse_url
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from feed.brokers import (
    ACCESS_HINT,
    HINT_CHANNEL,
    PRESENCE_CHANNEL,
    AccessHandler,
    HintHandler,
)
from feed.brokers.listener import PING_INTERVAL, ListeningBroker

if TYPE_CHECKING:
    from feed.values import Commit

logger = logging.getLogger("feed.broker")

# How long closing waits for hints still being sent.
FLUSH_TIMEOUT = 5.0
# How long a reply, a connect or a drain may take before the connection is dropped.
REPLY_TIMEOUT = 5.0
# Bytes the hints' connection may hold unsent before hints wait for it to drain.
WRITE_LIMIT = 64 * 1024


class RedisBroker(ListeningBroker):
    kind = "redis"

    def __init__(self, url: str) -> None:
        super().__init__(url)
        db = int(parse_url(url).get("db") or 0)
        self._hint_channel = _of_database(HINT_CHANNEL, db)
        self._presence_channel = _of_database(PRESENCE_CHANNEL, db)
        # Sending retries once, on a fresh connection, if its pooled one was cut.
        self._sender = self._client(timeout=REPLY_TIMEOUT, retries=1)
        self._hints: Connection = self._sender.connection_pool.make_connection()  # type: ignore[no-untyped-call]
        self._newest: int | None = None  # the newest event id not yet sent
        self._access_changed = False  # not yet sent
        self._sending: asyncio.Task[None] | None = None
        self._unanswered = 0  # hints written whose replies are not read yet
        self._answers: asyncio.Task[None] | None = None

    def _client(self, timeout: float | None, retries: int = 0) -> redis.Redis:
        # No silent retries for the listener: a lost connection must surface, so it
        # can catch up after reconnecting (see listener.py).
        return redis.Redis.from_url(
            self._url,
            socket_connect_timeout=5,
            socket_timeout=timeout,
            retry=Retry(NoBackoff(), retries),
        )

    async def start(self, on_hint: HintHandler, on_access: AccessHandler) -> None:
        # Open the hints' connection now, so the first commit's hint is not late.
        self._send_later()
        await super().start(on_hint, on_access)

    def hint_others(self, commit: Commit) -> None:
        if commit.events:
            self._newest = max(self._newest or 0, commit.events[-1].id)
        self._access_changed = self._access_changed or bool(commit.access)
        if not self._write():
            self._send_later()

    def _waiting(self) -> list[str]:
        hints = [ACCESS_HINT] if self._access_changed else []
        if self._newest is not None:
            hints.append(str(self._newest))
        return hints

    def _write(self) -> bool:
        """Write the waiting hints now, without waiting (rationale 1); False if the
        connection cannot take them yet."""
        if self._sending is not None and not self._sending.done():
            return False  # connecting or draining: it writes them, in order
        writer = self._hints._writer if self._hints.is_connected else None
        if writer is None or self._cut():
            return False
        if writer.transport.get_write_buffer_size() > WRITE_LIMIT:
            return False
        hints = self._waiting()
        self._newest, self._access_changed = None, False
        for hint in hints:
            writer.writelines(self._hints.pack_command("PUBLISH", self._hint_channel, hint))
        self._unanswered += len(hints)
        if self._unanswered and (self._answers is None or self._answers.done()):
            self._answers = asyncio.get_running_loop().create_task(
                self._read_answers(), name="redis-hint-replies"
            )
        return True

    def _send_later(self) -> None:
        if self._sending is None or self._sending.done():
            self._sending = asyncio.get_running_loop().create_task(self._send(), name="redis-hints")

    def _cut(self) -> bool:
        """Whether the hints' connection was closed, by us or by Redis (2)."""
        conn = self._hints
        if conn._writer is not None and conn._writer.is_closing():
            return True
        return conn._reader is not None and conn._reader.at_eof()

    async def _send(self) -> None:
        if self._cut():
            self._drop()  # cut while idle: open it again, nothing is lost yet
        conn = self._hints
        try:
            if not conn.is_connected:
                await conn.connect()  # type: ignore[no-untyped-call]
            if conn._writer is not None:
                await asyncio.wait_for(conn._writer.drain(), REPLY_TIMEOUT)
        except (RedisError, OSError, TimeoutError) as exc:
            self._lost(conn, exc)
            return
        finally:
            self._sending = None
        if not self._write():
            self._lost(conn, ConnectionError("the connection closed"))

    async def _read_answers(self) -> None:
        conn = self._hints
        try:
            while self._unanswered and conn is self._hints:
                await conn.read_response(timeout=REPLY_TIMEOUT)
                self._unanswered -= 1
        except (RedisError, OSError, TimeoutError) as exc:
            self._lost(conn, exc)

    def _lost(self, conn: Connection, exc: BaseException) -> None:
        """Drop the connection and what waits on it (rationale 1)."""
        if conn is not self._hints:
            return  # already dropped
        waiting = self._waiting()
        if waiting or self._unanswered:
            logger.warning(
                "could not send hint %s to redis: %s",
                " ".join(waiting) or f"({self._unanswered} unanswered)",
                exc,
            )
        self._newest, self._access_changed = None, False
        self._drop()

    def _drop(self) -> None:
        """Close the hints' connection; the next hint opens a new one."""
        if self._answers is not None and self._answers is not asyncio.current_task():
            self._answers.cancel()
        self._answers = None
        self._unanswered = 0
        if self._hints._writer is not None:
            self._hints._writer.transport.abort()
        self._hints = self._sender.connection_pool.make_connection()  # type: ignore[no-untyped-call]

    async def share_presence(self, payload: str) -> None:
        await self._sender.publish(self._presence_channel, payload)

    async def close(self) -> None:
        await super().close()
        # What was committed before the close is still told, within reason.
        try:
            async with asyncio.timeout(FLUSH_TIMEOUT):
                while self._sending is not None:
                    await self._sending
                if self._answers is not None:
                    await self._answers
        except TimeoutError:
            logger.warning("closing with hints not sent to redis")
        except Exception:
            logger.exception("the redis hint sender failed")
        await self._hints.disconnect(nowait=True)
        await self._sender.aclose()

    async def _listen(self, connected: Callable[[], None]) -> None:
        client = self._client(timeout=None)
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(self._hint_channel, self._presence_channel)
            connected()
            while True:
                message = await pubsub.get_message(timeout=PING_INTERVAL)
                if message is None:
                    await pubsub.ping()
                elif message["type"] != "message":
                    continue
                elif message["channel"] == self._presence_channel.encode():
                    self._presence(message["data"].decode())
                else:
                    self._heard(message["data"])
        finally:
            await pubsub.aclose()  # type: ignore[no-untyped-call]
            await client.aclose()


def _of_database(channel: str, db: int) -> str:
    """``channel``'s name for the deployment on database ``db`` (3)."""
    return channel if db == 0 else f"{channel}:{db}"
