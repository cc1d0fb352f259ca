"""Several server processes on one PostgreSQL: commit order, brokers, faults, and
``/metrics`` answering for every worker of a server.

Every server here polls only once a minute, so an event that arrives within a test's
deadline came through the broker (or the catch-up after a broker reconnect), not
through the poll that would otherwise hide a lost hint.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from feed.server import Supervisor
from feed.settings import Settings
from tests.auth import ADMIN
from tests.conftest import Server, free_port
from tests.services import Postgres, Valkey
from tests.sse import SSEClient
from tests.waiting import until

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
    until(check, timeout=timeout, failure=lambda _: AssertionError(f"timed out waiting for {what}"))


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


def test_streams_survive_a_postgres_crash_and_writes_get_503_meanwhile(
    make_server: Callable[..., Server], own_postgres: Postgres
) -> None:
    url = own_postgres.new_database()
    a = make_server(database=url, broker_url=url, poll_interval=SLOW_POLL)
    with json_stream(a) as stream:
        before = a.post("before the restart")["event_id"]
        stream.wait_events(1)

        # An abrupt stop, as a crash: what was acknowledged must still be there after.
        assert own_postgres.execute("SHOW synchronous_commit") == [("on",)]
        own_postgres.stop("immediate")
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


@pytest.fixture
def two_workers(make_server: Callable[..., Server], valkey: Valkey) -> tuple[Server, list[int]]:
    """Two workers on SQLite with the Redis broker, and their pids."""
    server = make_server(broker_url=valkey.url, workers=2, poll_interval=SLOW_POLL)
    assert server.proc is not None
    wait_until(lambda: len(worker_pids(server.proc.pid)) == 2, "two workers")  # type: ignore[union-attr]
    workers = worker_pids(server.proc.pid)
    wait_for_every_worker(server, workers)  # both serve: a death now is not a failed start
    return server, workers


def spread_of(server: Server, workers: list[int], streams: list[SSEClient]) -> dict[int, int]:
    return collections.Counter(worker_of(stream, server, workers) for stream in streams)


SPREAD_STREAMS = 60
# Each connection lands on either worker by a hash: fewer than a quarter of 60 on one
# has a chance of about 1 in 40,000 with an even spread.
AT_LEAST = SPREAD_STREAMS // 4


def test_connections_spread_evenly_over_the_workers(
    two_workers: tuple[Server, list[int]],
) -> None:
    server, workers = two_workers
    streams = [json_stream(server) for _ in range(SPREAD_STREAMS)]
    try:
        held = spread_of(server, workers, streams)
        assert sorted(held) == sorted(workers) and min(held.values()) >= AT_LEAST, held
        sent = server.post("to every stream")["event_id"]
        for stream in streams:
            stream.wait_events(1)
            assert event_ids(stream) == [sent]
    finally:
        for stream in streams:
            stream.close()


def test_a_killed_worker_never_closes_the_port_and_its_replacement_gets_its_share(
    two_workers: tuple[Server, list[int]],
) -> None:
    server, workers = two_workers
    assert server.proc is not None
    victim, survivor = workers
    os.kill(victim, signal.SIGKILL)
    # Dead (a zombie has no command line): it accepts nothing more.
    wait_until(lambda: victim not in worker_pids(server.proc.pid), "the victim's end")  # type: ignore[union-attr]
    # Opened while the victim is dead and not yet replaced: none is refused or cut,
    # those the kernel queued for the dead worker wait for its replacement.
    during = [json_stream(server) for _ in range(20)]
    wait_until(lambda: len(worker_pids(server.proc.pid)) == 2, "a replacement")  # type: ignore[union-attr]
    now = worker_pids(server.proc.pid)
    replacement = next(pid for pid in now if pid != survivor)
    assert replacement != victim
    after = [json_stream(server) for _ in range(SPREAD_STREAMS)]
    try:
        held = spread_of(server, now, after)
        assert min(held[replacement], held[survivor]) >= AT_LEAST, held
        sent = server.post("after the replacement")["event_id"]
        for stream in during + after:
            stream.wait_events(1)
            assert event_ids(stream) == [sent]
        assert spread_of(server, now, during)[replacement] > 0
    finally:
        for stream in during + after:
            stream.close()


def test_a_second_server_on_the_same_port_is_refused_not_let_in_to_share_it(
    two_workers: tuple[Server, list[int]], make_server: Callable[..., Server], valkey: Valkey
) -> None:
    server, _ = two_workers
    env = server.env | {"FEED_BROKER_URL": valkey.url}
    second = subprocess.Popen(
        [sys.executable, *Server.command], env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        _, errors = second.communicate(timeout=20)
    finally:
        second.kill()  # still serving, sharing the port: the test has failed
    assert second.returncode != 0
    assert "address already in use" in errors.lower()


def bind_with_a_rival_in_the_gap(
    monkeypatch: pytest.MonkeyPatch, first: Supervisor, second: Supervisor
) -> tuple[list[str], list[socket.socket]]:
    """``first``'s sockets, bound with ``second`` started inside its gap: after the plain
    bind that refuses a port in use is let go, before the shared sockets are bound.
    What became of ``second``: ``bound`` (its sockets closed again), or ``refused: ...``."""
    listen = Supervisor._listen
    outcome: list[str] = []

    def listen_and_race(self: Supervisor, port: int, *, spread: bool) -> socket.socket:
        if self is first and spread and not outcome:
            try:
                taken = second._bind()
            except OSError as exc:
                outcome.append(f"refused: {exc}")
            else:
                outcome.append("bound")
                for sock in taken:
                    sock.close()
        return listen(self, port, spread=spread)

    monkeypatch.setattr(Supervisor, "_listen", listen_and_race)
    sockets = first._bind()
    monkeypatch.undo()
    return outcome, sockets


def test_two_servers_starting_in_the_same_instant_do_not_both_get_the_port(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The plain bind that refuses a port in use (server.py, on the listening sockets) is
    # closed before the shared sockets are bound; a second server started in that gap
    # saw a free port. The gap is made certain here: the second starts inside it.
    settings = Settings(
        host="127.0.0.1", port=free_port(), workers=2, broker_url="redis://127.0.0.1:1/0"
    )
    first, second = Supervisor(settings), Supervisor(settings)
    outcome, sockets = bind_with_a_rival_in_the_gap(monkeypatch, first, second)
    try:
        assert len(outcome) == 1 and outcome[0].startswith("refused"), outcome
        assert "in use" in outcome[0]
    finally:
        for sock in set(sockets):
            sock.close()
    # Once the first has let go, the port is free for a server again.
    for sock in set(second._bind()):
        sock.close()


def test_two_servers_starting_in_the_same_instant_on_two_names_of_one_address_do_not_both_get_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The claim on the address is the address bound, not the name it was asked by:
    ``localhost`` and ``127.0.0.1`` are one address, and the second is refused."""
    port = free_port()
    broker = "redis://127.0.0.1:1/0"
    first = Supervisor(Settings(host="localhost", port=port, workers=2, broker_url=broker))
    second = Supervisor(Settings(host="127.0.0.1", port=port, workers=2, broker_url=broker))
    outcome, sockets = bind_with_a_rival_in_the_gap(monkeypatch, first, second)
    try:
        assert len(outcome) == 1 and outcome[0].startswith("refused"), outcome
        assert "in use" in outcome[0]
    finally:
        for sock in set(sockets):
            sock.close()


