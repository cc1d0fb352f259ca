"""The fan-out scenario: every target at every size, one after the other, in one run.

At each size the targets run back to back with the same plan, so the ratios to Nchan
compare measurements taken minutes apart on the same machine. A target that cannot
hold a size (not every subscriber connects) or fails to start is reported as failed
at that size, in the table and the JSON, and the run goes on with the others.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
from collections.abc import Iterator
from typing import Any

from bench import report
from bench.fanout import BenchError, Plan, free_port, measure
from tests.services import Postgres


@contextlib.contextmanager
def running_postgres(wanted: bool) -> Iterator[Postgres | None]:
    """A PostgreSQL cluster on loopback for the run, the same one the tests use."""
    if not wanted:
        yield None
        return
    server = Postgres(free_port()).start()
    try:
        yield server
    finally:
        server.remove()


async def one_size(plan: Plan, targets: list[str], postgres: Postgres | None) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    failed: dict[str, str] = {}
    for target in targets:
        print(
            f"measuring {target}: {plan.subscribers} subscribers, {plan.posts} posts ...",
            file=sys.stderr,
            flush=True,
        )
        database = None
        if postgres is not None and target.startswith("feed-pg"):
            database = postgres.new_database()
        try:
            rows.append(report.summarise(await measure(target, plan, database)))
        except BenchError as exc:
            # A target that cannot hold N (or fails to start) still leaves the others.
            print(f"bench: {target}: {exc}", file=sys.stderr, flush=True)
            failed[target] = str(exc)
    print(report.text(plan, rows, failed), flush=True)
    return {
        "plan": plan,
        "results": rows,
        "failed": failed,
        "nchan_ratios": report.nchan_ratios(rows),
        "ratios": report.ratios(rows),
    }


async def run(
    plan: Plan, sizes: list[int], targets: list[str]
) -> tuple[list[dict[str, Any]], bool]:
    """Every size in turn; returns the sizes' results and whether all were complete."""
    done = []
    wanted = any(t.startswith("feed-pg") for t in targets)
    with running_postgres(wanted) as postgres:
        for n in sizes:
            done.append(await one_size(dataclasses.replace(plan, subscribers=n), targets, postgres))
    complete = all(
        not size["failed"] and all(r["delivered"] == r["expected"] for r in size["results"])
        for size in done
    )
    return done, complete
