"""Every target of one ``python -m bench all`` run, checked in one table.

Each scenario checks its own target as it ends, but a run of every scenario takes tens
of minutes and its verdicts scroll past between tables. This reads the documents the
scenarios returned and gives one line per target: what was measured, against what,
and whether it was met. The same lines go to the terminal, to the run's JSON (as
``targets``) and, as a Markdown table, to docs/benchmarks.md by hand.

A target whose scenario did not run, or failed before it measured anything, is
reported as not measured, never as met.

``python -m bench.targets bench/results/<scenario>-<time>.json ...`` gives the same
table from the JSON files of a run, each recognised by its scenario (its name's
prefix; a throughput file with a batch size is the batch run).
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench import report, storm, throughput, workers

FANOUT_FACTOR = report.NCHAN_FACTOR
NONE = "\N{EN DASH}"  # a cell with nothing measured
STORES = {"feed": "SQLite", "feed-pg": "PostgreSQL"}


@dataclass(frozen=True)
class Check:
    """One target: what it is, what the run measured, and whether that meets it."""

    target: str
    measured: str
    met: bool | None  # None: not measured in this run

    @property
    def word(self) -> str:
        return {True: "met", False: "MISSED", None: "not measured"}[self.met]


def checks(documents: dict[str, dict[str, Any]]) -> list[Check]:
    """The targets, in the order docs/benchmarks.md gives them."""
    return [
        *_publishing(documents.get("throughput")),
        _batch(documents.get("batch")),
        *_fanout(documents.get("fanout")),
        *_workers(documents.get("workers")),
        _storm(documents.get("storm")),
    ]


def _publishing(document: dict[str, Any] | None) -> list[Check]:
    rows = {row["target"]: row for row in (document or {}).get("results", [])}
    found = []
    for target, store in STORES.items():
        wanted = throughput.TARGET_RATIO[target]
        name = (
            f"single posts on {store}: >= {wanted:.1f}x Nchan, "
            f"publish p99 <= {throughput.TARGET_PUBLISH_P99_MS:.0f} ms, nothing lost"
        )
        row, nchan = rows.get(target), rows.get("nchan")
        if row is None or nchan is None or row.get("over_nchan") is None:
            found.append(Check(name, "", None))
            continue
        measured = (
            f"{row['over_nchan']:.2f}x ({throughput.rate(row):,.0f} against "
            f"{throughput.rate(nchan):,.0f}/s), p99 {row['publish_p99_ms']:.1f} ms, "
            f"{row['lost_pairs']} lost, {row['stored']}/{row['created']} stored"
        )
        verdict = throughput.verdict(row) or ""
        found.append(Check(name, measured, verdict.endswith(": met")))
    return found


def _batch(document: dict[str, Any] | None) -> Check:
    name = f"batches on SQLite: >= {throughput.BATCH_TARGET_PER_S:,.0f} posts/s, nothing lost"
    row = next((r for r in (document or {}).get("results", []) if r["target"] == "feed"), None)
    if row is None:
        return Check(name, "", None)
    measured = (
        f"{throughput.rate(row):,.0f}/s, {row['lost_pairs']} lost, "
        f"{row['stored']}/{row['created']} stored"
    )
    verdict = throughput.batch_verdict(row) or ""
    return Check(name, measured, verdict.endswith(": met"))


def _fanout(document: dict[str, Any] | None) -> list[Check]:
    found = []
    for size in (document or {}).get("sizes", []):
        subscribers = size["plan"]["subscribers"]
        name = (
            f"fan-out to {subscribers:,}: p99 and RSS per subscriber "
            f"<= {FANOUT_FACTOR:.1f}x Nchan's, all delivered"
        )
        rows = {row["target"]: row for row in size["results"]}
        feed, nchan = rows.get("feed"), rows.get("nchan")
        if feed is None or nchan is None:
            found.append(Check(name, "", None))
            continue
        p99 = feed["p99_ms"] / nchan["p99_ms"]
        rss = feed["rss_per_sub_kb"] / nchan["rss_per_sub_kb"]
        measured = (
            f"p99 {p99:.2f}x ({feed['p99_ms']:.1f} against {nchan['p99_ms']:.1f} ms), "
            f"RSS {rss:.2f}x, {feed['delivered_pct']:.2f}% delivered"
        )
        met = p99 <= FANOUT_FACTOR and rss <= FANOUT_FACTOR
        met = met and feed["delivered"] == feed["expected"]
        found.append(Check(name, measured, met))
    return found or [Check(f"fan-out: <= {FANOUT_FACTOR:.1f}x Nchan", "", None)]


def _workers(document: dict[str, Any] | None) -> list[Check]:
    rows = {row["target"]: row for row in (document or {}).get("results", [])}
    subscribers = (document or {}).get("subscribers", workers.SUBSCRIBERS)
    nchan = rows.get("nchan-w2")
    found = []
    for target in [t for t in rows if t != "nchan-w2"] or ["feed-w2-redis"]:
        name = (
            f"two workers ({target}), {subscribers:,} streams: all held and delivered, "
            f"p99 <= {workers.P99_FACTOR:.1f}x Nchan's two workers"
        )
        row = rows.get(target)
        if row is None or nchan is None:
            found.append(Check(name, "", None))
            continue
        p99 = row["p99_ms"] / nchan["p99_ms"]
        measured = (
            f"{row['connected']:,} held, {row['delivered_pct']:.2f}% delivered, p99 {p99:.2f}x "
            f"({row['p99_ms']:.1f} against {nchan['p99_ms']:.1f} ms)"
        )
        met = p99 <= workers.P99_FACTOR and row["connected"] == subscribers
        met = met and row["delivered"] == row["expected"]
        found.append(Check(name, measured, met))
    return found


def _storm(document: dict[str, Any] | None) -> Check:
    name = f"connect storm: every client gets exactly what it missed, within {storm.TARGET_S:g} s"
    if not document:
        return Check(name, "", None)
    row = document["result"]
    exact = "yes" if document["exact"] else "no"
    measured = f"caught up in {row['caught_up_s']:.2f} s, exact: {exact}"
    return Check(name, measured, document["exact"] and row["caught_up_s"] <= storm.TARGET_S)


def text(found: list[Check]) -> str:
    width = max(len(c.target) for c in found)
    lines = ["targets of this run:"]
    lines += [f"  {c.target.ljust(width)}  {c.word:>12}  {c.measured}" for c in found]
    return "\n".join(lines)


def markdown(found: list[Check]) -> str:
    lines = ["| target | measured | |", "| --- | --- | --- |"]
    lines += [f"| {c.target} | {c.measured or NONE} | {c.word} |" for c in found]
    return "\n".join(lines)


def document(found: list[Check]) -> list[dict[str, Any]]:
    return [{**asdict(c), "word": c.word} for c in found]


def scenario(path: Path, document: dict[str, Any]) -> str:
    """The scenario a results file is of, as ``checks`` names it."""
    name = path.name.split("-")[0]
    return "batch" if name == "throughput" and document.get("batch") else name


def main(paths: list[str]) -> None:
    documents = {}
    for path in map(Path, paths):
        document = json.loads(path.read_text())
        documents[scenario(path, document)] = document
    found = checks(documents)
    print(f"{text(found)}\n\n{markdown(found)}")


if __name__ == "__main__":
    main(sys.argv[1:])
