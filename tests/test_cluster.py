"""Several server processes on one PostgreSQL: commit order, brokers, faults.

Every server here polls only once a minute, so an event that arrives within a test's
deadline came through the broker (or the catch-up after a broker reconnect), not
through the poll that would otherwise hide a lost hint.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.auth import ADMIN
from tests.conftest import Server, free_port
from tests.services import Postgres, Valkey
from tests.sse import SSEClient

SLOW_POLL = 60.0


@pytest.fixture
def pg_url(postgres: Postgres) -> str:
    return postgres.new_database()


@pytest.fixture(params=["postgresql", "redis"])
def broker_url(request: pytest.FixtureRequest, pg_url: str) -> str:
    if request.param == "postgresql":
        return pg_url
    valkey: Valkey = request.getfixturevalue("valkey")
    return valkey.url


def json_stream(server: Server, **params: str) -> SSEClient:
    stream = SSEClient(server.port, params={"format": "json", **params})
    assert stream.status == 200
    stream.wait_for(lambda s: any(m.retry for m in s.messages))
    return stream


def event_ids(stream: SSEClient) -> list[int]:
    return [int(m.id) for m in stream.events() if m.id is not None and m.event != "resync"]


def wait_until(check: Callable[[], bool], what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)  # polling an outside condition, with a deadline


def database_event_ids(postgres: Postgres, url: str) -> list[int]:
    rows = postgres.execute("SELECT id FROM events ORDER BY id", database=url.rsplit("/", 1)[1])
    return [int(row[0]) for row in rows]  # type: ignore[call-overload]


def post_many(base_url: str, count: int, prefix: str, errors: list[str]) -> None:
    with httpx.Client(base_url=base_url, timeout=30, headers=ADMIN) as client:
        for n in range(count):
            body = {"body": f"{prefix} {n}"}
            response = client.post("/api/channels/general/posts", json=body)
            if response.status_code != 201:
                errors.append(f"{response.status_code}: {response.text}")


def test_ids_arrive_in_commit_order_from_concurrent_writers(
    make_server: Callable[..., Server], pg_url: str, postgres: Postgres
) -> None:
    settings: dict[str, Any] = {"broker_url": pg_url, "poll_interval": SLOW_POLL}
    a = make_server(database=pg_url, **settings)
    b = make_server(database=pg_url, **settings)
    writers, each = 8, 500
    with json_stream(b) as stream:
        errors: list[str] = []
        threads = [
            threading.Thread(target=post_many, args=((a, b)[n % 2].url, each, f"w{n}", errors))
            for n in range(writers)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert not errors, errors[:3]
        stream.wait_events(writers * each, timeout=60)
        received = event_ids(stream)
    assert all(x < y for x, y in itertools.pairwise(received)), "ids out of order"
    assert received == database_event_ids(postgres, pg_url)
    assert len(received) == writers * each


def test_posts_through_one_process_reach_subscribers_of_another(
    make_server: Callable[..., Server], pg_url: str, broker_url: str
) -> None:
    settings: dict[str, Any] = {"broker_url": broker_url, "poll_interval": SLOW_POLL}
    a = make_server(database=pg_url, **settings)
    b = make_server(database=pg_url, **settings)
    with json_stream(b) as on_b, json_stream(a) as on_a:
        sent = [a.post(f"post {n}")["event_id"] for n in range(20)]
        sent.append(b.post("from b")["event_id"])
        on_b.wait_events(len(sent), timeout=10)
        on_a.wait_events(len(sent), timeout=10)
        assert event_ids(on_b) == sent
        assert event_ids(on_a) == sent
        bodies = [json.loads(m.data)["post"]["body"] for m in on_b.events()]
    assert bodies == [*(f"post {n}" for n in range(20)), "from b"]
    ready = b.client.get("/readyz").json()
    assert ready["status"] == "ready"
    assert ready["broker"]["kind"] == broker_url.split(":")[0]
    assert ready["broker"]["connected"] is True


def kill_hint_connections(broker_url: str, postgres: Postgres, valkey_url: str | None) -> int:
    """Cut every process's hint connection; returns how many were cut."""
    if broker_url.startswith("postgresql"):
        rows = postgres.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = 'feed-hints'"
        )
        return len(rows)
    import redis

    client = redis.Redis.from_url(valkey_url or broker_url)
    try:
        return int(client.client_kill_filter(_type="pubsub"))
    finally:
        client.close()


