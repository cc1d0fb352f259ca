"""Hints by Redis pub/sub (or any server speaking its protocol, such as Valkey).

A hint is published after the writing transaction has committed. If Redis is
unreachable at that moment the post is still committed and acknowledged; other
processes find it by polling, or on the catch-up after their own reconnect.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import redis.asyncio as redis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from feed.brokers import HINT_CHANNEL, PRESENCE_CHANNEL
from feed.brokers.listener import PING_INTERVAL, ListeningBroker, parse_hint

logger = logging.getLogger("feed.broker")


class RedisBroker(ListeningBroker):
    kind = "redis"

    def __init__(self, url: str) -> None:
        super().__init__(url)
        # A publish retries once, on a fresh connection, if its pooled one was cut.
        self._publisher = self._client(timeout=5.0, retries=1)

    def _client(self, timeout: float | None, retries: int = 0) -> redis.Redis:
        # No silent retries for the listener: a lost connection must surface, so it
        # can catch up after reconnecting (see listener.py).
        return redis.Redis.from_url(
            self._url,
            socket_connect_timeout=5,
            socket_timeout=timeout,
            retry=Retry(NoBackoff(), retries),
        )

    async def publish(self, event_id: int) -> None:
        self._hint(event_id)
        try:
            await self._publisher.publish(HINT_CHANNEL, str(event_id))
        except (RedisError, OSError) as exc:
            logger.warning("could not publish hint %d to redis: %s", event_id, exc)

    async def share_presence(self, payload: str) -> None:
        await self._publisher.publish(PRESENCE_CHANNEL, payload)

    async def close(self) -> None:
        await super().close()
        await self._publisher.aclose()

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
                    self._hint(parse_hint(message["data"]))
        finally:
            await pubsub.aclose()  # type: ignore[no-untyped-call]
            await client.aclose()