@pytest.mark.parametrize(("one", "other"), [("0.0.0.0", "127.0.0.1"), ("127.0.0.1", "0.0.0.0")])
def test_two_servers_starting_in_the_same_instant_on_the_wildcard_and_one_address_do_not_both_run(
    monkeypatch: pytest.MonkeyPatch, one: str, other: str
) -> None:
    """The wildcard takes the port on every address, the loopback one among them: the
    two overlap, as the plain bind says once either listens, so the second is refused."""
    port = free_port()
    broker = "redis://127.0.0.1:1/0"
    first = Supervisor(Settings(host=one, port=port, workers=2, broker_url=broker))
    second = Supervisor(Settings(host=other, port=port, workers=2, broker_url=broker))
    outcome, sockets = bind_with_a_rival_in_the_gap(monkeypatch, first, second)
    try:
        assert len(outcome) == 1 and outcome[0].startswith("refused"), outcome
        assert "in use" in outcome[0]
        # Started after the first listens, the plain bind refuses it.
        with pytest.raises(OSError, match="in use"):
            second._bind()
    finally:
        for sock in set(sockets):
            sock.close()


def test_servers_on_two_addresses_of_one_port_both_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two addresses that do not overlap are two servers' to take, one after the other."""
    port = free_port()
    broker = "redis://127.0.0.1:1/0"
    first = Supervisor(Settings(host="127.0.0.1", port=port, workers=2, broker_url=broker))
    second = Supervisor(Settings(host="127.0.0.2", port=port, workers=2, broker_url=broker))
    held = first._bind() + second._bind()
    try:
        assert sorted({s.getsockname() for s in held}) == [("127.0.0.1", port), ("127.0.0.2", port)]
    finally:
        for sock in set(held):
            sock.close()


