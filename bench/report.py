"""Numbers from measurements: percentiles, tables, ratios, the targets, the JSON files.

Ratios compare feed with Nchan and with the baseline measured in the same run: on a
small, noisy machine, absolute milliseconds move from run to run far more than the
ratios do.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import subprocess
import sys
import time
from itertools import chain
from pathlib import Path
from typing import Any

from bench.fanout import Measurement, Plan

RESULTS_DIR = Path(__file__).resolve().parent / "results"

# The first target: at 5,000 subscribers, feed's p99 at least 5x lower than the
# baseline's, at most 20 KB of server RSS per subscriber, and everything delivered.
TARGET_SUBSCRIBERS = 5000
TARGET_P99_FACTOR = 5.0
TARGET_RSS_KB = 20.0
# Against Nchan, at every size: p99 and RSS per subscriber at most this times Nchan's,
# in the same run.
NCHAN_FACTOR = 1.0
# The fan-out's targets compared with Nchan's, in the order they are reported.
COMPARED = ("feed", "baseline", "feed-pg", "feed-pg-2w")

COLUMNS = (
    ("target", "{}"),
    ("delivered_pct", "{:.2f}%"),
    ("first_p50_ms", "{:.1f}"),
    ("p50_ms", "{:.1f}"),
    ("p99_ms", "{:.1f}"),
    ("max_ms", "{:.1f}"),
    ("rss_per_sub_kb", "{:.1f}"),
    ("cpu_us_per_sub_event", "{:.1f}"),
    ("client_cpu_us_per_sub_event", "{:.1f}"),
    ("connect_s", "{:.1f}"),
    ("post_p50_ms", "{:.1f}"),
    ("slow_commits", "{}"),
)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile of sorted ``values`` (NaN when there are none)."""
    if not values:
        return math.nan
    return values[max(0, math.ceil(q * len(values)) - 1)]


def summarise(m: Measurement) -> dict[str, Any]:
    latencies = sorted(us / 1000 for us in chain.from_iterable(m.latencies_us))
    # Each post's first delivery: what a target spends on a post before its fan-out
    # (request, storing, handing over), apart from the fan-out itself.
    firsts = [min(us) / 1000 for us in m.latencies_us if us]
    expected = (m.subscribers - m.slow) * m.posts
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
        "first_p50_ms": percentile(sorted(firsts), 0.50),
        "p50_ms": percentile(latencies, 0.50),
        "p99_ms": percentile(latencies, 0.99),
        "max_ms": latencies[-1] if latencies else math.nan,
        "rss_per_sub_kb": grown / max(1, m.connected),
        "rss_kb": m.rss_kb,
        "cpu_s": m.cpu_s,
        # The POSTs are in it too: a server's whole cost of getting events out.
        "cpu_us_per_sub_event": m.cpu_s * 1e6 / max(1, m.connected * m.posts),
        "client_cpu_us_per_sub_event": m.client_cpu_s * 1e6 / max(1, m.connected * m.posts),
        "slow": m.slow,
        "dropped_slow": m.dropped_slow,
        "connect_s": m.connect_s,
        "post_p50_ms": percentile(sorted(m.post_ms), 0.50),
        "per_post_p99_ms": [
            percentile(sorted(x / 1000 for x in us), 0.99) for us in m.latencies_us
        ],
        "per_post_first_ms": [min(us) / 1000 if us else math.nan for us in m.latencies_us],
        # feed's commits over 10 ms while it posted (fanout.py, on commits).
        "commits": m.commits,
        "slow_commits": m.slow_commits,
    }


