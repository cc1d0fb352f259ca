"""The throughput bench's load clients: enough of them for the rate a run aims at, and
their counts added up as one, and a target's rounds pooled."""

from __future__ import annotations

import pytest

from bench import throughput


def test_a_batch_run_spreads_its_subscribers_over_several_load_clients() -> None:
    clients = throughput.load_clients(throughput.BATCH_TARGET_PER_S, runs=True)
    each = throughput.SUBSCRIBERS * throughput.BATCH_TARGET_PER_S / clients
    assert clients > 1 and each <= throughput.PAIRS_PER_CLIENT_S
    # Single posts come one event a read, which costs a client more per pair.
    singles = throughput.load_clients(throughput.SINGLE_RATE_PER_S, runs=False)
    each = throughput.SUBSCRIBERS * throughput.SINGLE_RATE_PER_S / singles
    assert singles > 1 and each <= throughput.READS_PER_CLIENT_S


def test_the_load_clients_counts_are_added_up() -> None:
    results = [
        {"delivered": 6, "expected": 6, "last_at_ns": 50, "latency_counts": {"1": 2, "3": 1}},
        {"delivered": 3, "expected": 4, "last_at_ns": 90, "latency_counts": {"3": 1, "5": 2}},
    ]
    for r in results:
        r |= {"broken": 0, "run": "1..6"}
    added = throughput.added(results)
    assert added["delivered"] == 9 and added["expected"] == 10
    assert added["last_at_ns"] == 90 and added["broken"] == 0
    assert added["latency_counts"] == {1: 2, 3: 2, 5: 2}


def test_each_sides_cpu_is_a_share_of_the_whole_machine() -> None:
    before = {"poster": 1.0, "subscribers": 2.0, "machine": 10.0, "cores_s": 100.0}
    after = {"poster": 1.5, "subscribers": 2.2, "machine": 11.6, "cores_s": 102.0}
    used = throughput.cpu_shares(before, after, server_s=0.8)
    assert round(used["server_share"], 6) == 0.4
    assert round(used["poster_share"], 6) == 0.25
    assert round(used["subscribers_share"], 6) == 0.1
    assert round(used["machine_share"], 6) == 0.8


def test_the_machine_is_counted_in_core_seconds() -> None:
    busy, cores_s = throughput.machine_busy_s()
    assert 0 < busy < cores_s


def _posted(created: int, seconds: float, publish_ms: float, cpu_s: float) -> throughput.Posted:
    """A round of posting: ``created`` posts in ``seconds``, each answered in
    ``publish_ms`` and delivered to its 100 subscribers ``publish_ms`` late too."""
    counts = {round(publish_ms * 1000): created * 100}
    delivery = {"delivered": created * 100, "expected": created * 100, "broken": 0}
    return throughput.Posted(
        "feed",
        created,
        16,
        0,
        created,
        0,
        created,
        seconds,
        seconds + 0.1,
        [publish_ms] * created,
        cpu_s,
        {"server_share": 0.5, "poster_share": 0.25 if seconds < 1 else 0.5},
        delivery | {"latency_counts": counts},
        1.0,
    )


def test_a_targets_rounds_are_pooled_over_all_their_posts_and_time() -> None:
    row = throughput.pooled_row([_posted(3000, 1.0, 5.0, 0.3), _posted(3000, 0.5, 20.0, 0.3)])
    assert row["round_persisted_per_s"] == [3000.0, 6000.0]
    assert row["persisted_per_s"] == 6000 / 1.5  # not the mean of the rounds' rates
    assert row["delivered_per_s"] == pytest.approx(6000 / 1.7)
    assert (row["created"], row["stored"], row["lost_pairs"], row["rounds"]) == (6000, 6000, 0, 2)
    assert row["server_cpu_us_per_post"] == pytest.approx(0.6 * 1e6 / 6000)
    # Half the posts answered in 5 ms, half in 20: the p99 is the slower round's.
    assert (row["publish_p50_ms"], row["publish_p99_ms"]) == (5.0, 20.0)
    assert (row["p50_ms"], row["p99_ms"]) == (5.0, 20.0)
    # Shares weighed by each round's time: (0.5 x 1.0 + 0.25 x 0.5) / 1.5.
    assert row["poster_share"] == pytest.approx((0.5 * 1.0 + 0.25 * 0.5) / 1.5)