def worker_pids(supervisor: int) -> list[int]:
    children = Path(f"/proc/{supervisor}/task/{supervisor}/children")
    pids = [int(x) for x in children.read_text().split()] if children.exists() else []
    return [pid for pid in pids if b"spawn_main" in _cmdline(pid)]


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


# -- /metrics over several workers ------------------------------------------------------

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
PRIVATE = "board"


def connection_owner(pids: Iterable[int], server_port: int, client_port: int) -> int | None:
    """Which of ``pids`` holds the server's end of the TCP connection from
    ``client_port``, or None while no worker has accepted it."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if _port(fields[1]) == server_port and _port(fields[2]) == client_port:
            inodes.add(f"socket:[{fields[9]}]")
    for pid in pids:
        with contextlib.suppress(OSError):  # the process is gone
            if any(_link(fd) in inodes for fd in Path(f"/proc/{pid}/fd").iterdir()):
                return pid
    return None


def _link(path: Path) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return ""  # closed since the listing


def process_environment(pid: int) -> dict[str, str]:
    variables = Path(f"/proc/{pid}/environ").read_bytes().decode().split("\0")
    return dict(v.split("=", 1) for v in variables if "=" in v)


def _port(address: str) -> int:
    return int(address.rsplit(":", 1)[1], 16)


def worker_of(client: SSEClient, server: Server, workers: list[int]) -> int:
    """The worker that accepted ``client``'s connection."""
    client_port = client.sock.getsockname()[1]
    found: list[int] = []

    def accepted() -> bool:
        owner = connection_owner(workers, server.port, client_port)
        found.extend([] if owner is None else [owner])
        return bool(found)

    wait_until(accepted, "a worker to accept the connection", 10)
    return found[0]


def ask(server: Server, workers: list[int], path: str) -> tuple[int, bytes]:
    """GET ``path`` over a new connection: the worker that answered, and the body."""
    with SSEClient(server.port, path=path, headers=ADMIN) as answer:
        assert answer.status == 200, answer.read_body()
        body = answer.read_body()
        # HTTP/1.1 keeps the connection open after the answer, so its owner still shows.
        return worker_of(answer, server, workers), body


def wait_for_every_worker(
    server: Server,
    workers: list[int],
    path: str = "/healthz",
    check: Callable[[bytes], bool] = bool,
) -> None:
    """Ask ``path`` until every worker has answered it to ``check``'s liking. The server
    answers as soon as one worker does, and a worker's relay starts from the newest
    event when it starts."""
    answered: set[int] = set()

    def every_worker() -> bool:
        worker, body = ask(server, workers, path)
        if check(body):
            answered.add(worker)
        return answered == set(workers)

    wait_until(every_worker, f"every worker to answer {path}")


