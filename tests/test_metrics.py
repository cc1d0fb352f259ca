"""/metrics: what the hub holds, what the relay and streams did and what the process
uses, in Prometheus' format, in one process and summed over workers; and the reference
in docs/deployment.md, which must list exactly what is served."""

from __future__ import annotations

import os
import re
import resource
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Server
from tests.services import Postgres
from tests.sse import SSEClient
from tests.test_cluster import (
    SLOW_POLL,
    Placed,
    ask,
    open_on_every_worker,
    scrape,
    wait_for_every_worker,
    wait_until,
    worker_pids,
)
from tests.waiting import until


def samples(server: Server) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    answer = server.client.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(answer.text)
        for s in family.samples
    }


def test_metrics_count_streams_events_replays_and_resyncs(
    make_server: Callable[..., Server],
) -> None:
    server = make_server(replay_limit=3)
    with (
        SSEClient(server.port, params={"format": "json"}) as everything,
        SSEClient(server.port, params={"format": "html", "channel": "general"}) as page,
    ):
        everything.wait_for(lambda s: any(m.retry for m in s.messages))
        page.wait_for(lambda s: any(m.retry for m in s.messages))
        ids = [server.post(f"post {n}")["event_id"] for n in range(4)]
        everything.wait_events(4)
        page.wait_events(5)  # hello, then the four posts
        with SSEClient(server.port, params={"last_event_id": str(ids[1])}) as resumed:
            resumed.wait_events(2)
        with SSEClient(server.port, params={"last_event_id": "0"}) as too_far:
            (resync,) = too_far.wait_events(1)
        assert resync.event == "resync"
        # The two short streams are gone once the server has seen them hang up.
        found = until(lambda: samples(server), lambda s: s[("feed_streams", ())] == 2, timeout=10)
    assert found[("feed_subscribers", (("channel", "*"), ("format", "json")))] == 1
    assert found[("feed_subscribers", (("channel", "general"), ("format", "html")))] == 1
    assert found[("feed_streams", ())] == 2
    assert found[("feed_events_published_total", ())] == 4
    # 4 to each live stream, 2 replayed; the resync is not a log event.
    assert found[("feed_events_delivered_total", ())] == 10
    assert found[("feed_replay_events_count", ())] == 1
    assert found[("feed_replay_events_sum", ())] == 2
    assert found[("feed_resyncs_total", ())] == 1
    assert found[("feed_publish_seconds_count", ())] == 4
    # Each post its own commit here, each timed, its sync included.
    assert found[("feed_commit_seconds_count", ())] == 4
    assert found[("feed_commit_seconds_sum", ())] > 0
    assert found[("feed_delivery_lag_seconds_count", ())] == 4
    assert found[("feed_broker_connected", ())] == 1
    assert found[("feed_slow_subscribers_dropped_total", ())] == 0
    assert found[("feed_stream_oldest_age_seconds", ())] > 0


def test_a_metrics_directory_left_in_the_environment_is_neither_read_nor_written(
    make_server: Callable[..., Server], stale_metrics: Path
) -> None:
    before = sorted(stale_metrics.iterdir())
    server = make_server()
    server.post("one")
    found = until(
        lambda: samples(server),
        lambda s: s[("feed_events_published_total", ())] >= 1,
        timeout=10,
    )
    assert found[("feed_events_published_total", ())] == 1
    assert found[("feed_streams", ())] == 0
    assert sorted(stale_metrics.iterdir()) == before


# -- the process: open files, memory, CPU, garbage collection ---------------------------

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
OPEN = ("process_open_fds", ())
LIMIT = ("process_max_fds", ())
FULLEST = ("feed_open_files_ratio", ())
RESIDENT = ("process_resident_memory_bytes", ())
CPU = ("process_cpu_seconds_total", ())
WORKERS = ("feed_workers", ())
YOUNGEST_COLLECTIONS = ("python_gc_collections_total", (("generation", "0"),))
# Files a process opens or closes by itself now and then (a database connection, the
# scrape's own socket): how far /metrics and /proc may disagree.
DRIFT = 4
STREAMS = 20
LOW_LIMIT = 512


def open_files(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def soft_limit(pid: int) -> int:
    return resource.prlimit(pid, resource.RLIMIT_NOFILE)[0]


def resident_bytes(pid: int) -> int:
    pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    return pages * resource.getpagesize()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def lower_open_files_limit() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (LOW_LIMIT, LOW_LIMIT))


def opened_streams(port: int, count: int) -> list[SSEClient]:
    streams = [SSEClient(port, params={"format": "json"}) for _ in range(count)]
    for stream in streams:
        stream.wait_for(lambda s: any(m.retry for m in s.messages))
    return streams


