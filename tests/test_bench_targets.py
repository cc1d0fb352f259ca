"""The table of targets at the end of ``python -m bench all``: each target checked from
its scenario's document, and a scenario that did not run never counted as met."""

from __future__ import annotations

from typing import Any

from bench import report, targets
from bench.fanout import Plan


def _fanout_row(target: str, p99: float, rss: float, delivered: int = 100) -> dict[str, Any]:
    return {
        "target": target,
        "p99_ms": p99,
        "rss_per_sub_kb": rss,
        "delivered": delivered,
        "expected": 100,
        "delivered_pct": float(delivered),
    }


def _single(target: str, rate: float, p99: float = 10.0, lost: int = 0) -> dict[str, Any]:
    return {
        "target": target,
        "persisted_per_s": rate,
        "delivered_per_s": rate,
        "publish_p99_ms": p99,
        "lost_pairs": lost,
        "stored": 10,
        "created": 10,
        "over_nchan": None,
    }


def test_each_fanout_size_is_met_only_when_p99_rss_and_delivery_all_hold() -> None:
    sizes = [
        {
            "plan": {"subscribers": 1000},
            "results": [_fanout_row("feed", 9, 13), _fanout_row("nchan", 10, 14)],
        },
        {
            "plan": {"subscribers": 5000},
            "results": [_fanout_row("feed", 11, 13), _fanout_row("nchan", 10, 14)],
        },
        {
            "plan": {"subscribers": 10000},
            "results": [_fanout_row("feed", 9, 15), _fanout_row("nchan", 10, 14)],
        },
        {
            "plan": {"subscribers": 19500},
            "results": [_fanout_row("feed", 9, 13, 99), _fanout_row("nchan", 10, 14)],
        },
    ]
    found = targets.checks({"fanout": {"sizes": sizes}})
    fanout = [c for c in found if c.target.startswith("fan-out")]
    assert [c.met for c in fanout] == [True, False, False, False]
    assert "1,000" in fanout[0].target and "19,500" in fanout[3].target
    assert "p99 0.90x" in fanout[0].measured and "99.00% delivered" in fanout[3].measured


def test_single_posts_are_checked_per_store_against_nchan_in_the_same_run() -> None:
    rows = [_single("nchan", 1000), _single("feed", 1100), _single("feed-pg", 400)]
    for row in rows:
        row["over_nchan"] = row["persisted_per_s"] / 1000
    found = targets.checks({"throughput": {"results": rows}})
    sqlite, postgres = found[0], found[1]
    assert sqlite.met is True and "1.10x" in sqlite.measured
    assert postgres.met is False and "0.40x" in postgres.measured


def test_a_scenario_that_did_not_run_is_not_measured_never_met() -> None:
    found = targets.checks({})
    assert found and all(c.met is None for c in found)
    assert all(c.word == "not measured" for c in found)
    table = targets.markdown(found)
    assert table.count("not measured") == len(found)


def test_a_run_in_memory_is_checked_as_its_json_files_are() -> None:
    plan = Plan(1000, 20, 0.15, 0, 120.0, 30.0)
    size = {"plan": plan, "results": [_fanout_row("feed", 9, 13), _fanout_row("nchan", 10, 14)]}
    found = targets.checks({"fanout": report.plain({"sizes": [size]})})
    assert [c.met for c in found if c.target.startswith("fan-out")] == [True]
