"""A thread's stream and its post's deletion, on a real uvicorn in this process: the
deletion reaches the stream whenever it is committed around the stream's opening, and
the stream ends once it has written the tombstone. Each test runs on SQLite and on
PostgreSQL.

The race is forced as tests/test_page_snapshots.py forces its own: a hook on the
stream's read of its thread deletes the post, through the API, right after that read
and before the stream joins the hub, and waits until the hub has been handed the
deletion, so the stream can only learn of it from the database.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from starlette.datastructures import QueryParams

from feed import resume, stream
from feed.permissions import Permissions
from feed.runtime import Runtime
from feed.subscribers import Subscriber
from feed.values import PostView
from tests.auth import ADMIN
from tests.sse import SSEClient, subscribed
from tests.test_stream import in_process
from tests.waiting import until_async

ThreadOf = Callable[[Runtime, Permissions, QueryParams, int | None], Awaitable[PostView | None]]


@pytest.fixture
def database_url(each_database_url: str) -> str:
    return each_database_url


@dataclass
class RacingDeletion:
    """Once armed, deletes ``parent`` right after the next stream has read its thread,
    before it joins the hub; ``tombstone`` is the deletion's event id."""

    port: int
    parent: int
    read: ThreadOf
    armed: bool = True
    tombstone: int | None = None

    async def thread_of(
        self, rt: Runtime, perms: Permissions, query: QueryParams, resume_id: int | None
    ) -> PostView | None:
        found = await self.read(rt, perms, query, resume_id)
        # Handed to the hub before this stream joins it: it will not come live.
        await self.delete(rt)
        return found

    async def delete(self, rt: Runtime) -> None:
        """Delete ``parent`` through the API, once, and wait until the hub has been
        handed its deletion."""
        if not self.armed:
            return
        self.armed = False
        url = f"http://127.0.0.1:{self.port}"
        async with httpx.AsyncClient(base_url=url, headers=ADMIN, timeout=10) as client:
            deleted = await client.delete(f"/api/posts/{self.parent}")
        assert deleted.status_code == 200, deleted.text
        tombstone: int = deleted.json()["event_id"]
        self.tombstone = tombstone
        await until_async(lambda: rt.relay.delivered >= tombstone, seconds=10)


def _kinds(opened: SSEClient) -> list[str | None]:
    return [e.event for e in opened.events()]


def _ends_after_the_tombstone(opened: SSEClient, tombstone: int) -> None:
    """The stream's last event is the tombstone, and the response ends after it (a
    stream that stays open fails at the deadline), saying the thread is over: not to
    reconnect, as a stream closed for any other reason says."""
    opened.wait_closed(timeout=10)
    assert opened.graceful, "the stream was cut, not ended"
    last = opened.events()[-1]
    assert (last.event, last.id) == ("post-deleted", str(tombstone))
    assert opened.comments[-1] == "its thread's post was deleted; nothing more will come"


@pytest.mark.parametrize("resumed", [False, True], ids=["fresh", "resumed"])
def test_a_deletion_committed_while_a_threads_stream_opens_reaches_it(
    database_url: str, monkeypatch: pytest.MonkeyPatch, resumed: bool
) -> None:
    """Deleted after the stream read its post and before it joined the hub: a fresh
    stream is a 404 or carries the tombstone, never a live stream of a deleted thread;
    a resumed one replays it. Either way a 200 ends after the tombstone."""
    with in_process(database_url, "feed", heartbeat=0.2) as feed:
        made = feed.client.post("/api/channels/general/posts", json={"body": "soon gone"})
        assert made.status_code == 201, made.text
        parent, start = made.json()["post"]["id"], made.json()["event_id"]
        race = RacingDeletion(feed.port, parent, stream.thread_of)
        monkeypatch.setattr(stream, "thread_of", race.thread_of)
        params = {"format": "json", "thread": str(parent)}
        if resumed:
            params["last_event_id"] = str(start)
        with SSEClient(feed.port, params=params) as opened:
            assert race.tombstone is not None, "the race did not run"
            if opened.status == 404:
                assert not resumed, "a resume from before the deletion is owed the tombstone"
                assert json.loads(opened.read_body())["error"] == (
                    f"There is no post with id {parent}."
                )
                return
            assert opened.status == 200, opened.read_body()
            _ends_after_the_tombstone(opened, race.tombstone)