def test_open_files_memory_cpu_and_collections_are_the_server_process_own(
    make_server: Callable[..., Server],
) -> None:
    server = make_server(preexec=lower_open_files_limit)
    assert server.proc is not None
    pid = server.proc.pid
    quiet = until(
        lambda: (samples(server), open_files(pid)),
        lambda now: abs(now[0][OPEN] - now[1]) <= DRIFT,
        timeout=10,
    )[0]
    streams = opened_streams(server.port, STREAMS)
    try:
        found = until(
            lambda: samples(server), lambda s: s[("feed_streams", ())] == STREAMS, timeout=10
        )
        # One socket per stream.
        assert STREAMS - 1 <= found[OPEN] - quiet[OPEN] <= STREAMS + DRIFT
        assert abs(found[OPEN] - open_files(pid)) <= DRIFT
        assert found[LIMIT] == soft_limit(pid) == LOW_LIMIT
        assert found[FULLEST] == pytest.approx(found[OPEN] / LOW_LIMIT)
        assert found[WORKERS] == 1
        assert found[RESIDENT] == pytest.approx(resident_bytes(pid), rel=0.2)
        assert 0 < found[CPU] <= cpu_seconds(pid) + 0.05
        assert found[YOUNGEST_COLLECTIONS] > 0
        assert 0 <= found[("feed_gc_seconds_total", (("generation", "0"),))] <= found[CPU]
    finally:
        for stream in streams:
            stream.close()
    # Given back as the streams end.
    until(lambda: samples(server), lambda s: s[OPEN] <= quiet[OPEN] + DRIFT, timeout=10)


def test_no_created_series_double_the_counters(make_server: Callable[..., Server]) -> None:
    server = make_server()
    server.post("one")
    with SSEClient(server.port, params={"last_event_id": "0"}) as replayed:
        replayed.wait_events(1)
    text = server.client.get("/metrics").text
    names = {s.name for f in text_string_to_metric_families(text) for s in f.samples}
    assert "feed_events_published_total" in names
    assert "feed_replay_events_count" in names
    assert sorted(n for n in names if n.endswith("_created")) == []


# -- the reference in docs/deployment.md ------------------------------------------------

DEPLOYMENT = Path(__file__).resolve().parents[1] / "docs" / "deployment.md"
REFERENCE_HEADING = "## Metrics reference"
# What a metric is in the reference: its type and its labels.
Entry = tuple[str, frozenset[str]]


def reference_section() -> str:
    text = DEPLOYMENT.read_text()
    assert f"\n{REFERENCE_HEADING}\n" in text
    return text.split(f"\n{REFERENCE_HEADING}\n", 1)[1].split("\n## ", 1)[0]


def documented() -> dict[str, Entry]:
    """The reference's table: | `name` | type | `label`, `label` | meaning |"""
    rows = re.findall(r"^\| `(\w+)` \| (\w+) \|([^|]*)\|", reference_section(), re.MULTILINE)
    assert rows, "no metrics in the reference"
    found = {name: (kind, frozenset(re.findall(r"`(\w+)`", labels))) for name, kind, labels in rows}
    assert len(found) == len(rows), "a metric is in the reference twice"
    return found


def exposed(text: str) -> dict[str, Entry]:
    """What a scrape shows, named as people query it: a counter with ``_total``."""
    found: dict[str, Entry] = {}
    for family in text_string_to_metric_families(text):
        name = f"{family.name}_total" if family.type == "counter" else family.name
        labels = frozenset(k for s in family.samples for k in s.labels if k != "le")
        found[name] = (family.type, labels)
    return found


def test_every_metric_served_is_in_the_reference_and_every_one_there_is_served(
    make_server: Callable[..., Server],
) -> None:
    server = make_server()
    with SSEClient(server.port, params={"format": "html", "channel": "general"}) as page:
        page.wait_for(lambda s: any(m.retry for m in s.messages))
        until(lambda: samples(server), lambda s: s[("feed_streams", ())] == 1, timeout=10)
        served = exposed(server.client.get("/metrics").text)
    assert served == documented()


def alert_rules() -> list[dict[str, Any]]:
    (block,) = re.findall(r"```yaml\n(.*?)```", reference_section(), re.DOTALL)
    rules: list[dict[str, Any]] = [
        rule for group in yaml.safe_load(block)["groups"] for rule in group["rules"]
    ]
    return rules


def test_the_sample_alerts_watch_metrics_of_the_reference() -> None:
    known = set(documented())
    histograms = {name for name, (kind, _) in documented().items() if kind == "histogram"}
    known |= {f"{name}_{part}" for name in histograms for part in ("bucket", "sum", "count")}
    rules = alert_rules()
    assert [rule["alert"] for rule in rules] == [
        "FeedOpenFilesNearLimit",
        "FeedBrokerDisconnected",
        "FeedSlowStreamsDropped",
    ]
    for rule in rules:
        watched = set(re.findall(r"\b(?:feed|process|python)_\w+", rule["expr"]))
        assert watched and watched <= known, (rule["alert"], watched - known)
        assert rule["annotations"]["summary"]


