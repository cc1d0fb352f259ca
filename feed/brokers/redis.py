"""Hints by Redis pub/sub (or any server speaking its protocol, such as Valkey).

A hint is sent after the writing transaction has committed, by one sender task per
process, so no request waits for Redis. If Redis is unreachable at that moment the
change is still committed and acknowledged; other processes find its events by
polling, or on the catch-up after their own reconnect. Hints waiting for the sender
are merged: all a process needs to hear is the newest event id, and whether access
changed, which goes first, so that the streams there are rechecked before later
events reach them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import redis.asyncio as redis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from feed.brokers import ACCESS_HINT, HINT_CHANNEL, PRESENCE_CHANNEL
from feed.brokers.listener import PING_INTERVAL, ListeningBroker

if TYPE_CHECKING:
    from feed.values import Commit

logger = logging.getLogger("feed.broker")

# How long closing waits for hints still being sent.
FLUSH_TIMEOUT = 5.0


class RedisBroker(ListeningBroker):
    kind = "redis"

    def __init__(self, url: str) -> None:
        super().__init__(url)
        # Sending retries once, on a fresh connection, if its pooled one was cut.
        self._sender = self._client(timeout=5.0, retries=1)
        self._newest: int | None = None  # the newest event id not yet sent
        self._access_changed = False  # not yet sent
        self._sending: asyncio.Task[None] | None = None

    def _client(self, timeout: float | None, retries: int = 0) -> redis.Redis:
        # No silent retries for the listener: a lost connection must surface, so it
        # can catch up after reconnecting (see listener.py).
        return redis.Redis.from_url(
            self._url,
            socket_connect_timeout=5,
            socket_timeout=timeout,
            retry=Retry(NoBackoff(), retries),
        )

    def hint_others(self, commit: Commit) -> None:
        if commit.events:
            self._newest = max(self._newest or 0, commit.events[-1].id)
        self._access_changed = self._access_changed or bool(commit.access)
        if self._sending is None or self._sending.done():
            self._sending = asyncio.get_running_loop().create_task(self._send(), name="redis-hints")

    async def _send(self) -> None:
        while self._newest is not None or self._access_changed:
            newest, access = self._newest, self._access_changed
            self._newest, self._access_changed = None, False
            if access:
                await self._say(ACCESS_HINT)
            if newest is not None:
                await self._say(str(newest))

    async def _say(self, hint: str) -> None:
        try:
            await self._sender.publish(HINT_CHANNEL, hint)
        except (RedisError, OSError) as exc:
            logger.warning("could not send hint %s to redis: %s", hint, exc)

    async def share_presence(self, payload: str) -> None:
        await self._sender.publish(PRESENCE_CHANNEL, payload)

    async def close(self) -> None:
        await super().close()
        if self._sending is not None:
            # What was committed before the close is still told, within reason.
            try:
                await asyncio.wait_for(self._sending, FLUSH_TIMEOUT)
            except TimeoutError:
                logger.warning("closing with hints not sent to redis")
            except Exception:
                logger.exception("the redis hint sender failed")
        await self._sender.aclose()

    async def _listen(self, connected: Callable[[], None]) -> None:
        client = self._client(timeout=None)
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(HINT_CHANNEL, PRESENCE_CHANNEL)
            connected()
            while True:
                message = await pubsub.get_message(timeout=PING_INTERVAL)
                if message is None:
                    await pubsub.ping()
                elif message["type"] != "message":
                    continue
                elif message["channel"] == PRESENCE_CHANNEL.encode():
                    self._presence(message["data"].decode())
                else:
                    self._heard(message["data"])
        finally:
            await pubsub.aclose()  # type: ignore[no-untyped-call]
            await client.aclose()
