"""What the brokers tell other processes of a commit, against a real Valkey server."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as redis

from feed.brokers import ACCESS_HINT, HINT_CHANNEL
from feed.brokers.redis import RedisBroker
from feed.models import EventKind
from feed.values import AccessChange, Commit, FeedEvent
from tests.conftest import free_port
from tests.services import Valkey


def commit(*ids: int, access: AccessChange | None = None) -> Commit:
    events = [FeedEvent(i, EventKind.CHANNEL_UPDATED, "general", None) for i in ids]
    return Commit(0, events, access or AccessChange())


def test_redis_hints_waiting_to_be_sent_are_merged_with_the_access_hint_first(
    valkey: Valkey,
) -> None:
    async def main() -> list[bytes]:
        listener = redis.Redis.from_url(valkey.url)
        heard = listener.pubsub(ignore_subscribe_messages=True)
        await heard.subscribe(HINT_CHANNEL)
        broker = RedisBroker(valkey.url)
        try:
            # Three commits before the sender runs: one hint of each kind is enough.
            broker.hint_others(commit(1, 2))
            broker.hint_others(commit(access=AccessChange(members=True)))
            broker.hint_others(commit(3))
            await broker.close()  # sends what is waiting first
            got: list[bytes] = []
            async with asyncio.timeout(5):
                while len(got) < 2:
                    message = await heard.get_message(timeout=1)
                    if message is not None:
                        got.append(message["data"])
            assert await heard.get_message(timeout=0.2) is None
            return got
        finally:
            await heard.aclose()  # type: ignore[no-untyped-call]
            await listener.aclose()

    assert asyncio.run(main()) == [ACCESS_HINT.encode(), b"3"]


def test_a_hint_redis_cannot_take_is_logged_and_the_commit_stands(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def main() -> None:
        broker = RedisBroker(f"redis://127.0.0.1:{free_port()}/0")  # nothing listens
        broker.hint_others(commit(7))  # neither raises nor waits
        await broker.close()

    asyncio.run(main())
    assert "could not send hint 7 to redis" in caplog.text