def test_a_lost_broker_connection_loses_no_event(
    make_server: Callable[..., Server], pg_url: str, broker_url: str, postgres: Postgres
) -> None:
    settings: dict[str, Any] = {"broker_url": broker_url, "poll_interval": SLOW_POLL}
    a = make_server(database=pg_url, **settings)
    b = make_server(database=pg_url, **settings)
    total = 300
    with json_stream(b) as stream:
        errors: list[str] = []
        writer = threading.Thread(target=post_many, args=(a.url, total, "burst", errors))
        writer.start()
        stream.wait_events(total // 3, timeout=30)
        assert kill_hint_connections(broker_url, postgres, None) >= 2
        writer.join(60)
        assert not errors, errors[:3]
        stream.wait_events(total, timeout=30)
        received = event_ids(stream)
    assert received == database_event_ids(postgres, pg_url)
    assert len(received) == total and len(set(received)) == total
    wait_until(lambda: b.client.get("/readyz").json()["broker"]["reconnects"] >= 1, "reconnect")
    assert "broker connection lost" in b.logs() or "connection is back" in b.logs()


@pytest.fixture
def own_postgres() -> Iterator[Postgres]:
    """A cluster of this test's own, so stopping it disturbs no other test."""
    server = Postgres(free_port()).start()
    yield server
    server.remove()


def test_streams_survive_a_postgres_restart_and_writes_get_503_meanwhile(
    make_server: Callable[..., Server], own_postgres: Postgres
) -> None:
    url = own_postgres.new_database()
    a = make_server(database=url, broker_url=url, poll_interval=SLOW_POLL)
    with json_stream(a) as stream:
        before = a.post("before the restart")["event_id"]
        stream.wait_events(1)

        own_postgres.stop("fast")
        statuses = []
        for _ in range(5):
            write = a.client.post("/api/channels/general/posts", json={"body": "lost?"})
            assert write.status_code == 503, write.text
            assert "database is unavailable" in write.json()["error"]
            assert write.headers["retry-after"] == "2"
            statuses += [
                a.client.get("/api/channels").status_code,
                a.client.get("/").status_code,
                # A fresh stream needs no database until an event comes; a resumed one
                # must replay first, and cannot.
                a.client.get("/events", params={"last_event_id": str(before)}).status_code,
            ]
        assert set(statuses) == {503}
        down = a.client.get("/readyz")
        assert down.status_code == 503
        assert down.json()["database"]["reachable"] is False
        assert a.client.get("/healthz").status_code == 200

        own_postgres.start()
        wait_until(lambda: a.client.get("/readyz").status_code == 200, "ready again", 30)
        after = a.post("after the restart")["event_id"]
        stream.wait_events(2, timeout=10)
        assert event_ids(stream) == [before, after]
        assert not stream.ended
    bodies = [p["body"] for p in a.client.get("/api/channels/general/posts").json()["posts"]]
    assert bodies == ["after the restart", "before the restart"]


def test_several_workers_share_one_port_and_every_stream_gets_every_post(
    make_server: Callable[..., Server], pg_url: str
) -> None:
    server = make_server(database=pg_url, broker_url=pg_url, workers=2, poll_interval=SLOW_POLL)
    assert server.proc is not None
    supervisor = server.proc.pid
    wait_until(lambda: len(worker_pids(supervisor)) == 2, "two workers")
    streams = [json_stream(server) for _ in range(12)]
    try:
        sent = [server.post(f"to all {n}")["event_id"] for n in range(5)]
        for stream in streams:
            stream.wait_events(len(sent))
            assert event_ids(stream) == sent
    finally:
        for stream in streams:
            stream.close()
    workers = worker_pids(supervisor)
    server.proc.kill()  # SIGKILL: the workers must not outlive it
    server.proc.wait()
    wait_until(lambda: not any(Path(f"/proc/{pid}").exists() for pid in workers), "workers end")


def worker_pids(supervisor: int) -> list[int]:
    children = Path(f"/proc/{supervisor}/task/{supervisor}/children")
    pids = [int(x) for x in children.read_text().split()] if children.exists() else []
    return [pid for pid in pids if b"spawn_main" in _cmdline(pid)]


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""
