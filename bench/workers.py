"""The two-worker scenario: 39,000 streams on one port, feed against Nchan.

feed runs with ``FEED_WORKERS=2`` on SQLite with the Redis broker (and, if asked, on
PostgreSQL with its own broker); Nchan runs two nginx workers. One port each, so the
server spreads the connections itself. A process may hold 20,000 open files here, so
39,000 streams need both workers, and four load clients (``SUBSCRIBERS_PER_CLIENT``
each at most), each from its own loopback address (fanout.py, on several clients).

Rationale:

1. Memory is the growth of the whole process tree (feed's supervisor and workers;
   nginx's master and workers) over the subscribers, as an independent client counts
   it; the supervisor and the master add nothing per stream.
2. The spread is each worker's peak of open files during the run, less what it held
   before the clients came: its streams, give or take the odd database file.
3. Nchan's two workers listen with ``reuseport``, as feed's do (server.py, on the
   listening sockets): the same kernel spreading for both, so the ratio compares the
   servers, not the way connections are handed out.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from bench import nchan, report
from bench.fanout import (
    BenchError,
    Plan,
    _load,
    free_port,
    make_token,
    post,
    server_command,
    spawn,
    wait_listening,
)
from tests.services import Postgres, Valkey

SUBSCRIBERS = 39_000
WORKERS = 2
TARGETS = ("feed-w2-redis", "nchan-w2", "feed-w2-pg")
DEFAULT_TARGETS = "feed-w2-redis,nchan-w2"
P99_FACTOR = 1.2  # the target: feed's p99 at most this times Nchan's, at 39,000
POSTS = 20
INTERVAL = 0.15
CONNECT_TIMEOUT = 180.0
DRAIN = 60.0

# The fan-out's columns (report.py) but the time to publish, with what connected and
# how the streams spread over the workers.
COLUMNS = (
    ("target", "{}"),
    ("connected", "{}"),
    *[c for c in report.COLUMNS[1:] if c[0] != "post_p50_ms"],
    ("spread", "{}"),
)


def plan(subscribers: int, profile: str = "") -> Plan:
    return Plan(subscribers, POSTS, INTERVAL, 0, CONNECT_TIMEOUT, DRAIN, profile=profile)


def tree(pid: int) -> list[int]:
    """``pid`` and its children: the processes whose memory counts (1)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [pid, *(int(child) for child in children)]


def serving(pids: list[int]) -> list[int]:
    """The workers among a tree's children: not multiprocessing's resource tracker."""
    return [pid for pid in pids[1:] if b"resource_tracker" not in _cmdline(pid)]


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def open_files(pid: int) -> int:
    try:
        return len(list(Path(f"/proc/{pid}/fd").iterdir()))
    except OSError:
        return 0  # gone


async def watch_files(pids: list[int], peak: dict[int, int]) -> None:
    """Keep each worker's peak of open files, until cancelled (2)."""
    while True:
        for pid in pids:
            peak[pid] = max(peak.get(pid, 0), open_files(pid))
        await asyncio.sleep(0.5)  # sampling, not waiting for anything


@contextlib.asynccontextmanager
async def started(
    target: str, workdir: Path, port: int, broker: str, database: str | None
) -> AsyncIterator[tuple[list[int], str]]:
    """``target`` on ``port`` with both its workers up: the processes and a writer's token."""
    async with contextlib.AsyncExitStack() as stack:
        token = ""
        if target.startswith("nchan"):
            try:
                cmd, env = nchan.command(port, workdir, WORKERS), None
            except nchan.NchanMissing as exc:
                raise BenchError(str(exc)) from None
        else:
            extra = (("FEED_WORKERS", str(WORKERS)), ("FEED_BROKER_URL", broker))
            settings = dataclasses.replace(plan(1), env=extra)
            cmd, env = server_command("feed", port, workdir, database, settings)
            env["FEED_BROKER_URL"] = broker  # over the database's own, for PostgreSQL too
            token = await make_token(env)
        log = stack.enter_context((workdir / "server.log").open("ab"))
        proc = await stack.enter_async_context(spawn(cmd, env=env, stdout=log, stderr=log))
        await wait_listening(proc, port, workdir / "server.log")
        await post(port, lambda: "warm-up", token)  # every worker has started by now
        pids = tree(proc.pid)
        if len(serving(pids)) != WORKERS:
            raise BenchError(f"{target}: {len(serving(pids))} workers running, not {WORKERS}")
        yield pids, token


async def measure(
    target: str, subscribers: int, broker: str, database: str | None, profile: str = ""
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix=f"feed-bench-{target}-") as tmp:
        port = free_port()
        async with started(target, Path(tmp), port, broker, database) as (pids, token):
            workers = serving(pids)
            before = {pid: open_files(pid) for pid in workers}
            peak: dict[int, int] = {}
            watcher = asyncio.ensure_future(watch_files(workers, peak))
            try:
                # The load client's opening line and delivery checks: Nchan's or feed's.
                kind = "nchan" if target.startswith("nchan") else "feed"
                m = await _load(pids, [port], kind, plan(subscribers, profile), token, workers)
            finally:
                watcher.cancel()
    m.target = target
    row = report.summarise(m)
    row["spread"] = "/".join(str(peak.get(pid, 0) - before[pid]) for pid in workers)
    return row


async def run(
    subscribers: int, targets: list[str], profile: str = ""
) -> tuple[dict[str, Any], bool]:
    """Each target in turn; ``profile``: a directory to py-spy feed's workers into."""
    rows: list[dict[str, Any]] = []
    failed: dict[str, str] = {}
    valkey = Valkey(free_port()).start()
    postgres = Postgres(free_port()).start() if "feed-w2-pg" in targets else None
    try:
        for target in targets:
            print(f"two workers: {target}, {subscribers} streams ...", file=sys.stderr, flush=True)
            database = postgres.new_database() if postgres and target == "feed-w2-pg" else None
            broker = database or valkey.url
            try:
                rows.append(await measure(target, subscribers, broker, database, profile))
            except BenchError as exc:
                print(f"bench: {target}: {exc}", file=sys.stderr, flush=True)
                failed[target] = str(exc).split("\n")[0]
    finally:
        valkey.stop()
        if postgres is not None:
            postgres.remove()
    ratios = nchan_ratios(rows)
    print(f"\ntwo workers on one port, {subscribers} streams, {POSTS} posts {INTERVAL}s apart\n")
    print(report.table(rows, COLUMNS))
    for target, why in failed.items():
        print(f"{target}: FAILED, {why}")
    for name, found in ratios.items():
        met = "met" if found["p99"] <= P99_FACTOR else "NOT met"
        print(
            f"{name} / nchan-w2: p99 {found['p99']:.2f}x (target <= {P99_FACTOR}x: {met}), "
            f"RSS per stream {found['rss']:.2f}x"
        )
    complete = not failed and all(row["delivered_pct"] == 100 for row in rows)
    document = {"subscribers": subscribers, "results": rows, "failed": failed, "ratios": ratios}
    return document, complete


def nchan_ratios(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    by = {row["target"]: row for row in rows}
    ref = by.get("nchan-w2")
    if ref is None:
        return {}
    return {
        name: {
            "p99": row["p99_ms"] / ref["p99_ms"],
            "rss": row["rss_per_sub_kb"] / ref["rss_per_sub_kb"],
        }
        for name, row in by.items()
        if name != "nchan-w2"
    }
