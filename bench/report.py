"""Numbers from measurements: percentiles, the table, ratios, the target, the JSON file.

Ratios compare feed with the baseline measured in the same run: on a small, noisy
machine, absolute milliseconds move from run to run far more than the ratios do.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import sys
import time
from itertools import chain
from pathlib import Path
from typing import Any

from bench.fanout import Measurement, Plan

RESULTS_DIR = Path(__file__).resolve().parent / "results"

# The target: at 5,000 subscribers, feed's p99 at least 5x lower than the
# baseline's, at most 20 KB of server RSS per subscriber, and everything delivered.
TARGET_SUBSCRIBERS = 5000
TARGET_P99_FACTOR = 5.0
TARGET_RSS_KB = 20.0

COLUMNS = (
    ("target", "{}"),
    ("delivered_pct", "{:.2f}%"),
    ("p50_ms", "{:.1f}"),
    ("p99_ms", "{:.1f}"),
    ("max_ms", "{:.1f}"),
    ("rss_per_sub_kb", "{:.1f}"),
    ("connect_s", "{:.1f}"),
    ("post_p50_ms", "{:.1f}"),
)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile of sorted ``values`` (NaN when there are none)."""
    if not values:
        return math.nan
    return values[max(0, math.ceil(q * len(values)) - 1)]


def summarise(m: Measurement) -> dict[str, Any]:
    latencies = sorted(us / 1000 for us in chain.from_iterable(m.latencies_us))
    expected = m.subscribers * m.posts
    grown = m.rss_kb["after"] - m.rss_kb["before"]
    return {
        "target": m.target,
        "subscribers": m.subscribers,
        "connected": m.connected,
        "posts": m.posts,
        "delivered": m.delivered,
        "expected": expected,
        "delivered_pct": 100 * m.delivered / expected,
        "lost_connections": m.lost,
        "p50_ms": percentile(latencies, 0.50),
        "p99_ms": percentile(latencies, 0.99),
        "max_ms": latencies[-1] if latencies else math.nan,
        "rss_per_sub_kb": grown / max(1, m.connected),
        "rss_kb": m.rss_kb,
        "connect_s": m.connect_s,
        "post_p50_ms": percentile(sorted(m.post_ms), 0.50),
        "per_post_p99_ms": [
            percentile(sorted(x / 1000 for x in us), 0.99) for us in m.latencies_us
        ],
    }


def table(rows: list[dict[str, Any]]) -> str:
    """A plain-text table; the same lines paste into Markdown between code fences."""
    cells = [[name for name, _ in COLUMNS]]
    cells += [[fmt.format(row[name]) for name, fmt in COLUMNS] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS))]
    return "\n".join(_line(line, widths) for line in cells)


def _line(cells: list[str], widths: list[int]) -> str:
    # The first column (the target's name) reads left-aligned, numbers right-aligned.
    first = cells[0].ljust(widths[0])
    rest = (cell.rjust(width) for cell, width in zip(cells[1:], widths[1:], strict=True))
    return "  ".join([first, *rest])


def ratios(rows: list[dict[str, Any]]) -> dict[str, float] | None:
    """How many times better feed is than the baseline (higher is better for feed)."""
    by = {row["target"]: row for row in rows}
    if not {"feed", "baseline"} <= by.keys():
        return None
    feed, base = by["feed"], by["baseline"]
    return {
        "p99_baseline_over_feed": base["p99_ms"] / feed["p99_ms"],
        "rss_baseline_over_feed": base["rss_per_sub_kb"] / feed["rss_per_sub_kb"],
    }


def verdict(rows: list[dict[str, Any]], found: dict[str, float] | None) -> str:
    feed = next((row for row in rows if row["target"] == "feed"), None)
    if feed is None or found is None:
        return "target: not checked (needs both feed and baseline)"
    factor, rss = found["p99_baseline_over_feed"], feed["rss_per_sub_kb"]
    checks = [
        (f"p99 {factor:.1f}x lower (>= {TARGET_P99_FACTOR:g}x)", factor >= TARGET_P99_FACTOR),
        (f"RSS {rss:.1f} KB/subscriber (<= {TARGET_RSS_KB:g})", rss <= TARGET_RSS_KB),
        (f"{feed['delivered_pct']:.2f}% delivered", feed["delivered"] == feed["expected"]),
    ]
    parts = [f"{text}: {'ok' if ok else 'MISSED'}" for text, ok in checks]
    scope = "" if feed["subscribers"] == TARGET_SUBSCRIBERS else " (the target is set at 5,000)"
    head = "met" if all(ok for _, ok in checks) else "missed"
    return f"target {head}{scope}: " + "; ".join(parts)


def text(plan: Plan, rows: list[dict[str, Any]], found: dict[str, float] | None) -> str:
    """What a person reads at the end of a run."""
    lines = [
        f"\nfan-out: {plan.subscribers} subscribers, {plan.posts} posts "
        f"{plan.interval * 1000:.0f} ms apart, {os.cpu_count()} CPUs\n",
        table(rows),
        "",
    ]
    if found is not None:
        lines.append(
            f"feed vs baseline: p99 {found['p99_baseline_over_feed']:.1f}x lower, "
            f"RSS per subscriber {found['rss_baseline_over_feed']:.1f}x smaller"
        )
    by = {row["target"]: row for row in rows}
    if {"feed-pg", "feed-pg-2w"} <= by.keys():
        one, two = by["feed-pg"], by["feed-pg-2w"]
        lines.append(
            f"PostgreSQL, 2 workers vs 1: p99 {two['p99_ms'] / one['p99_ms']:.2f}x, "
            f"delivered {two['delivered_pct']:.2f}% vs {one['delivered_pct']:.2f}%"
        )
    lines.append(verdict(rows, found))
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "unknown",
    )
    return {
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


def write_json(plan: Plan, rows: list[dict[str, Any]], found: dict[str, float] | None) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = RESULTS_DIR / f"fanout-{stamp}-{plan.subscribers}.json"
    document = {
        "command": [Path(sys.executable).name, "-m", "bench", *sys.argv[1:]],
        "plan": dataclasses.asdict(plan),
        "machine": machine(),
        "results": rows,
        "ratios": found,
    }
    path.write_text(json.dumps(document, indent=2) + "\n")
    return path