def table(rows: list[dict[str, Any]], columns: tuple[tuple[str, str], ...] = COLUMNS) -> str:
    """A plain-text table; the same lines paste into Markdown between code fences."""
    cells = [[name for name, _ in columns]]
    cells += [[_cell(row.get(name), fmt) for name, fmt in columns] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    return "\n".join(_line(line, widths) for line in cells)


def _cell(value: object, fmt: str) -> str:
    return "-" if value is None else fmt.format(value)


def _line(cells: list[str], widths: list[int]) -> str:
    # The first column (the target's name) reads left-aligned, numbers right-aligned.
    first = cells[0].ljust(widths[0])
    rest = (cell.rjust(width) for cell, width in zip(cells[1:], widths[1:], strict=True))
    return "  ".join([first, *rest])


def nchan_ratios(rows: list[dict[str, Any]]) -> dict[str, float] | None:
    """feed (and the baseline) over Nchan, same run and size: 1.0 is Nchan's cost, lower
    is better."""
    by = {row["target"]: row for row in rows}
    if "nchan" not in by:
        return None
    ref = by["nchan"]
    found = {}
    for name in COMPARED:
        if name in by:
            for key, column in (("p99", "p99_ms"), ("rss", "rss_per_sub_kb")):
                found[f"{key}_{name}_over_nchan"] = by[name][column] / ref[column]
            found[f"cpu_{name}_over_nchan"] = by[name]["cpu_us_per_sub_event"] / max(
                ref["cpu_us_per_sub_event"], 1e-9
            )
    return found


def nchan_verdict(rows: list[dict[str, Any]], found: dict[str, float] | None) -> str:
    feed = next((row for row in rows if row["target"] == "feed"), None)
    if feed is None or found is None:
        return "Nchan target: not checked (needs feed and nchan)"
    p99, rss = found["p99_feed_over_nchan"], found["rss_feed_over_nchan"]
    checks = [
        (f"p99 {p99:.2f}x Nchan's (<= {NCHAN_FACTOR:g}x)", p99 <= NCHAN_FACTOR),
        (f"RSS {rss:.2f}x Nchan's (<= {NCHAN_FACTOR:g}x)", rss <= NCHAN_FACTOR),
        (f"{feed['delivered_pct']:.2f}% delivered", feed["delivered"] == feed["expected"]),
    ]
    parts = [f"{text}: {'ok' if ok else 'MISSED'}" for text, ok in checks]
    head = "met" if all(ok for _, ok in checks) else "missed"
    return f"Nchan target {head} at {feed['subscribers']:,}: " + "; ".join(parts)


def _round_ratios(rows: list[dict[str, Any]]) -> list[str]:
    """Each round's p99 over Nchan's in the same round (scaling.py, on rounds)."""
    by = {row["target"]: row.get("round_p99_ms") or [] for row in rows}
    ref = by.get("nchan", [])
    if len(ref) < 2:
        return []
    return [
        f"{name} / nchan, p99 round by round: "
        + ", ".join(f"{mine / theirs:.2f}x" for mine, theirs in zip(by[name], ref, strict=False))
        for name in COMPARED
        if len(by.get(name, [])) == len(ref)
    ]


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


def text(
    plan: Plan,
    rows: list[dict[str, Any]],
    failed: dict[str, str] | None = None,
    rounds: int = 1,
) -> str:
    """What a person reads after one size of the fan-out scenario."""
    turns = f" in each of {rounds} rounds" if rounds > 1 else ""
    lines = [
        f"\nfan-out: {plan.subscribers} subscribers, {plan.posts} posts "
        f"{plan.interval * 1000:.0f} ms apart{turns}, {plan.client_count} client process(es), "
        f"{os.cpu_count()} CPUs\n",
        table(rows),
        "",
    ]
    lines += [f"{target}: FAILED, {why}" for target, why in (failed or {}).items()]
    by_nchan = nchan_ratios(rows)
    if by_nchan is not None:
        for name in COMPARED:
            if f"p99_{name}_over_nchan" in by_nchan:
                lines.append(
                    f"{name} / nchan: p99 {by_nchan[f'p99_{name}_over_nchan']:.2f}x, "
                    f"RSS per subscriber {by_nchan[f'rss_{name}_over_nchan']:.2f}x, "
                    f"CPU per delivery {by_nchan[f'cpu_{name}_over_nchan']:.2f}x"
                )
        lines += _round_ratios(rows)
    found = ratios(rows)
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
    if plan.subscribers == TARGET_SUBSCRIBERS:
        lines.append(verdict(rows, found))
    lines.append(nchan_verdict(rows, by_nchan))
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


def commit() -> str:
    """The checkout measured, with ``+`` when it has uncommitted changes."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return "unknown"
    return head + ("+" if dirty else "") if head else "unknown"


def write_json(scenario: str, document: dict[str, Any]) -> Path:
    """``bench/results/<scenario>-<time>.json``, with the command, machine and commit."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = RESULTS_DIR / f"{scenario}-{stamp}.json"
    head = {
        "command": [Path(sys.executable).name, "-m", "bench", *sys.argv[1:]],
        "commit": commit(),
        "machine": machine(),
    }
    path.write_text(json.dumps(head | document, indent=2, default=_plain) + "\n")
    return path


def plain(document: dict[str, Any]) -> dict[str, Any]:
    """``document`` as its JSON file holds it: dataclasses (a plan, say) made dicts."""
    found: dict[str, Any] = json.loads(json.dumps(document, default=_plain))
    return found


def _plain(value: object) -> object:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    raise TypeError(f"cannot write {type(value).__name__} as JSON")
