"""Shared replays (feed/replays.py): one query for many streams resuming alike, and
every stream still gets exactly what it missed."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from feed.events import Format
from feed.render import Renderer
from feed.replays import Replays
from feed.store import Store
from tests.conftest import Server
from tests.sse import SSEClient


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    store = Store.from_url(f"sqlite:///{tmp_path / 'feed.db'}")
    asyncio.run(store.create_schema())
    yield store
    store.close()


class CountingStore:
    """The real store, counting the replay queries that reach it."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.queries = 0

    async def events_after(self, *args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        self.queries += 1
        return await self.store.events_after(*args, **kwargs)  # type: ignore[arg-type]


def test_streams_asking_alike_at_once_share_one_query_and_one_encoding(store: Store) -> None:
    for n in range(5):
        asyncio.run(store.create_post("general", "ann", f"post {n}"))
    counting = CountingStore(store)
    replays = Replays(counting, Renderer())  # type: ignore[arg-type]

    async def scenario() -> None:
        key = (2, None, (), 100, 5)
        answers = await asyncio.gather(*(replays.events(key) for _ in range(50)))
        assert counting.queries == 1
        events, result = answers[0]
        assert [e.id for e in events] == [3, 4, 5]
        assert all(found is events for found, _ in answers)
        first = replays.encode(result, events, Format.JSON)
        assert replays.encode(answers[-1][1], events, Format.JSON) is first
        assert [
            json.loads(line[6:])["post"]["body"]
            for line in first.decode().split("\n")
            if line.startswith("data: ")
        ] == ["post 2", "post 3", "post 4"]
        # Once the relay has published something newer, a stream that joins after it
        # needs a query of its own.
        await replays.events((2, None, (), 100, 6))
        await replays.events((2, ("general",), (), 100, 5))
        assert counting.queries == 3

    asyncio.run(scenario())


def test_a_failed_query_is_not_kept(store: Store) -> None:
    class Failing(CountingStore):
        async def events_after(self, *args: object, **kwargs: object):  # type: ignore[no-untyped-def]
            self.queries += 1
            if self.queries == 1:
                raise RuntimeError("the database went away")
            return await self.store.events_after(*args, **kwargs)  # type: ignore[arg-type]

    failing = Failing(store)
    replays = Replays(failing, Renderer())  # type: ignore[arg-type]

    async def scenario() -> None:
        key = (0, None, None, 10, 0)
        with pytest.raises(RuntimeError):
            await replays.events(key)
        events, _ = await replays.events(key)
        assert events == [] and failing.queries == 2

    asyncio.run(scenario())


def test_many_streams_resuming_from_one_id_each_get_exactly_what_they_missed(
    server: Server,
) -> None:
    ids = [server.post(f"missed {n}")["event_id"] for n in range(5)]
    streams = [
        SSEClient(server.port, params={"format": "json"}, headers={"Last-Event-ID": str(ids[1])})
        for _ in range(40)
    ]
    try:
        late = server.post("live")["event_id"]
        for stream in streams:
            stream.wait_for(lambda s: any(m.id == str(late) for m in s.events()))
            assert [m.id for m in stream.events()] == [str(i) for i in [*ids[2:], late]]
    finally:
        for stream in streams:
            stream.close()
