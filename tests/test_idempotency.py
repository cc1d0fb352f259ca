"""Idempotency-Key: a retried create gets the first answer, never a second post or
event; a reused key with another request is refused; keys expire after a day; the key
is written in the same transaction as the post."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from feed.store import ChannelNotFound, IdempotencyKeyReused, Store
from feed.values import Answer, Change, Claim, Commit, Once
from tests.auth import ADMIN, bearer, make_token
from tests.conftest import Server
from tests.sse import SSEClient

URL = "/api/channels/general/posts"


def create(client: TestClient | httpx.Client, key: str, body: str = "hello") -> httpx.Response:
    return client.post(URL, json={"body": body}, headers={"Idempotency-Key": key})


def test_a_retry_gets_the_first_answer_and_writes_nothing(client: TestClient) -> None:
    first = create(client, "k-1")
    again = create(client, "k-1")
    assert first.status_code == again.status_code == 201
    assert again.content == first.content
    assert again.headers["location"] == first.headers["location"] == "/api/posts/1"
    assert "idempotent-replayed" not in first.headers
    assert again.headers["idempotent-replayed"] == "true"
    event_id = first.json()["event_id"]
    # One post and one event: the next write logs the event right after it.
    assert [p["id"] for p in client.get(URL).json()["posts"]] == [1]
    assert client.post(URL, json={"body": "next"}).json()["event_id"] == event_id + 1


def test_a_retry_gets_the_original_answer_even_after_the_post_changed(client: TestClient) -> None:
    first = create(client, "k-edit", "version one")
    client.patch("/api/posts/1", json={"body": "version two"})
    again = create(client, "k-edit", "version one")
    assert again.json()["post"]["body"] == "version one"
    assert again.content == first.content


def test_the_same_key_for_another_request_is_refused(client: TestClient) -> None:
    create(client, "k-reuse", "one thing")
    other_body = create(client, "k-reuse", "another thing")
    other_channel = client.post(
        "/api/channels/announcements/posts",
        json={"body": "one thing"},
        headers={"Idempotency-Key": "k-reuse"},
    )
    for refused in (other_body, other_channel):
        assert refused.status_code == 422
        assert refused.json()["error"] == (
            "The Idempotency-Key 'k-reuse' was already used for a different request; "
            "send a new key with a new request."
        )
    assert len(client.get(URL).json()["posts"]) == 1


def test_the_same_json_written_differently_is_the_same_request(client: TestClient) -> None:
    headers = {"Idempotency-Key": "k-json", "content-type": "application/json"}
    first = client.post(URL, content=b'{"body":"x"}', headers=headers)
    again = client.post(URL, content=b'{ "body":\n "x" }', headers=headers)
    assert again.status_code == 201 and again.headers["idempotent-replayed"] == "true"
    assert again.content == first.content


def test_a_key_belongs_to_its_sender_and_another_identity_gets_its_own_post(
    client: TestClient, database_url: str
) -> None:
    alice, _ = make_token(database_url, "alice")
    bob, _ = make_token(database_url, "bob")
    first = client.post(
        URL, json={"body": "same"}, headers={**bearer(alice), "Idempotency-Key": "k"}
    )
    other = client.post(URL, json={"body": "same"}, headers={**bearer(bob), "Idempotency-Key": "k"})
    assert (first.status_code, other.status_code) == (201, 201)
    assert "idempotent-replayed" not in other.headers
    assert first.json()["post"]["author"] == "alice" and other.json()["post"]["author"] == "bob"
    assert other.json()["post"]["id"] != first.json()["post"]["id"]
    # Each sender's retry gets its own first answer back.
    for token, answer in ((alice, first), (bob, other)):
        again = client.post(
            URL, json={"body": "same"}, headers={**bearer(token), "Idempotency-Key": "k"}
        )
        assert again.headers["idempotent-replayed"] == "true"
        assert again.content == answer.content
    posts = client.get(URL).json()["posts"]
    assert [(p["author"], p["body"]) for p in posts] == [("bob", "same"), ("alice", "same")]


def test_another_admin_reusing_a_channel_key_creates_nothing_of_the_first(
    client: TestClient, database_url: str
) -> None:
    other_admin, _ = make_token(database_url, "root", "admin")
    payload = {"name": "ops", "title": "Ops"}
    first = client.post("/api/channels", json=payload, headers={"Idempotency-Key": "c"})
    other = client.post(
        "/api/channels", json=payload, headers={**bearer(other_admin), "Idempotency-Key": "c"}
    )
    assert first.status_code == 201
    # Its own request: the channel exists now, which is a conflict, not a replay.
    assert other.status_code == 409 and "idempotent-replayed" not in other.headers


@pytest.mark.parametrize("key", ["", "has space", "x" * 256, "caf\u00e9"])
def test_a_malformed_key_is_refused(client: TestClient, key: str) -> None:
    response = client.post(
        URL,
        content=b'{"body":"b"}',
        headers={
            "Idempotency-Key": key.encode("utf-8"),
            "content-type": "application/json",
        },
    )
    assert response.status_code == 400
    assert "Idempotency-Key header must be 1 to 255 visible ASCII" in response.json()["error"]
    # Not echoed: it may be anything up to the headers' limit, in any bytes.
    assert response.json()["detail"] is None


def test_refused_requests_are_not_remembered(client: TestClient) -> None:
    archived = client.post("/api/channels/general/archive")
    assert archived.status_code == 200
    assert create(client, "k-later").status_code == 409
    client.post("/api/channels/general/restore")
    assert create(client, "k-later").status_code == 201


def test_channel_creation_is_idempotent_too(client: TestClient) -> None:
    payload = {"name": "ops", "title": "Ops"}
    headers = {"Idempotency-Key": "chan-1"}
    first = client.post("/api/channels", json=payload, headers=headers)
    again = client.post("/api/channels", json=payload, headers=headers)
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.content == first.content and again.headers["idempotent-replayed"] == "true"
    assert again.headers["location"] == "/api/channels/ops/posts"
    # Without the key, the same request is a conflict.
    assert client.post("/api/channels", json=payload).status_code == 409


def test_keys_expire_after_a_day(client: TestClient, database_url: str) -> None:
    create(client, "k-old", "first")
    path = database_url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as db:
        db.execute(
            "UPDATE idempotency_keys SET created_at = datetime(created_at, '-1 day', '-1 minute')"
        )
    db.close()
    later = create(client, "k-old", "first")
    assert later.status_code == 201 and "idempotent-replayed" not in later.headers
    assert later.json()["post"]["id"] == 2
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT key FROM idempotency_keys").fetchall()
    db.close()
    assert len(rows) == 1  # the expired row was replaced, not kept beside it


def test_the_key_post_and_event_are_one_transaction(database_url: str) -> None:
    """If anything fails after the post is written, neither it, its event nor the key stay."""
    store = Store.from_url(database_url)

    def broken(_change: Change) -> Answer:
        raise RuntimeError("crash between the post and its key")

    async def scenario() -> tuple[int, list[Any]]:
        await store.create_schema()
        with pytest.raises(RuntimeError):
            await store.create_post_once(Claim("k", "f"), "general", "a", "b", broken)
        kept = await store.create_post_once(
            Claim("k", "f"), "general", "a", "b", lambda c: Answer(201, str(c.post.id))
        )
        return kept.event_id or 0, await store.list_posts()

    try:
        event_id, posts = asyncio.run(scenario())
        # The failed try left no event behind: the kept one is the only one.
        assert [e.id for e in asyncio.run(store.events_after(0))] == [event_id]
    finally:
        store.close()
    assert [p.id for p in posts] == [1]


def test_keyed_posts_are_written_in_the_group_commit_and_a_retry_writes_nothing(
    database_url: str,
) -> None:
    """A post with an Idempotency-Key takes the one road of new posts: it is written
    with whatever else arrived meanwhile, in one transaction, and a retry in the same
    group, or in a later one, gets the first answer and writes no post."""
    store = Store.from_url(database_url)

    def answer(change: Change) -> Answer:
        return Answer(201, f"post {change.post.id}", f"/api/posts/{change.post.id}")

    async def scenario() -> tuple[list[Any], list[Commit], Once]:
        await store.create_schema()
        told: list[Commit] = []
        store.on_commit(told.append)
        together = await asyncio.gather(
            store.create_post("general", "ann", "plain"),
            store.create_post_once(Claim("k", "f"), "general", "ann", "keyed", answer),
            store.create_post_once(Claim("k", "f"), "general", "ann", "keyed", answer),
            store.create_post_once(Claim("k", "g"), "general", "ann", "other", answer),
            store.create_post_once(Claim("j", "f"), "nowhere", "ann", "lost", answer),
            return_exceptions=True,
        )
        later = await store.create_post_once(Claim("k", "f"), "general", "ann", "keyed", answer)
        return together, told, later

    try:
        (plain, first, retry, reused, lost), told, later = asyncio.run(scenario())
        posts = asyncio.run(store.list_posts())
    finally:
        store.close()
    assert isinstance(plain, Change) and isinstance(first, Once) and isinstance(retry, Once)
    assert isinstance(reused, IdempotencyKeyReused) and isinstance(lost, ChannelNotFound)
    # One transaction for the group, keyed or not; the retries wrote nothing.
    assert len(told) == 1
    assert [e.post.body for e in told[0].events if e.post] == ["plain", "keyed"]
    assert [p.body for p in posts] == ["keyed", "plain"]
    assert first.answer == Answer(201, f"post {posts[0].id}", f"/api/posts/{posts[0].id}")
    assert (first.replayed, first.event_id) == (False, told[0].events[1].id)
    for again in (retry, later):
        assert (again.answer, again.replayed, again.event_id) == (first.answer, True, None)


def test_concurrent_retries_with_one_key_make_one_post_and_one_event(
    make_server: Callable[..., Server], each_database_url: str
) -> None:
    # Two processes on one database, four threads each: every retry races the others.
    servers = [make_server(each_database_url), make_server(each_database_url)]
    start = threading.Barrier(8)
    answers: list[httpx.Response] = []
    lock = threading.Lock()

    def retry(server: Server) -> None:
        with httpx.Client(base_url=server.url, timeout=20, headers=ADMIN) as http:
            start.wait(timeout=10)
            response = create(http, "same-key", "exactly once")
        with lock:
            answers.append(response)

    threads = [threading.Thread(target=retry, args=(s,)) for s in servers for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(answers) == 8
    assert {a.status_code for a in answers} == {201}
    assert len({a.content for a in answers}) == 1
    assert sum("idempotent-replayed" not in a.headers for a in answers) == 1
    (post,) = servers[0].client.get(URL).json()["posts"]
    assert post["body"] == "exactly once"
    with SSEClient(servers[1].port, params={"format": "json", "last_event_id": "0"}) as stream:
        stream.wait_events(1)
        assert [m.event for m in stream.events()] == ["post-created"]
        # Nothing else follows: the next event is the marker.
        marker = servers[1].post("marker")["event_id"]
        events = stream.wait_events(2)
    assert [m.event for m in events] == ["post-created", "post-created"]
    assert int(events[1].id or 0) == marker and '"body":"marker"' in events[1].data
    store = Store.from_url(each_database_url)
    try:
        logged = [e.id for e in asyncio.run(store.events_after(0))]
    finally:
        store.close()
    assert logged == [int(events[0].id or 0), marker]
