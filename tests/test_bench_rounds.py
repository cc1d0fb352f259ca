"""The benchmarks' rounds (bench/scaling.py, on rounds): each size measures its targets
in turns, the order rotated every round, and pools each target's rounds into one row,
every round's deliveries counted and its own p99 kept."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bench import report, scaling
from bench.fanout import BenchError, Measurement, Plan, pooled

PLAN = Plan(100, 2, 0.0, 0, 10.0, 10.0)


def _measured(target: str, latency_ms: int, *, cpu_s: float = 1.0) -> Measurement:
    """A target's round: 100 subscribers, 2 posts, every delivery ``latency_ms`` late."""
    return Measurement(
        target,
        100,
        2,
        connected=100,
        delivered=200,
        post_ms=[float(latency_ms)] * 2,
        rss_kb={"before": 1000, "after": 1000 + 10 * latency_ms},
        cpu_s=cpu_s,
        client_cpu_s=cpu_s / 2,
        latencies_us=[[latency_ms * 1000] * 100, [latency_ms * 1000] * 100],
    )


def test_rounds_pool_into_one_measurement_of_all_their_posts() -> None:
    both = pooled([_measured("feed", 10, cpu_s=1.0), _measured("feed", 30, cpu_s=3.0)])
    row = report.summarise(both)
    assert (both.posts, both.delivered, len(both.latencies_us)) == (4, 400, 4)
    assert row["expected"] == 400 and row["delivered_pct"] == 100.0
    # Half the deliveries at 10 ms and half at 30: the p99 is the slower round's.
    assert (row["p50_ms"], row["p99_ms"]) == (10.0, 30.0)
    assert row["cpu_us_per_sub_event"] == pytest.approx(4.0 * 1e6 / 400)
    assert row["rss_per_sub_kb"] == pytest.approx(200 / 100)  # the rounds' mean growth
    assert row["per_post_first_ms"] == [10.0, 10.0, 30.0, 30.0]
    # feed's commits are summed over its rounds; a target that has none says so.
    counted = [_measured("feed", 10), _measured("feed", 10)]
    for m, slow in zip(counted, (0, 2), strict=True):
        m.commits, m.slow_commits = 2, slow
    assert (pooled(counted).commits, pooled(counted).slow_commits) == (4, 2)
    assert report.summarise(pooled(counted))["slow_commits"] == 2
    assert pooled([_measured("nchan", 1), _measured("nchan", 1)]).slow_commits is None


def test_one_round_is_the_measurement_itself() -> None:
    one = _measured("nchan", 12)
    assert pooled([one]) is one


def test_each_round_rotates_the_order_so_each_target_runs_once_in_every_place(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    order: list[str] = []
    latency = {
        "feed": iter([9, 13, 11]),
        "nchan": iter([10, 10, 10]),
        "baseline": iter([50, 50, 50]),
    }

    async def measure(target: str, plan: Plan, database: str | None = None) -> Measurement:
        order.append(target)
        return _measured(target, next(latency[target]))

    monkeypatch.setattr(scaling, "measure", measure)
    targets = ["feed", "nchan", "baseline"]
    size: dict[str, Any] = asyncio.run(scaling.one_size(PLAN, targets, None, 3))
    assert order == [
        *("feed", "nchan", "baseline"),
        *("nchan", "baseline", "feed"),
        *("baseline", "feed", "nchan"),
    ]
    rows = {row["target"]: row for row in size["results"]}
    assert rows["feed"]["round_p99_ms"] == [9.0, 13.0, 11.0]
    assert rows["feed"]["posts"] == 6 and rows["feed"]["p99_ms"] == 13.0
    assert size["nchan_ratios"]["p99_feed_over_nchan"] == pytest.approx(1.3)
    text = report.text(PLAN, size["results"], None, 3)
    assert "in each of 3 rounds" in text
    assert "feed / nchan, p99 round by round: 0.90x, 1.30x, 1.10x" in text


def test_rounds_default_to_one_per_target() -> None:
    assert scaling.rounds_for(0, ["nchan", "feed", "feed-pg"]) == 3
    assert scaling.rounds_for(0, ["feed"]) == 1
    assert scaling.rounds_for(2, ["nchan", "feed", "feed-pg"]) == 2
    with pytest.raises(SystemExit):
        scaling.rounds_for(scaling.MAX_ROUNDS + 1, ["feed"])


def test_a_target_that_fails_a_round_is_reported_failed_not_pooled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = {"feed": 0}

    async def measure(target: str, plan: Plan, database: str | None = None) -> Measurement:
        if target == "feed":
            calls["feed"] += 1
            if calls["feed"] == 2:
                raise BenchError("only 99 of 100 subscribers connected")
        return _measured(target, 10)

    monkeypatch.setattr(scaling, "measure", measure)
    size = asyncio.run(scaling.one_size(PLAN, ["feed", "nchan"], None, 3))
    assert [row["target"] for row in size["results"]] == ["nchan"]
    assert "only 99" in size["failed"]["feed"]
    assert calls["feed"] == 2  # not measured again once it has failed


def test_a_run_warms_every_target_up_first_and_does_not_count_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[tuple[str, int, int]] = []

    async def measure(target: str, plan: Plan, database: str | None = None) -> Measurement:
        seen.append((target, plan.subscribers, plan.posts))
        # The warm-up's deliveries are slow: counted, they would show in the p99.
        return _measured(target, 99 if plan.posts == scaling.WARM_UP_POSTS else 10)

    monkeypatch.setattr(scaling, "measure", measure)
    plan = Plan(5000, 20, 0.0, 0, 10.0, 10.0)
    sizes, complete = asyncio.run(scaling.run(plan, [5000], ["feed", "nchan"], 2))
    warm = scaling.WARM_UP_SUBSCRIBERS, scaling.WARM_UP_POSTS
    assert seen[:2] == [("feed", *warm), ("nchan", *warm)]
    assert seen[2:] == [(t, 5000, 20) for t in ("feed", "nchan", "nchan", "feed")]
    rows = {row["target"]: row for row in sizes[0]["results"]}
    assert rows["feed"]["p99_ms"] == 10.0 and rows["feed"]["posts"] == 4  # 2 rounds of 2
    assert complete
