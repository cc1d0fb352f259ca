"""The throughput bench's load clients: enough of them for the rate a run aims at, and
their counts added up as one."""

from __future__ import annotations

from bench import throughput


def test_a_batch_run_spreads_its_subscribers_over_several_load_clients() -> None:
    assert throughput.load_clients(throughput.SINGLE_RATE_PER_S) >= 1
    clients = throughput.load_clients(throughput.BATCH_TARGET_PER_S)
    each = throughput.SUBSCRIBERS * throughput.BATCH_TARGET_PER_S / clients
    assert clients > 1 and each <= throughput.PAIRS_PER_CLIENT_S


def test_the_load_clients_counts_are_added_up() -> None:
    results = [
        {"delivered": 6, "expected": 6, "last_at_ns": 50, "latencies_us": [[1, 2], [3]]},
        {"delivered": 3, "expected": 4, "last_at_ns": 90, "latencies_us": [[4], [5, 6]]},
    ]
    added = throughput.added(results)
    assert added["delivered"] == 9 and added["expected"] == 10
    assert added["last_at_ns"] == 90
    assert sorted(us for per_post in added["latencies_us"] for us in per_post) == [1, 2, 3, 4, 5, 6]
