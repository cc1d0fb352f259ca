"""/metrics: what the hub holds, what the relay and streams did, in Prometheus' format."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Server
from tests.sse import SSEClient
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