def scrape(server: Server, workers: list[int]) -> tuple[int, Samples]:
    worker, body = ask(server, workers, "/metrics")
    found = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    }
    return worker, found


def mismatches(found: Samples, expected: Samples) -> list[str]:
    return [
        f"{name}{dict(labels)}: {found.get((name, labels))} != {value}"
        for (name, labels), value in expected.items()
        if found.get((name, labels)) != value
    ]


def wait_for_sums(server: Server, workers: list[int], expected: Samples) -> None:
    """Scrape until one shows ``expected``: each worker shares its part about once a
    second."""
    until(
        lambda: mismatches(scrape(server, workers)[1], expected),
        lambda wrong: not wrong,
        timeout=20,
    )


def subscriber_samples(found: Samples) -> Samples:
    return {key: value for key, value in found.items() if key[0] == "feed_subscribers"}


@dataclass
class Placed:
    """An open stream, what it asked for, and the worker holding it."""

    stream: SSEClient
    params: list[tuple[str, str]]
    worker: int

    def labels(self) -> list[tuple[str, str]]:
        """Its (channel, format) labels in /metrics: private channels are not named."""
        channels = [v for k, v in self.params if k == "channel"] or ["*"]
        fmt = dict(self.params)["format"]
        return [("(private)" if c == PRIVATE else c, fmt) for c in channels]


def open_on_every_worker(
    server: Server,
    workers: list[int],
    kinds: list[list[tuple[str, str]]],
    at_least: int,
    opened: list[Placed],
) -> None:
    """Open streams of ``kinds`` in turn, into ``opened``, until every worker holds at
    least ``at_least``: which worker accepts a connection on the shared socket is up to
    the kernel."""
    for params in itertools.islice(itertools.cycle(kinds), 80):
        stream = SSEClient(server.port, params=params, headers=ADMIN)
        opened.append(Placed(stream, params, worker_of(stream, server, workers)))
        assert stream.status == 200, stream.read_body()
        stream.wait_for(lambda s: any(m.retry for m in s.messages))
        held = collections.Counter(placed.worker for placed in opened)
        if len(opened) >= len(kinds) and all(held[w] >= at_least for w in workers):
            return
    raise AssertionError(f"the streams did not spread over the workers: {held}")


def whole_server(opened: list[Placed], logged: int, workers: int) -> Samples:
    """What /metrics must say once the streams in ``opened`` have received all of the
    ``logged`` events meant for them."""
    labels = collections.Counter(label for each in opened for label in each.labels())
    return {
        ("feed_streams", ()): len(opened),
        **{
            ("feed_subscribers", (("channel", c), ("format", f))): n for (c, f), n in labels.items()
        },
        # Whatever the streams received, whichever worker wrote it.
        ("feed_events_delivered_total", ()): sum(len(event_ids(e.stream)) for e in opened),
        # Every worker's relay hands every event to its own hub.
        ("feed_events_published_total", ()): logged * workers,
        ("feed_delivery_lag_seconds_count", ()): logged * workers,
        # Each write is timed once, by the worker that took it.
        ("feed_publish_seconds_count", ()): logged,
        ("feed_broker_connected", ()): 1,
        ("feed_slow_subscribers_dropped_total", ()): 0,
    }


