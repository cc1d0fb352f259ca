"""The fan-out scenario: every target at every size, one after the other, in one run.

At each size the targets run back to back with the same plan, so the ratios to Nchan
compare measurements taken minutes apart on the same machine. A target that cannot
hold a size (not every subscriber connects) or fails to start is reported as failed
at that size, in the table and the JSON, and the run goes on with the others.

On rounds. This machine's speed drifts from one minute to the next, and the same code
measured against Nchan at one size a minute apart moved by 10% and more; a target
measured first also seemed to fare worse than one measured after another
(docs/benchmarks.md, on rounds). So every size measures its targets in rounds, by
default as many as there are targets, the order rotated by one each round (``A B C``,
``B C A``, ``C A B``: ``turn_order``): every target runs once in every place, and a
slow minute or a first place weighs on each alike. A target's rounds are then pooled
(``fanout.pooled``): its p99 is over every round's deliveries, as one run with that
many more posts would be. Each round's own p99 is kept beside it (``round_p99_ms``),
so the spread between rounds is there to see. Before the first size, every target
runs one short round that is not counted (``warm_up``): the very first measurement of
a run seemed to do worst (feed's, where it went first, at 1,000: 1.20x and 1.54x
Nchan's p99, against 0.89-1.15x in its later rounds), and rotating the order cannot
spread that over the targets, since only one round of a run is its first.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
from collections.abc import Iterator, Sequence
from typing import Any

from bench import report
from bench.fanout import BenchError, Measurement, Plan, free_port, measure, pooled
from tests.services import Postgres

# The most rounds a scenario runs (on rounds).
MAX_ROUNDS = 10
# The fan-out's round before the first size, not counted (on rounds).
WARM_UP_SUBSCRIBERS = 1000
WARM_UP_POSTS = 5


def rounds_for(asked: int, targets: Sequence[str]) -> int:
    """The rounds a scenario runs: ``asked``, or one per target when 0 (on rounds)."""
    rounds = asked or len(targets)
    if not 1 <= rounds <= MAX_ROUNDS:
        raise SystemExit(f"--rounds must be 1..{MAX_ROUNDS}, or 0 for one per target")
    return rounds


def turn_order(targets: Sequence[str], turn: int) -> list[str]:
    """The targets in the order of round ``turn``: rotated by one each round, so that
    over as many rounds as targets each runs once in every place (on rounds)."""
    k = turn % len(targets)
    return [*targets[k:], *targets[:k]]


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


async def one_size(
    plan: Plan, targets: list[str], postgres: Postgres | None, rounds: int = 1
) -> dict[str, Any]:
    measured: dict[str, list[Measurement]] = {target: [] for target in targets}
    failed: dict[str, str] = {}
    for turn in range(rounds):
        for target in turn_order(targets, turn):
            if target in failed:
                continue
            print(
                f"measuring {target}: {plan.subscribers} subscribers, {plan.posts} posts"
                f"{f', round {turn + 1} of {rounds}' if rounds > 1 else ''} ...",
                file=sys.stderr,
                flush=True,
            )
            # A profile samples the first round only: a later one would overwrite it.
            profiled = plan if turn == 0 else dataclasses.replace(plan, profile="")
            try:
                measured[target].append(
                    await measure(target, profiled, _database(postgres, target))
                )
            except BenchError as exc:
                # A target that cannot hold N (or fails to start) still leaves the others.
                print(f"bench: {target}: {exc}", file=sys.stderr, flush=True)
                failed[target] = str(exc)
    rows = []
    for target, done in measured.items():
        if target in failed or not done:
            continue
        row = report.summarise(pooled(done))
        row["round_p99_ms"] = [report.summarise(m)["p99_ms"] for m in done]
        rows.append(row)
    print(report.text(plan, rows, failed, rounds), flush=True)
    return {
        "plan": plan,
        "results": rows,
        "failed": failed,
        "nchan_ratios": report.nchan_ratios(rows),
        "ratios": report.ratios(rows),
    }


def _database(postgres: Postgres | None, target: str) -> str | None:
    """A fresh database for a PostgreSQL target; None for the others."""
    if postgres is not None and target.startswith("feed-pg"):
        return postgres.new_database()
    return None


async def warm_up(plan: Plan, targets: list[str], postgres: Postgres | None) -> None:
    """One short round of every target, not counted (on rounds)."""
    subscribers = min(WARM_UP_SUBSCRIBERS, plan.subscribers)
    short = dataclasses.replace(plan, subscribers=subscribers, posts=WARM_UP_POSTS, profile="")
    for target in targets:
        print(f"warming up: {target}, not counted ...", file=sys.stderr, flush=True)
        try:
            await measure(target, short, _database(postgres, target))
        except BenchError as exc:  # its rounds will say so, counted
            print(f"bench: warming up {target}: {exc}", file=sys.stderr, flush=True)


async def run(
    plan: Plan, sizes: list[int], targets: list[str], rounds: int = 1
) -> tuple[list[dict[str, Any]], bool]:
    """Every size in turn, each in ``rounds`` rounds; returns the sizes' results and
    whether all were complete."""
    done = []
    wanted = any(t.startswith("feed-pg") for t in targets)
    with running_postgres(wanted) as postgres:
        await warm_up(plan, targets, postgres)
        for n in sizes:
            sized = dataclasses.replace(plan, subscribers=n)
            done.append(await one_size(sized, targets, postgres, rounds))
    complete = all(
        not size["failed"] and all(r["delivered"] == r["expected"] for r in size["results"])
        for size in done
    )
    return done, complete