@pytest.mark.parametrize("http", ["feed", "h11"])
def test_a_threads_stream_ends_after_its_posts_deletion_comes_live(
    database_url: str, http: str
) -> None:
    """Whether the hub writes to the connection itself (httptools) or through ASGI
    (h11): the tombstone, and then the end of the response."""
    with in_process(database_url, http, heartbeat=0.2) as feed:
        parent = feed.client.post("/api/channels/general/posts", json={"body": "the plan"})
        parent_id = parent.json()["post"]["id"]
        params = {"format": "json", "thread": str(parent_id)}
        others = subscribed(feed.port, params={"format": "json"})
        with others, subscribed(feed.port, params=params) as opened:
            replied = feed.client.post(f"/api/posts/{parent_id}/replies", json={"body": "one"})
            assert replied.status_code == 201, replied.text
            opened.wait_for(lambda s: "reply-created" in _kinds(s))
            deleted = feed.client.delete(f"/api/posts/{parent_id}")
            assert deleted.status_code == 200, deleted.text
            _ends_after_the_tombstone(opened, deleted.json()["event_id"])
            assert _kinds(opened) == ["reply-created", "post-deleted"]
            # A stream of channels goes on.
            after = feed.post("after the deletion")
            others.wait_for(lambda s: str(after) in [m.id for m in s.events()])
            assert not others.ended
        # The thread's is over: a resume from its tombstone on is the 404.
        header = {"Last-Event-ID": str(deleted.json()["event_id"])}
        with SSEClient(feed.port, params=params, headers=header) as again:
            assert again.status == 404


def test_a_deletion_that_comes_live_during_a_long_replay_ends_the_stream_after_it(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stream still replaying when the deletion comes live finishes its replay, then
    the tombstone, then ends: it was once closed at once, its replay cut short after
    one piece, so the client had to come back for the rest."""
    with in_process(database_url, "feed", subscriber_backlog=4096) as feed:
        made = feed.client.post("/api/channels/general/posts", json={"body": "A"}).json()
        parent, start = made["post"]["id"], made["event_id"]
        replies = [
            feed.client.post(f"/api/posts/{parent}/replies", json={"body": f"{'x' * 300} {n}"})
            for n in range(40)
        ]
        reply_events = [r.json()["event_id"] for r in replies]
        original = resume.replay_rest
        racing = RacingDeletion(feed.port, parent, stream.thread_of)

        async def deleting_first(
            rt: Runtime, sub: Subscriber, cursor: Any, send: Any, gone: Callable[[], bool]
        ) -> None:
            # The replay's first piece is out; the deletion comes live before the rest.
            await racing.delete(rt)
            await original(rt, sub, cursor, send, gone)

        monkeypatch.setattr(resume, "replay_rest", deleting_first)
        params = {"format": "json", "thread": str(parent), "last_event_id": str(start)}
        with SSEClient(feed.port, params=params) as opened:
            assert opened.status == 200
            opened.wait_closed(timeout=10)
            assert racing.tombstone is not None, "the replay came in one piece"
            _ends_after_the_tombstone(opened, racing.tombstone)
            ids = [int(e.id) for e in opened.events() if e.id]
        assert ids == [*reply_events, racing.tombstone]


@pytest.mark.parametrize("closed_first", [False, True], ids=["ended", "closed-meanwhile"])
def test_a_stream_whose_last_write_holds_its_tombstone_says_nothing_more_will_come(
    closed_first: bool,
) -> None:
    """The tombstone still queued when the stream finishes (closed meanwhile for
    another reason: the server closing, its maximum age) is written, and then the
    thread's end, not an invitation to reconnect to a thread that is gone."""
    from feed.sse import CLOSING, THREAD_OVER, Format
    from feed.subscribers import item

    async def main() -> bytes:
        sub = Subscriber(Format.JSON, None, last_id=5, limit=1 << 20)
        sub.offer(item(6, b"id: 6\nevent: post-deleted\ndata: {}\n\n"))
        if closed_first:
            sub.close()
        sub.end_at(6)  # the hub, having handed the tombstone over
        sent: list[dict[str, Any]] = []

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await stream._finish(sub, send, None)
        assert not sent[-1]["more_body"]
        body: bytes = sent[-1]["body"]
        return body

    body = asyncio.run(main())
    assert body.startswith(b"id: 6\nevent: post-deleted\n")
    assert body.endswith(THREAD_OVER) and CLOSING not in body
