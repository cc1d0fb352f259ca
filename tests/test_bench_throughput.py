"""The throughput bench's load clients: enough of them for the rate a run aims at, and
their counts added up as one."""

from __future__ import annotations

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
