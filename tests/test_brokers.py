"""What the brokers tell other processes of a commit, against a real Valkey server."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from pathlib import Path

import pytest
import redis.asyncio as redis

from feed.brokers import ACCESS_HINT, HINT_CHANNEL
from feed.brokers.redis import RedisBroker
from feed.metrics import Metrics
from feed.models import EventKind
from feed.relay import Relay
from feed.render import Renderer
from feed.store import Store
from feed.values import AccessChange, Commit, FeedEvent
from tests.conftest import free_port, sqlite_url
from tests.services import Valkey
from tests.test_relay import RecordingHub


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


def test_the_redis_hint_is_on_the_wire_before_this_process_fans_out_the_commit(
    valkey: Valkey, tmp_path: Path
) -> None:
    """Another process starts its fan-out alongside ours, not one whole fan-out later."""
    # A plain blocking subscriber: while this process's loop is held in the relay's
    # delivery, only a PUBLISH already handed to the kernel can reach it.
    watcher = socket.create_connection(("127.0.0.1", valkey.port), timeout=2)
    watcher.sendall(f"*2\r\n$9\r\nSUBSCRIBE\r\n${len(HINT_CHANNEL)}\r\n{HINT_CHANNEL}\r\n".encode())
    seen = b""
    while not seen.endswith(b":1\r\n"):  # the subscription is confirmed
        seen += watcher.recv(4096)

    def heard(event_id: int) -> bool:
        wanted = f"${len(str(event_id))}\r\n{event_id}\r\n".encode()
        got = b""
        try:
            while wanted not in got:
                got += watcher.recv(4096)
        except TimeoutError:
            return False
        return True

    async def main() -> list[tuple[int, bool]]:
        store = Store.from_url(sqlite_url(tmp_path / "feed.db"))
        await store.create_schema()
        broker = RedisBroker(valkey.url)
        hub = RecordingHub()
        metrics = Metrics(hub.stats, broker.status, frozenset)
        relay = Relay(store, broker, hub, Renderer(), 3600, metrics)
        order: list[tuple[int, bool]] = []
        # As the app registers them: the hint first, then the relay's own delivery.
        store.on_commit(broker.hint_others)
        relay.on_delivered(lambda events: order.append((events[-1].id, heard(events[-1].id))))
        await relay.start()
        try:
            for body in ("one", "two", "three"):
                posted = await store.create_post("general", "ann", body)
                assert posted.event_id is not None
                async with asyncio.timeout(5):
                    await hub.reached(posted.event_id)
        finally:
            await relay.close()
            store.close()
        return order

    try:
        order = asyncio.run(main())
    finally:
        watcher.close()
    assert [heard_first for _, heard_first in order] == [True, True, True]
    assert [event_id for event_id, _ in order] == sorted(event_id for event_id, _ in order)


def test_hints_go_out_again_after_redis_cut_the_hints_connection(valkey: Valkey) -> None:
    async def main() -> list[bytes]:
        listener = redis.Redis.from_url(valkey.url)
        heard = listener.pubsub(ignore_subscribe_messages=True)
        await heard.subscribe(HINT_CHANNEL)
        broker = RedisBroker(valkey.url)
        got: list[bytes] = []

        async def hear(wanted: bytes) -> None:
            while wanted not in got:
                message = await heard.get_message(timeout=0.1)
                if message is not None:
                    got.append(message["data"])

        try:
            await broker.start(lambda event_id: None, lambda: None)
            broker.hint_others(commit(1))
            async with asyncio.timeout(5):
                await hear(b"1")
            # Every plain connection but the killer's: the broker's hints' one.
            await listener.execute_command("CLIENT", "KILL", "TYPE", "normal")  # type: ignore[no-untyped-call]
            # A hint written before the broker sees the cut is lost (the other processes
            # poll); a later one reconnects.
            async with asyncio.timeout(5):
                for event_id in range(2, 1000):
                    broker.hint_others(commit(event_id))
                    try:
                        async with asyncio.timeout(0.2):
                            await hear(str(event_id).encode())
                        break
                    except TimeoutError:
                        continue
            return got
        finally:
            await broker.close()
            await heard.aclose()  # type: ignore[no-untyped-call]
            await listener.aclose()

    got = asyncio.run(main())
    assert got[0] == b"1"
    assert [int(hint) for hint in got] == sorted(int(hint) for hint in got)
    assert len(got) >= 2


def test_a_hint_after_redis_closed_the_idle_connection_is_not_lost(valkey: Valkey) -> None:
    """Redis closes a connection idle past its ``timeout`` (a common setting): our end
    is then half-closed, still writable, and a hint written to it went nowhere."""

    async def main() -> list[bytes]:
        listener = redis.Redis.from_url(valkey.url)
        heard = listener.pubsub(ignore_subscribe_messages=True)
        await heard.subscribe(HINT_CHANNEL)
        broker = RedisBroker(valkey.url)
        got: list[bytes] = []

        async def hear(wanted: bytes) -> None:
            while wanted not in got:
                message = await heard.get_message(timeout=0.1)
                if message is not None:
                    got.append(message["data"])

        try:
            await broker.start(lambda event_id: None, lambda: None)
            broker.hint_others(commit(1))
            async with asyncio.timeout(5):
                await hear(b"1")
            # As Redis closes an idle client: the hints' connection (not the killer's).
            await listener.execute_command("CLIENT", "KILL", "TYPE", "normal")  # type: ignore[no-untyped-call]
            reading = broker._hints._reader
            assert reading is not None
            async with asyncio.timeout(5):
                assert await reading.read() == b""  # the end Redis sent; nothing else
            broker.hint_others(commit(2))
            async with asyncio.timeout(5):
                await hear(b"2")
            return got
        finally:
            await broker.close()
            await heard.aclose()  # type: ignore[no-untyped-call]
            await listener.aclose()

    assert asyncio.run(main()) == [b"1", b"2"]


def test_deployments_on_other_redis_databases_do_not_hear_each_other(valkey: Valkey) -> None:
    """Pub/sub ignores Redis's database numbers: the channels carry it instead."""
    other_db = valkey.url.rsplit("/", 1)[0] + "/5"

    async def main() -> tuple[list[int | None], list[int | None]]:
        heard_0: list[int | None] = []
        heard_5: list[int | None] = []
        news = asyncio.Event()
        here, there, writer = RedisBroker(valkey.url), RedisBroker(other_db), RedisBroker(other_db)

        def hearing(heard: list[int | None]) -> Callable[[int | None], None]:
            def heard_one(event_id: int | None) -> None:
                heard.append(event_id)
                news.set()

            return heard_one

        async def until(heard: list[int | None], event_id: int) -> None:
            async with asyncio.timeout(5):
                while event_id not in heard:
                    news.clear()
                    await news.wait()

        try:
            await here.start(hearing(heard_0), lambda: None)
            await there.start(hearing(heard_5), lambda: None)
            await writer.start(lambda event_id: None, lambda: None)
            writer.hint_others(commit(7))
            await until(heard_5, 7)
            # Published after: had 7 reached database 0's listener, it would be first.
            here.hint_others(commit(8))
            await until(heard_0, 8)
            return heard_0, heard_5
        finally:
            for broker in (here, there, writer):
                await broker.close()

    heard_0, heard_5 = asyncio.run(main())
    # (None: a connection was made, and what it may have missed is to be read.)
    assert [n for n in heard_0 if n] == [8] and [n for n in heard_5 if n] == [7]
