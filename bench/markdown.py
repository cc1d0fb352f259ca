"""Markdown tables from the JSON files of a run, for docs/benchmarks.md.

``python -m bench.markdown bench/results/fanout-....json bench/results/throughput-....json
...``: each file is recognised by its scenario (its name's prefix), so the tables in
the docs are the numbers of those files, not copied by hand.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

NAMES = {"feed": "feed", "nchan": "Nchan", "baseline": "baseline"}
TIMES = "\N{MULTIPLICATION SIGN}"


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _table(head: list[str], rows: list[list[str]]) -> str:
    lines = [_row(head), _row(["---"] * len(head)), *(_row(r) for r in rows)]
    return "\n".join(lines)


def fanout(doc: dict[str, Any]) -> str:
    head = [
        "subscribers",
        "target",
        "delivered",
        "p50 ms",
        "p99 ms",
        "max ms",
        "RSS/sub KiB",
        "CPU µs/sub/event",
        "client CPU µs/sub/event",
        "POST p50 ms",
    ]
    rows, ratios = [], []
    for size in doc["sizes"]:
        n = f"{size['plan']['subscribers']:,}"
        for r in size["results"]:
            rows.append(
                [
                    n,
                    NAMES.get(r["target"], r["target"]),
                    f"{r['delivered_pct']:.2f}%",
                    f"{r['p50_ms']:.1f}",
                    f"{r['p99_ms']:.1f}",
                    f"{r['max_ms']:.1f}",
                    f"{r['rss_per_sub_kb']:.1f}",
                    f"{r['cpu_us_per_sub_event']:.1f}",
                    f"{r['client_cpu_us_per_sub_event']:.1f}",
                    f"{r['post_p50_ms']:.1f}",
                ]
            )
        for target, why in size.get("failed", {}).items():
            rows.append([n, NAMES.get(target, target), f"not run: {why}", *[""] * 7])
        found = size.get("nchan_ratios") or {}
        for target in ("feed", "baseline"):
            if f"p99_{target}_over_nchan" in found:
                ratios.append(
                    [
                        n,
                        NAMES[target],
                        f"{found[f'p99_{target}_over_nchan']:.2f}{TIMES}",
                        f"{found[f'rss_{target}_over_nchan']:.2f}{TIMES}",
                        f"{found[f'cpu_{target}_over_nchan']:.2f}{TIMES}",
                    ]
                )
    ratio_head = ["subscribers", "target", "p99", "RSS per subscriber", "CPU per delivery"]
    return _table(head, rows) + "\n\nRatios to Nchan, same run:\n\n" + _table(ratio_head, ratios)


def throughput(doc: dict[str, Any]) -> str:
    head = ["store", "posts", "answered 201", "stored", "persisted/s", "delivered/s", "lost"]
    head += ["publish p50 ms", "publish p99 ms", "delivery p50 ms", "delivery p99 ms"]
    head += [f"{TIMES} Nchan"]
    stores = {"feed": "SQLite", "feed-pg": "PostgreSQL", "nchan": "Nchan (memory)"}
    rows = [
        [
            stores.get(r["target"], r["target"]),
            str(r["posts"]),
            str(r["created"]),
            str(r["stored"]),
            f"{r['persisted_per_s']:.0f}",
            f"{r['delivered_per_s']:.0f}",
            str(r["lost_pairs"]),
            f"{r.get('publish_p50_ms', 0.0):.1f}",
            f"{r.get('publish_p99_ms', 0.0):.1f}",
            f"{r['p50_ms']:.1f}",
            f"{r['p99_ms']:.1f}",
            "" if r.get("over_nchan") is None else f"{r['over_nchan']:.2f}{TIMES}",
        ]
        for r in doc["results"]
    ]
    return _table(head, rows)


def storm(doc: dict[str, Any]) -> str:
    r = doc["result"]
    head = ["subscribers", "missed", "reconnects in flight", "reconnected", "rounds", "live s"]
    head += ["caught up s", "missed events"]
    head += ["stale ids", "listen overflows", "next post p99 ms"]
    row = [
        f"{r['subscribers']:,}",
        str(r["missed"]),
        str(r["reconnects_in_flight"]),
        f"{r['reconnected']:,}",
        str(r.get("reconnect_attempts", 1)),
        f"{r['live_s']:.2f}",
        f"{r['caught_up_s']:.2f}",
        f"{r['missed_delivered']:,} of {r['missed_expected']:,}",
        str(r["stale_ids"]),
        str(r["listen_overflows"]),
        f"{r['live_post_p99_ms']:.1f}",
    ]
    return _table(head, [row])


def slow(doc: dict[str, Any]) -> str:
    head = ["run", "subscribers", "slow", "slow dropped", "delivered", "p50 ms", "p99 ms"]
    head += ["max ms", "RSS connected MiB", "RSS peak MiB", "RSS end MiB"]
    rows = [
        [
            r["run"],
            f"{r['subscribers']:,}",
            str(r["slow"]),
            str(r["dropped_slow"]),
            f"{r['delivered_pct']:.2f}%",
            f"{r['p50_ms']:.1f}",
            f"{r['p99_ms']:.1f}",
            f"{r['max_ms']:.1f}",
            f"{r['rss_connected_mb']:.1f}",
            f"{r['rss_peak_mb']:.1f}",
            f"{r['rss_after_mb']:.1f}",
        ]
        for r in doc["results"]
    ]
    return _table(head, rows)


RENDER = {"fanout": fanout, "throughput": throughput, "storm": storm, "slow": slow}


def main() -> None:
    for name in sys.argv[1:]:
        path = Path(name)
        doc = json.loads(path.read_text())
        scenario = path.name.split("-", 1)[0]
        print(f"<!-- {path.name}, commit {doc.get('commit', '?')} -->\n")
        print(RENDER[scenario](doc) + "\n")


if __name__ == "__main__":
    main()