def test_metrics_add_up_every_worker_whichever_one_answers(
    make_server: Callable[..., Server], pg_url: str, postgres: Postgres, stale_metrics: Path
) -> None:
    server = make_server(
        database=pg_url, broker_url=pg_url, workers=2, poll_interval=SLOW_POLL, access_recheck=0.2
    )
    assert server.proc is not None
    supervisor = server.proc.pid
    wait_until(lambda: len(worker_pids(supervisor)) == 2, "two workers")
    workers = worker_pids(supervisor)
    wait_for_every_worker(server, workers)
    stale_files = sorted(p.name for p in stale_metrics.iterdir())
    made = server.client.post(
        "/api/channels", json={"name": PRIVATE, "title": "Board", "private": True}
    )
    assert made.status_code == 201, made.text
    wait_for_every_worker(
        server,
        workers,
        "/api/channels",
        lambda body: any(c["name"] == PRIVATE for c in json.loads(body)["channels"]),
    )
    kinds = [
        [("format", "json")],
        [("format", "html"), ("channel", "general")],
        [("format", "text"), ("channel", "general"), ("channel", PRIVATE)],
    ]
    opened: list[Placed] = []
    try:
        open_on_every_worker(server, workers, kinds, 2, opened)
        sent = [server.post(f"to all {n}")["event_id"] for n in range(5)]
        for each in opened:
            each.stream.wait_for(lambda s: event_ids(s)[-len(sent) :] == sent)
        logged = len(database_event_ids(postgres, pg_url))  # the posts and the new channel
        expected = whole_server(opened, logged, len(workers))
        wait_for_sums(server, workers, expected)
        answered: collections.Counter[int] = collections.Counter()
        deadline = time.monotonic() + 30
        while min(answered[w] for w in workers) < 3:
            assert time.monotonic() < deadline, f"scrapes reached only {answered}"
            worker, found = scrape(server, workers)
            answered[worker] += 1
            assert not mismatches(found, expected), (worker, mismatches(found, expected))
            # No other kinds of stream either, and no private channel named.
            assert subscriber_samples(found) == subscriber_samples(expected)
            assert found[("feed_stream_oldest_age_seconds", ())] > 0
    finally:
        for each in opened:
            each.stream.close()
    # The workers' numbers lived in a directory of this run, gone when it stops.
    shared = Path(process_environment(workers[0])["PROMETHEUS_MULTIPROC_DIR"])
    assert shared.is_dir() and shared != stale_metrics
    server.stop()
    assert not shared.exists()
    assert sorted(p.name for p in stale_metrics.iterdir()) == stale_files


def test_a_killed_worker_stops_counting_in_metrics_but_its_deliveries_stay(
    make_server: Callable[..., Server], pg_url: str
) -> None:
    server = make_server(database=pg_url, broker_url=pg_url, workers=2, poll_interval=SLOW_POLL)
    assert server.proc is not None
    supervisor = server.proc.pid
    wait_until(lambda: len(worker_pids(supervisor)) == 2, "two workers")
    workers = worker_pids(supervisor)
    wait_for_every_worker(server, workers)
    opened: list[Placed] = []
    try:
        open_on_every_worker(server, workers, [[("format", "json")]], 2, opened)
        sent = [server.post(f"before {n}")["event_id"] for n in range(3)]
        for each in opened:
            each.stream.wait_for(lambda s: event_ids(s) == sent)
        delivered = len(sent) * len(opened)
        expected: Samples = {
            ("feed_streams", ()): len(opened),
            ("feed_subscribers", (("channel", "*"), ("format", "json"))): len(opened),
            ("feed_events_delivered_total", ()): delivered,
        }
        wait_for_sums(server, workers, expected)

        victim = workers[0]
        kept = sum(1 for each in opened if each.worker != victim)
        os.kill(victim, signal.SIGKILL)
        wait_until(
            lambda: len(now := worker_pids(supervisor)) == 2 and victim not in now,
            "a replacement worker",
        )
        workers = worker_pids(supervisor)
        expected = {
            ("feed_streams", ()): kept,
            ("feed_subscribers", (("channel", "*"), ("format", "json"))): kept,
            # What the killed worker wrote before it died still counts.
            ("feed_events_delivered_total", ()): delivered,
            ("feed_broker_connected", ()): 1,
        }
        wait_for_sums(server, workers, expected)
        answered: set[int] = set()
        deadline = time.monotonic() + 30
        while answered != set(workers):
            assert time.monotonic() < deadline, f"scrapes reached only {answered}"
            worker, found = scrape(server, workers)
            answered.add(worker)
            assert not mismatches(found, expected), (worker, mismatches(found, expected))
    finally:
        for each in opened:
            each.stream.close()


