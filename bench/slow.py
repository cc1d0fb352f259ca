"""The slow-reader scenario: 1% of subscribers stop reading their sockets.

Two fan-outs with the same plan, back to back: one where every subscriber reads, one
where the first 1% (spread over the client processes) set a 4 KiB receive buffer and
a 1,400-byte MSS, as over a real network, and never read after the stream's opening.
Reported: the other subscribers' latency in both runs (the slow ones must not slow
them), how many slow ones the server dropped (all of them: feed drops a stream whose
backlog passes ``FEED_SUBSCRIBER_BACKLOG``), and the server's RSS at its peak and at
the end (bounded: a stalled client costs at most its backlog, not every post since it
stalled).

Posts carry ``PAD`` characters of filler, so a stalled stream overflows within the
run: with the default 1 MiB backlog and small posts that would take thousands of
posts. ``FEED_SUBSCRIBER_BACKLOG`` is set to 64 KiB for both runs, the same setting
with or without slow readers.
"""

from __future__ import annotations

import sys
from typing import Any

from bench import report
from bench.fanout import Plan, measure

SUBSCRIBERS = 2000
SHARE = 0.01
POSTS = 60
INTERVAL = 0.1
PAD = 3000
BACKLOG = 64 * 1024
P99_NOISE = 1.5  # "unchanged within noise" on this machine: run-to-run p99 varies this much


def plan(subscribers: int, slow: int) -> Plan:
    env = (("FEED_SUBSCRIBER_BACKLOG", str(BACKLOG)),)
    return Plan(subscribers, POSTS, INTERVAL, 1, 120.0, 30.0, slow=slow, pad=PAD, env=env)


def row(label: str, m: dict[str, Any]) -> dict[str, Any]:
    rss = m["rss_kb"]
    return {
        "run": label,
        **m,
        "rss_connected_mb": rss["connected"] / 1024,
        "rss_peak_mb": rss.get("peak", rss["after"]) / 1024,
        "rss_after_mb": rss["after"] / 1024,
    }


COLUMNS = (
    ("run", "{}"),
    ("subscribers", "{}"),
    ("slow", "{}"),
    ("dropped_slow", "{}"),
    ("delivered_pct", "{:.2f}%"),
    ("p50_ms", "{:.1f}"),
    ("p99_ms", "{:.1f}"),
    ("max_ms", "{:.1f}"),
    ("rss_connected_mb", "{:.1f}"),
    ("rss_peak_mb", "{:.1f}"),
    ("rss_after_mb", "{:.1f}"),
)


async def run(subscribers: int) -> tuple[dict[str, Any], bool]:
    slow = max(1, round(subscribers * SHARE))
    rows = []
    for label, n in (("all read", 0), (f"{slow} never read", slow)):
        print(f"slow readers: {label}, {subscribers} subscribers ...", file=sys.stderr, flush=True)
        rows.append(row(label, report.summarise(await measure("feed", plan(subscribers, n)))))
    calm, stalled = rows
    print(
        f"\nslow readers: feed on SQLite, {POSTS} posts of ~{PAD} characters "
        f"{INTERVAL * 1000:.0f} ms apart, FEED_SUBSCRIBER_BACKLOG={BACKLOG}\n"
    )
    print(report.table(rows, COLUMNS))
    factor = stalled["p99_ms"] / calm["p99_ms"]
    growth = stalled["rss_peak_mb"] - calm["rss_peak_mb"]
    print(
        f"the readers' p99 with slow ones: {factor:.2f}x without "
        f"({'within' if factor <= P99_NOISE else 'OUTSIDE'} noise, <= {P99_NOISE:g}x); "
        f"slow ones dropped: {stalled['dropped_slow']} of {slow}; "
        f"peak RSS {growth:+.1f} MB against the run without"
    )
    complete = all(r["delivered"] == r["expected"] for r in rows)
    ok = complete and stalled["dropped_slow"] == slow
    return {"results": rows, "p99_factor": factor}, ok
