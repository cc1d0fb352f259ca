"""``python -m bench``: feed against Nchan and a naive baseline, scenario by scenario.

    python -m bench fanout --subscribers 1000,5000,10000,19500
    python -m bench throughput
    python -m bench throughput --batch 1000 --posts 60000 --targets feed
    python -m bench storm
    python -m bench slow
    python -m bench reactions --reactors 1000 --watchers 5000
    python -m bench search --posts 20000   # search on both stores, live searches
    python -m bench workers      # 39,000 streams on two workers, feed and Nchan
    python -m bench all          # every scenario with its defaults (what `make bench` runs)

Without a scenario the options are the fan-out's (``python -m bench --subscribers
5000``), as before there were several. Each scenario prints a table and writes JSON to
bench/results/; the exit status is 1 if anything was not delivered.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

from bench import (
    plot,
    reactions,
    report,
    scaling,
    search,
    slow,
    storm,
    targets,
    throughput,
    workers,
)
from bench.fanout import TARGETS, BenchError, Plan
from bench.profile import shares

SCENARIOS = ("fanout", "throughput", "storm", "slow", "reactions", "search", "workers", "all")
MAX_SUBSCRIBERS = 19_500  # the server's open-files limit is 20,000
DEFAULT_SIZES = "1000,5000,10000,19500"
DEFAULT_TARGETS = "feed,nchan,baseline"
# The batch scenario in `all`: SQLite, where its target is set, with enough posts for
# several seconds at the target rate (and within FEED_POST_RATE's largest burst).
BATCH_RUN = ("--batch", "1000", "--posts", "60000", "--targets", "feed")


# What a scenario gives back: its document (also written to bench/results/) and
# whether everything was delivered.
Ran = tuple[dict[str, Any], bool]
Runner = Callable[[argparse.Namespace], Coroutine[Any, Any, Ran]]


def _sizes(text: str) -> list[int]:
    sizes = [int(part) for part in text.split(",") if part.strip()]
    if not sizes or not all(1 <= n <= MAX_SUBSCRIBERS for n in sizes):
        raise argparse.ArgumentTypeError(f"sizes must be 1..{MAX_SUBSCRIBERS}")
    return sizes


def _targets(text: str) -> list[str]:
    names = [t.strip() for t in text.split(",") if t.strip()]
    if not names or set(names) - set(TARGETS):
        raise argparse.ArgumentTypeError(f"a comma-separated subset of {', '.join(TARGETS)}")
    return names


def _worker_targets(text: str) -> list[str]:
    names = [t.strip() for t in text.split(",") if t.strip()]
    if not names or set(names) - set(workers.TARGETS):
        raise argparse.ArgumentTypeError(f"a comma-separated subset of {workers.TARGETS}")
    return names


def _fanout_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--subscribers", type=_sizes, default=DEFAULT_SIZES, help=f"default {DEFAULT_SIZES}"
    )
    parser.add_argument("--posts", type=int, default=20, help="default 20")
    parser.add_argument(
        "--rounds",
        type=int,
        default=0,
        help="each size's targets measured this many times, in turns (default: one per target)",
    )
    parser.add_argument(
        "--interval", type=float, default=0.15, help="seconds between posts (default 0.15)"
    )
    parser.add_argument(
        "--clients", type=int, default=0, help="load client processes (default 1 per 10,000)"
    )
    parser.add_argument(
        "--targets",
        type=_targets,
        default=DEFAULT_TARGETS,
        help=f"comma-separated, of {', '.join(TARGETS)} (default {DEFAULT_TARGETS})",
    )
    parser.add_argument("--connect-timeout", type=float, default=120.0)
    parser.add_argument(
        "--drain", type=float, default=30.0, help="seconds to wait after the last post"
    )
    parser.add_argument(
        "--plot",
        type=Path,
        default=None,
        help="where to draw p99 against subscribers (default: beside the JSON)",
    )
    parser.add_argument(
        "--profile", type=Path, default=None, help="DIR: py-spy feed's server while it fans out"
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="scenario", required=True)
    _fanout_options(sub.add_parser("fanout", help="latency, memory and CPU per subscriber"))
    tp = sub.add_parser("throughput", help="posts per second persisted and delivered")
    tp.add_argument("--posts", type=int, default=3000, help="default 3000")
    tp.add_argument("--within", type=float, default=60.0, help="seconds (default 60)")
    tp.add_argument(
        "--rounds",
        type=int,
        default=0,
        help="each target measured this many times, in turns (default: one per target)",
    )
    tp.add_argument(
        "--targets",
        type=_targets,
        default=None,
        help=f"default {','.join(throughput.TARGETS)}, or feed with --batch",
    )
    tp.add_argument(
        "--concurrency",
        type=int,
        default=None,
        help=f"default {throughput.CONCURRENCY}, or {throughput.BATCH_CONCURRENCY} with --batch",
    )
    tp.add_argument(
        "--batch",
        type=int,
        default=0,
        metavar="N",
        help="post through POST /api/posts:batch, N posts a request (1..1000)",
    )
    tp.add_argument(
        "--profile", type=Path, default=None, help="DIR: py-spy feed's server while it is posted to"
    )
    st = sub.add_parser("storm", help="10,000 reconnect at once after a restart")
    st.add_argument("--subscribers", type=int, default=storm.SUBSCRIBERS)
    st.add_argument("--missed", type=int, default=storm.MISSED)
    st.add_argument("--clients", type=int, default=storm.CLIENTS)
    st.add_argument(
        "--in-flight", type=int, default=0, help="reconnects per client at a time (default all)"
    )
    sl = sub.add_parser("slow", help="1%% of subscribers never read")
    sl.add_argument("--subscribers", type=int, default=slow.SUBSCRIBERS)
    rx = sub.add_parser("reactions", help="N react to one post within a second, M watch")
    rx.add_argument("--reactors", type=int, default=reactions.REACTORS)
    rx.add_argument("--watchers", type=int, default=reactions.WATCHERS)
    rx.add_argument("--spread", type=float, default=reactions.SPREAD_S, help="seconds (default 1)")
    rx.add_argument("--cut", type=int, default=reactions.CUT, help="watchers that resume mid-storm")
    se = sub.add_parser("search", help="search latency, index size, write cost, live searches")
    se.add_argument("--posts", type=int, default=1_000_000, help="corpus size (default 1,000,000)")
    se.add_argument("--stores", default="sqlite,postgresql", help="default sqlite,postgresql")
    se.add_argument(
        "--live-seconds",
        type=float,
        default=search.LIVE_SECONDS,
        help="seconds of posting per live run (0: no live searches)",
    )
    wk = sub.add_parser("workers", help="39,000 streams on two workers, feed and Nchan")
    wk.add_argument("--subscribers", type=int, default=workers.SUBSCRIBERS)
    wk.add_argument(
        "--targets",
        type=_worker_targets,
        default=_worker_targets(workers.DEFAULT_TARGETS),
        help=f"comma-separated, of {', '.join(workers.TARGETS)} ({workers.DEFAULT_TARGETS})",
    )
    wk.add_argument(
        "--profile", type=Path, default=None, help="DIR: py-spy each of feed's workers meanwhile"
    )
    al = sub.add_parser("all", help="every scenario with its defaults")
    _fanout_options(al)
    return parser


def parse(argv: Sequence[str]) -> argparse.Namespace:
    # The fan-out's options alone, as before scenarios existed.
    if not argv or (argv[0] not in SCENARIOS and argv[0] not in ("-h", "--help")):
        argv = ["fanout", *argv]
    args = _parser().parse_args(argv)
    for name in ("subscribers", "targets"):
        value = getattr(args, name, None)
        if isinstance(value, str):  # argparse does not convert a string default
            setattr(args, name, _sizes(value) if name == "subscribers" else _targets(value))
    return args


def fanout_plan(args: argparse.Namespace) -> Plan:
    if not 1 <= args.posts <= 1000 or args.clients < 0:
        raise SystemExit("--posts must be 1..1000 and --clients at least 0")
    if args.interval < 0 or args.connect_timeout <= 0 or args.drain <= 0:
        raise SystemExit("--interval, --connect-timeout and --drain must be positive")
    return Plan(
        args.subscribers[0],
        args.posts,
        args.interval,
        args.clients,
        args.connect_timeout,
        args.drain,
        profile=str(args.profile or ""),
    )


def summarise(profile: Path | None) -> None:
    """The top items of each profile in ``profile``, printed and written beside it."""
    for stacks in sorted(profile.glob("feed*.txt")) if profile else ():
        if not stacks.name.endswith(".top.txt"):
            found = shares(stacks).text()
            stacks.with_suffix(".top.txt").write_text(found + "\n")
            print(f"\nprofile ({stacks}):\n{found}")


async def fanout(args: argparse.Namespace) -> Ran:
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
    rounds = scaling.rounds_for(args.rounds, args.targets)
    sizes, complete = await scaling.run(fanout_plan(args), args.subscribers, args.targets, rounds)
    summarise(args.profile)
    document: dict[str, Any] = {"rounds": rounds, "sizes": sizes}
    path = report.write_json("fanout", document)
    print(f"results: {path}")
    png = args.plot or path.with_suffix(".png")
    plan = fanout_plan(args)
    title = (
        f"Fan-out p99: {plan.posts} posts {plan.interval * 1000:.0f} ms apart"
        f"{f', {rounds} rounds' if rounds > 1 else ''}, commit {report.commit()}"
    )
    if plot.p99(sizes, png, title):
        print(f"plot: {png}")
        document["plot"] = str(png)
    return document, complete


async def run_throughput(args: argparse.Namespace) -> Ran:
    default = throughput.BATCH_CONCURRENCY if args.batch else throughput.CONCURRENCY
    targets = args.targets or (["feed"] if args.batch else list(throughput.TARGETS))
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
    document, complete = await throughput.run(
        args.posts,
        args.within,
        targets,
        args.concurrency or default,
        args.profile,
        args.batch,
        scaling.rounds_for(args.rounds, targets),
    )
    print(f"results: {report.write_json('throughput', document)}")
    return document, complete


async def run_storm(args: argparse.Namespace) -> Ran:
    document, complete = await storm.run(
        args.subscribers, args.missed, args.clients, args.in_flight
    )
    print(f"results: {report.write_json('storm', document)}")
    return document, complete


async def run_slow(args: argparse.Namespace) -> Ran:
    document, complete = await slow.run(args.subscribers)
    print(f"results: {report.write_json('slow', document)}")
    return document, complete


async def run_reactions(args: argparse.Namespace) -> Ran:
    document, complete = await reactions.run(args.reactors, args.watchers, args.spread, args.cut)
    print(f"results: {report.write_json('reactions', document)}")
    return document, complete


async def run_search(args: argparse.Namespace) -> Ran:
    stores = [s.strip() for s in args.stores.split(",") if s.strip()]
    if not 1_000 <= args.posts <= 2_000_000 or set(stores) - {"sqlite", "postgresql"}:
        raise SystemExit("--posts must be 1,000..2,000,000; --stores of sqlite,postgresql")
    if not 0 <= args.live_seconds <= 120:
        raise SystemExit("--live-seconds must be 0..120")
    document = await search.run(args.posts, stores, args.live_seconds)
    print(f"results: {report.write_json('search', document)}")
    return document, True


async def run_workers(args: argparse.Namespace) -> Ran:
    if not 2 <= args.subscribers <= workers.SUBSCRIBERS:
        raise SystemExit(f"--subscribers must be 2..{workers.SUBSCRIBERS}")
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
    document, complete = await workers.run(args.subscribers, args.targets, str(args.profile or ""))
    print(f"results: {report.write_json('workers', document)}")
    summarise(args.profile)
    return document, complete


async def run_all(args: argparse.Namespace) -> Ran:
    steps: list[tuple[str, Runner, argparse.Namespace]] = [
        ("fanout", fanout, args),
        ("throughput", run_throughput, parse(["throughput"])),
        ("batch", run_throughput, parse(["throughput", *BATCH_RUN])),
        ("storm", run_storm, parse(["storm"])),
        ("slow", run_slow, parse(["slow"])),
        ("reactions", run_reactions, parse(["reactions"])),
        ("search", run_search, parse(["search"])),
        ("workers", run_workers, parse(["workers"])),
    ]
    complete = True
    documents: dict[str, dict[str, Any]] = {}
    for name, step, options in steps:
        try:
            document, done = await step(options)
            documents[name] = report.plain(document)
            complete = complete and done
        except BenchError as exc:
            # One scenario failing still runs the others; the exit status says so.
            print(f"bench: {exc}", file=sys.stderr, flush=True)
            complete = False
    found = targets.checks(documents)
    print(f"\n{targets.text(found)}\n\n{targets.markdown(found)}\n")
    summary = {"targets": targets.document(found), "complete": complete}
    print(f"results: {report.write_json('all', summary)}")
    return summary, complete


RUNNERS: dict[str, Runner] = {
    "fanout": fanout,
    "throughput": run_throughput,
    "storm": run_storm,
    "slow": run_slow,
    "reactions": run_reactions,
    "search": run_search,
    "workers": run_workers,
    "all": run_all,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    try:
        _document, complete = asyncio.run(RUNNERS[args.scenario](args))
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130  # the servers and clients were stopped on the way out
    # Incomplete delivery is a failure whatever the timings say.
    return 0 if complete else 1


if __name__ == "__main__":
    sys.exit(main())