# -- several workers ---------------------------------------------------------------------


@pytest.fixture
def pg_url(postgres: Postgres) -> str:
    return postgres.new_database()


def process_gaps(found: Samples, workers: list[int]) -> list[str]:
    """Where a scrape's process numbers disagree with what /proc says of ``workers``."""
    files = [open_files(w) for w in workers]
    limits = [soft_limit(w) for w in workers]
    fullest = max(f / limit for f, limit in zip(files, limits, strict=True))
    gaps = {
        "open files": abs(found[OPEN] - sum(files)) > DRIFT,
        "limits": found[LIMIT] != sum(limits),
        "fullest": abs(found[FULLEST] - fullest) > DRIFT / min(limits),
        "workers": found[WORKERS] != len(workers),
    }
    return [f"{what}: {found} against {files}, {limits}" for what, wrong in gaps.items() if wrong]


def scrape_agreeing(server: Server, workers: list[int]) -> Samples:
    """Scrape until the process numbers agree with /proc: each worker shares its part
    about once a second."""
    return until(
        lambda: scrape(server, workers)[1],
        lambda found: not process_gaps(found, workers),
        timeout=20,
        failure=lambda found: AssertionError(process_gaps(found, workers)),
    )


def test_workers_process_numbers_add_up_and_the_fullest_worker_shows(
    make_server: Callable[..., Server], pg_url: str
) -> None:
    server = make_server(database=pg_url, broker_url=pg_url, workers=2, poll_interval=SLOW_POLL)
    assert server.proc is not None
    supervisor = server.proc.pid
    wait_until(lambda: len(worker_pids(supervisor)) == 2, "two workers")
    workers = worker_pids(supervisor)
    wait_for_every_worker(server, workers)
    # One worker far nearer its limit than the other: the sum of files over the sum of
    # limits would look harmless, the fullest worker's ratio does not.
    crowded = workers[0]
    hard = resource.prlimit(crowded, resource.RLIMIT_NOFILE)[1]
    resource.prlimit(crowded, resource.RLIMIT_NOFILE, (LOW_LIMIT, hard))
    quiet = scrape_agreeing(server, workers)
    opened: list[Placed] = []
    try:
        open_on_every_worker(server, workers, [[("format", "json")]], STREAMS // 2, opened)
        found = scrape_agreeing(server, workers)
        assert len(opened) - 1 <= found[OPEN] - quiet[OPEN] <= len(opened) + 2 * DRIFT
        assert found[LIMIT] == LOW_LIMIT + soft_limit(workers[1])
        assert found[FULLEST] == pytest.approx(open_files(crowded) / LOW_LIMIT, abs=0.01)
        assert found[WORKERS] == 2
        rss = sum(resident_bytes(w) for w in workers)
        assert found[RESIDENT] == pytest.approx(rss, rel=0.2)
        assert 0 < found[CPU] <= sum(cpu_seconds(w) for w in workers) + 0.1
        assert found[YOUNGEST_COLLECTIONS] > 0
        _, body = ask(server, workers, "/metrics")
        assert exposed(body.decode()) == documented()
        assert not [name for name in exposed(body.decode()) if name.endswith("_created")]

        # A dead worker stops counting in the sums and the ratio; its CPU time stays.
        used = found[CPU]
        os.kill(crowded, signal.SIGKILL)
        wait_until(
            lambda: len(now := worker_pids(supervisor)) == 2 and crowded not in now,
            "a replacement worker",
        )
        workers = worker_pids(supervisor)
        found = scrape_agreeing(server, workers)
        assert found[CPU] >= used
        assert found[FULLEST] < 0.1
    finally:
        for each in opened:
            each.stream.close()


def test_a_lag_observed_for_many_events_at_once_counts_as_each_of_them() -> None:
    from prometheus_client import CollectorRegistry, Histogram, generate_latest

    from feed.metrics import SECONDS_BUCKETS, Lags

    def read(registry: CollectorRegistry) -> dict[str, float]:
        text = generate_latest(registry).decode()
        return {
            f"{s.name}{sorted(s.labels.items())}": s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
            if not s.name.endswith("_created")
        }

    each, together = CollectorRegistry(), CollectorRegistry()
    one_by_one = Histogram("lag", "lag", buckets=SECONDS_BUCKETS, registry=each)
    at_once = Lags("lag", "lag", buckets=SECONDS_BUCKETS, registry=together)
    for amount, times in ((0.003, 1000), (0.2, 3), (1e9, 2), (0.0, 1)):
        for _ in range(times):
            one_by_one.observe(amount)
        at_once.observe_times(amount, times)
    expected, found = read(each), read(together)
    assert found.pop("lag_sum[]") == pytest.approx(expected.pop("lag_sum[]"))
    assert found == expected
    assert found["lag_count[]"] == 1006
    assert found["lag_bucket[('le', '0.005')]"] == 1001