# -- privacy learnt from the log ----------------------------------------------------------


def presences(stream: SSEClient) -> list[dict[str, Any]]:
    return [json.loads(m.data) for m in stream.messages if m.event == "presence"]


def anonymous_presence(server: Server) -> dict[str, Any]:
    answer = httpx.get(f"{server.url}/api/presence", timeout=10)
    assert answer.status_code == 200
    found: dict[str, Any] = answer.json()
    return found


def subscriber_labels(server: Server) -> dict[str, float]:
    """``feed_subscribers`` of json streams, by channel label."""
    text = server.client.get("/metrics").text
    return {
        s.labels["channel"]: s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "feed_subscribers" and s.labels["format"] == "json"
    }


def test_a_channel_made_private_in_one_process_is_hidden_at_once_in_another(
    make_server: Callable[..., Server], pg_url: str
) -> None:
    # The periodic recheck of access is a minute away: only the channel's own event,
    # read from the log, can tell process B in time.
    both = {"broker_url": pg_url, "poll_interval": SLOW_POLL, "access_recheck": 60}
    a = make_server(database=pg_url, presence_interval=60, **both)
    b = make_server(database=pg_url, presence_interval=0.2, **both)
    made = a.client.post("/api/channels", json={"name": PRIVATE, "title": "Board"})
    assert made.status_code == 201, made.text
    wait_until(lambda: PRIVATE in anonymous_presence(b)["watching"], "B to know the channel")
    with (
        SSEClient(b.port, params={"format": "json", "channel": PRIVATE}, headers=ADMIN) as admin,
        SSEClient(b.port, params={"format": "html"}) as page,
    ):
        assert admin.status == 200 and page.status == 200
        page.wait_for(lambda s: any(p["channels"].get(PRIVATE) == 1 for p in presences(s)))
        assert subscriber_labels(b).get(PRIVATE) == 1

        changed = a.client.patch(f"/api/channels/{PRIVATE}", json={"private": True})
        assert changed.status_code == 200, changed.text
        deadline = time.monotonic() + 2
        until(
            lambda: subscriber_labels(b),
            lambda labels: PRIVATE not in labels and labels.get("(private)") == 1,
            timeout=max(0.0, deadline - time.monotonic()),
        )
        assert PRIVATE not in anonymous_presence(b)["watching"]
        seen = len(presences(page))
        with SSEClient(b.port, params={"format": "json"}):  # the counts change: news
            page.wait_for(
                lambda s: any(p["streams"] == 3 for p in presences(s)[seen:]),
                timeout=max(0.0, deadline - time.monotonic()),
            )
        after = presences(page)[seen:]
        assert after and all(PRIVATE not in p["channels"] for p in after), after


# -- the supervisor -------------------------------------------------------------------------


def test_a_worker_killed_right_after_it_is_ready_is_replaced_and_the_server_goes_on(
    make_server: Callable[..., Server], pg_url: str
) -> None:
    server = make_server(database=pg_url, broker_url=pg_url, workers=2, poll_interval=SLOW_POLL)
    assert server.proc is not None
    supervisor = server.proc.pid
    wait_until(lambda: len(worker_pids(supervisor)) == 2, "two workers")
    workers = worker_pids(supervisor)
    wait_for_every_worker(server, workers)  # both serve: each has answered a request
    victim = workers[0]
    os.kill(victim, signal.SIGKILL)
    wait_until(
        lambda: len(now := worker_pids(supervisor)) == 2 and victim not in now,
        "a replacement worker",
    )
    assert server.proc.poll() is None, server.logs()
    replaced = worker_pids(supervisor)
    wait_for_every_worker(server, replaced)
    assert server.post("after the replacement")["event_id"] > 0
    assert server.proc.poll() is None


