"""``python -m bench``: feed's fan-out against the naive baseline, in one run.

Example: ``make bench BENCH_ARGS="--subscribers 5000"``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import Iterator, Sequence

from bench import report
from bench.fanout import TARGETS, BenchError, Plan, free_port, measure
from tests.services import Postgres

MAX_SUBSCRIBERS = 10_000  # the open-files limit is 20,000 per process


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--subscribers", type=int, default=1000, help="default 1000")
    parser.add_argument("--posts", type=int, default=20, help="default 20")
    parser.add_argument(
        "--interval", type=float, default=0.15, help="seconds between posts (default 0.15)"
    )
    parser.add_argument(
        "--clients", type=int, default=1, help="load client processes sharing the subscribers"
    )
    parser.add_argument(
        "--targets",
        default=",".join(TARGETS),
        help="comma-separated (default " + ",".join(TARGETS) + ")",
    )
    parser.add_argument("--connect-timeout", type=float, default=120.0)
    parser.add_argument(
        "--drain", type=float, default=30.0, help="seconds to wait after the last post"
    )
    return parser


def parse(argv: Sequence[str] | None) -> tuple[Plan, list[str]]:
    parser = _parser()
    args = parser.parse_args(argv)
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    if not targets or set(targets) - set(TARGETS):
        parser.error(f"--targets takes a comma-separated subset of {', '.join(TARGETS)}")
    if not 1 <= args.subscribers <= MAX_SUBSCRIBERS:
        parser.error(f"--subscribers must be between 1 and {MAX_SUBSCRIBERS}")
    if not 1 <= args.posts <= 1000 or not 1 <= args.clients <= args.subscribers:
        parser.error("--posts must be 1..1000 and --clients 1..subscribers")
    if args.interval < 0 or args.connect_timeout <= 0 or args.drain <= 0:
        parser.error("--interval, --connect-timeout and --drain must be positive")
    plan = Plan(
        args.subscribers, args.posts, args.interval, args.clients, args.connect_timeout, args.drain
    )
    return plan, targets


async def run(plan: Plan, targets: list[str]) -> list[dict[str, object]]:
    rows = []
    with contextlib.ExitStack() as stack:
        postgres = None
        if any(t.startswith("feed-pg") for t in targets):
            postgres = stack.enter_context(running_postgres())
        for target in targets:
            print(
                f"measuring {target}: {plan.subscribers} subscribers, {plan.posts} posts ...",
                file=sys.stderr,
                flush=True,
            )
            database = None
            if postgres is not None and target.startswith("feed-pg"):
                database = postgres.new_database()
            rows.append(report.summarise(await measure(target, plan, database)))
    return rows


@contextlib.contextmanager
def running_postgres() -> Iterator[Postgres]:
    """A PostgreSQL cluster on loopback for the run, the same one the tests use."""
    server = Postgres(free_port()).start()
    try:
        yield server
    finally:
        server.remove()


def main(argv: Sequence[str] | None = None) -> int:
    plan, targets = parse(argv)
    try:
        rows = asyncio.run(run(plan, targets))
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130  # the servers and clients were stopped on the way out
    found = report.ratios(rows)
    print(report.text(plan, rows, found))
    print(f"results: {report.write_json(plan, rows, found)}")
    # Incomplete delivery is a failure whatever the timings say.
    return 0 if all(row["delivered"] == row["expected"] for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