@pytest.mark.slow
def test_workers_that_cannot_start_stop_the_server_with_the_start_up_failure_code(
    tmp_path: Path,
) -> None:
    nowhere = f"postgresql://postgres@127.0.0.1:{free_port()}/feed"  # nothing listens
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEED_")}
    env.update(
        FEED_DATABASE_URL=nowhere,
        FEED_BROKER_URL=nowhere,
        FEED_WORKERS="2",
        FEED_PORT=str(free_port()),
        TMPDIR=str(tmp_path),
    )
    done = subprocess.run(
        [sys.executable, "-m", "feed", "serve"], env=env, capture_output=True, timeout=60
    )
    assert done.returncode == 3, done.stderr.decode(errors="replace")[-2000:]
    assert b"before it was serving" in done.stderr


@pytest.mark.parametrize("broker", ["postgresql", "redis-down"])
def test_a_new_private_channels_posts_never_reach_anonymous_pages_of_another_process(
    make_server: Callable[..., Server], pg_url: str, valkey: Valkey, broker: str
) -> None:
    """A private channel made, and posted to, through process B is never shown to an
    anonymous reader of process A's pages, however recent A's copy of the channel list
    is: pages filter private channels in SQL, as the channels are now (storage/lists.py,
    on whose posts). With Redis down the hint is lost, so A learns of the channel only
    at its next poll: a minute away."""
    broker_url = pg_url if broker == "postgresql" else valkey.url
    a = make_server(pg_url, broker_url=broker_url, poll_interval=60)
    b = make_server(pg_url, broker_url=broker_url, poll_interval=60)
    if broker == "redis-down":
        valkey.stop()
    leaks: list[str] = []
    try:
        with httpx.Client(base_url=a.url, timeout=10) as reader:
            for n in range(3):
                assert reader.get("/").status_code == 200  # A's channel map is fresh now
                name = f"secret-{n}"
                made = b.client.post(
                    "/api/channels", json={"name": name, "title": "S", "private": True}
                )
                assert made.status_code == 201, made.text
                body = f"TOPSECRET-{n}"
                post_id = b.post(body, channel=name)["post"]["id"]
                for path in ("/", "/kiosk", "/partials/posts", "/partials/kiosk"):
                    if body in reader.get(path).text:
                        leaks.append(f"{path} showed {body}")
                if reader.get(f"/api/posts/{post_id}").status_code != 404:
                    leaks.append(f"/api/posts/{post_id} was not a 404")
    finally:
        if broker == "redis-down":
            valkey.start()
    assert leaks == []


def test_a_replacement_killed_before_it_serves_is_replaced_again_and_the_others_serve_on(
    make_server: Callable[..., Server], pg_url: str
) -> None:
    server = make_server(database=pg_url, broker_url=pg_url, workers=2, poll_interval=SLOW_POLL)
    assert server.proc is not None
    supervisor = server.proc.pid
    wait_until(lambda: len(worker_pids(supervisor)) == 2, "two workers")
    first = worker_pids(supervisor)
    wait_for_every_worker(server, first)
    os.kill(first[0], signal.SIGKILL)
    replacement = until(
        lambda: [p for p in worker_pids(supervisor) if p not in first], timeout=20, pause=0.01
    )[0]
    # Killed while it is still starting (importing, opening the database): no answer
    # from it yet, since the survivor answers everything the shared port gets.
    os.kill(replacement, signal.SIGKILL)
    wait_until(
        lambda: len(now := worker_pids(supervisor)) == 2 and replacement not in now,
        "another replacement",
    )
    assert server.proc.poll() is None, server.logs()[-2000:]
    wait_for_every_worker(server, worker_pids(supervisor))
    assert server.post("after two deaths")["event_id"] > 0
    assert "before it was serving; stopping" not in server.logs()
