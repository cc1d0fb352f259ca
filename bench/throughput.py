"""The publish-throughput scenario: how many posts a second feed persists and delivers,
against Nchan doing the same in the same run.

``--concurrency`` HTTP clients (default 16) post as fast as answers come back, over keep-alive
connections, until ``posts`` posts are in or ``within`` seconds have passed; 100
subscribers, spread over as many load-client processes as the rate needs (7), receive
them. Nchan (memory only) is measured
first with the same client and subscribers, then feed on each store. Reported, per target:

- persisted per second: posts answered 201 (committed; Nchan: accepted) / time from
  the first request to the last answer; feed's posts are then read back page by page
  through the API and every marker must be there;
- delivered per second: posts / time from the first request until every subscriber
  has every post;
- the publish latency (request written to answer read), p50 and p99;
- the server's CPU time per post while posting (every thread's; Nchan's worker), which
  moves less than the rates when something else shares the machine;
- the share of the machine's two cores each side used while posting (8): the server,
  the posting client, the subscribers' load clients, and the machine as a whole;
- loss: (subscriber, post) pairs missing, which must be zero; and the latency of
  each post to its subscribers while the store is this busy;
- the ratio of feed's rate to Nchan's: the lower of persisted and delivered, each
  side's, since a post counts once it is both.

Rationale:

1. Raw keep-alive HTTP/1.1 on asyncio streams, not an HTTP library: the posting
   clients share the two cores with the server, and the cheaper they are, the more of
   the measurement is the server.
2. Every post is an ordinary ``POST /api/channels/general/posts``: rendering, the
   sanitiser, the transaction with its event row, the broker hint and the fan-out.
3. Bounded twice: a fixed number of posts and a deadline. What missed the deadline
   is reported, not waited for.
4. With ``--profile DIR``, py-spy samples feed's server process (every thread) while
   the posts go in, and writes one collapsed-stack file per target to DIR, with its
   top items beside it (bench/profile.py). It samples without pausing the process,
   but it takes CPU of its own: the figures of a profiled run are not the ones to report.
   Only a target's first round is sampled (10).
5. Nchan publishes on the same path as feed's API (nchan.conf) and relays the POST
   body as the event's data, so the posting and the receiving code are the same for
   both. Its answer is not JSON and there is nothing to read back: it keeps no posts.
6. With ``--batch N``, each posting connection sends ``POST /api/posts:batch`` with N
   posts at a time instead, and a post counts as persisted when its item's result is
   201; its publish latency is its request's. Nchan has no batch endpoint, so a batch
   run measures feed alone, against an absolute target (``BATCH_TARGET_PER_S``, for
   SQLite). It asks for the minimal answer (``Prefer: return=minimal``): it needs
   each item's status only, as a client that sent the posts would.
7. One load-client process keeps up with about ``PAIRS_PER_CLIENT_S`` (post,
   subscriber) pairs a second when they come in runs (a batch's events, many to a
   read), or ``READS_PER_CLIENT_S`` reads when each read is about one event (single
   posts): its cost is mostly per read (9). Beyond that it falls behind, and the
   server rightly cuts its subscribers as slow readers, so the client would be what
   is measured. The subscribers are spread over enough processes for the rate a run
   aims at (Nchan's for single posts, ``BATCH_TARGET_PER_S`` for batches), and their
   counts are added up: delivered is every process's pairs, the last delivery the
   latest of any.
8. The posting client is Python too, and shares the two cores with the server. Which
   side a rate is bound by is read from the CPU each used while posting, as a share of
   the machine (every core's time over the posting's wall time): a client near a
   whole core while the machine is not full is what limits that target. The machine's
   own share, from ``/proc/stat``, shows what else was running.
9. The subscribers' load clients report what each delivered (subscriber, post) pair
   cost them in CPU, from the first post until they have checked the last: a client
   that costs too much per pair measures itself, not the server. They prove runs of
   ids rather than read every event (bench/client.py, on ``--runs``).
10. Rounds. A round of 3,000 single posts lasts about a second, and this machine's
   speed moves from one second to the next: the same code measured 0.97x and 1.71x
   Nchan's rate within ten minutes (docs/benchmarks.md, on rounds). So each target
   posts in rounds, by default one per target, the order rotated by one each round,
   as the fan-out's (bench/scaling.py, on rounds), and its rounds are pooled: its rate
   is every round's posts over every round's time, its percentiles over every round's
   posts. Each round's own rate is kept beside it (``round_persisted_per_s``). Before
   the rounds, each target posts ``WARM_UP_POSTS`` that are not counted, as the
   fan-out warms up (bench/scaling.py, on rounds).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import math
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import report
from bench.fanout import (
    MARGIN,
    BenchError,
    Plan,
    cpu_s,
    free_port,
    post,
    read_all,
    start_clients,
    start_server,
    tell,
)
from bench.posting import post_batches, post_many, stored_markers
from bench.profile import sampling, shares
from bench.report import percentile
from bench.scaling import running_postgres, turn_order

CONCURRENCY = 16
SUBSCRIBERS = 100
TARGETS = ("nchan", "feed", "feed-pg")
# The lowest ratio of feed's rate to Nchan's that meets the target, per store.
TARGET_RATIO = {"feed": 1.0, "feed-pg": 0.5}
TARGET_PUBLISH_P99_MS = 25.0
BATCH_TARGET_PER_S = 20_000.0  # (6)
BATCH_CONCURRENCY = 4
# What one load-client process reads a second with room to spare (7): pairs in runs
# (a quarter of a microsecond each), or reads of one event (about two microseconds).
# And the rate a single-post run aims at (about Nchan's).
PAIRS_PER_CLIENT_S = 1_000_000
READS_PER_CLIENT_S = 300_000
SINGLE_RATE_PER_S = 5_000.0
WARM_UP_POSTS = 300  # each target's, before its rounds, not counted (10)


async def measure(
    target: str,
    posts: int,
    within: float,
    concurrency: int,
    database: str | None = None,
    profile: Path | None = None,
    batch: int = 0,
) -> Posted:
    aim = BATCH_TARGET_PER_S if batch else SINGLE_RATE_PER_S
    plan = Plan(SUBSCRIBERS, posts, 0.0, load_clients(aim, batch > 1), 60.0, within)
    with tempfile.TemporaryDirectory(prefix=f"feed-bench-{target}-") as tmp:
        port = free_port()
        async with contextlib.AsyncExitStack() as stack:
            server = await start_server(stack, target, port, Path(tmp), database)
            token = server.token
            await post(port, lambda: "warm-up", token)
            clients = await start_clients(stack, target, [port], plan, "--runs")
            ready = await read_all(clients, plan.connect_timeout + MARGIN)
            if sum(r["ready"] for r in ready) < SUBSCRIBERS:
                raise BenchError(f"{target}: not every subscriber connected")
            started_ns = time.monotonic_ns()
            deadline = time.monotonic() + within
            cpu_before = cpu_s(server.measured)
            shares_before = _cpu_now(clients)
            with contextlib.ExitStack() as sampler:
                if profile is not None and target != "nchan":  # rationale 4
                    sampler.enter_context(sampling(server.measured, profile / f"{target}.txt"))
                if batch:
                    created, refused, seconds, publish_ms = await post_batches(
                        port, token, posts, deadline, concurrency, batch
                    )
                else:
                    created, refused, seconds, publish_ms = await post_many(
                        port, token, posts, deadline, concurrency
                    )
            cpu = cpu_s(server.measured) - cpu_before
            used = cpu_shares(shares_before, _cpu_now(clients), cpu)
            await tell(clients, f"posted {created + refused}")
            result = added(await read_all(clients, within + MARGIN))
            # Until every pair is counted and checked: what the client costs (9).
            readers_s = sum(cpu_s(c.pid) for c in clients) - shares_before["subscribers"]
            # Nchan keeps no posts to read back (rationale 5).
            stored = created if target == "nchan" else await stored_markers(port, posts)
            await tell(clients, "close")
    return Posted(
        target,
        posts,
        concurrency,
        batch,
        created,
        refused,
        stored,
        seconds,
        (result["last_at_ns"] - started_ns) / 1e9,
        publish_ms,
        cpu,
        used,
        result,
        readers_s,
    )


@dataclass(slots=True)
class Posted:
    """One target's round of posting, as measured (``pooled_row`` makes the figures)."""

    target: str
    posts: int
    concurrency: int
    batch: int
    created: int
    refused: int
    stored: int
    seconds: float  # from the first request to the last answer
    delivered_s: float  # from the first request until every subscriber had every post
    publish_ms: list[float]
    cpu_s: float
    shares: dict[str, float]  # (8)
    delivery: dict[str, Any]  # the load clients' counts, added up (7)
    readers_s: float


def pooled_row(rounds: list[Posted]) -> dict[str, Any]:
    """The figures of one target's rounds, pooled (10): rates over every round's posts
    and time, percentiles over every round's posts and deliveries."""
    first = rounds[0]
    created = sum(r.created for r in rounds)
    seconds = sum(r.seconds for r in rounds)
    delivered_s = sum(r.delivered_s for r in rounds)
    delivered = sum(r.delivery["delivered"] for r in rounds)
    expected = sum(r.delivery["expected"] for r in rounds)
    publish_ms = sorted(ms for r in rounds for ms in r.publish_ms)
    latency: collections.Counter[int] = collections.Counter()
    for r in rounds:
        latency.update(r.delivery["latency_counts"])
    # Shares of the machine over the rounds' posting time together (8).
    used = {
        key: sum(r.shares[key] * r.seconds for r in rounds) / (seconds or 1.0)
        for key in first.shares
    }
    return {
        "target": first.target,
        "posts": sum(r.posts for r in rounds),
        "rounds": len(rounds),
        "concurrency": first.concurrency,
        "batch": first.batch,
        "created": created,
        "refused": sum(r.refused for r in rounds),
        "stored": sum(r.stored for r in rounds),
        "persisted_per_s": created / seconds if seconds > 0 else 0.0,
        "server_cpu_us_per_post": sum(r.cpu_s for r in rounds) * 1e6 / created if created else 0.0,
        "delivered": delivered,
        "expected": expected,
        "lost_pairs": expected - delivered,
        "broken": sum(r.delivery["broken"] for r in rounds),
        "client_us_per_pair": sum(r.readers_s for r in rounds) * 1e6 / delivered
        if delivered
        else 0.0,
        "delivered_per_s": created / delivered_s if delivered and delivered_s > 0 else 0.0,
        "round_persisted_per_s": [r.created / r.seconds if r.seconds > 0 else 0.0 for r in rounds],
        "publish_p50_ms": percentile(publish_ms, 0.5),
        "publish_p99_ms": percentile(publish_ms, 0.99),
        "p50_ms": counted_percentile(latency, 0.5) / 1000,
        "p99_ms": counted_percentile(latency, 0.99) / 1000,
    } | used


def machine_busy_s() -> tuple[float, float]:
    """(busy, wall) seconds of every core together so far, from ``/proc/stat`` (8)."""
    fields = [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    ticks = os.sysconf("SC_CLK_TCK")
    idle = fields[3] + fields[4]  # idle and iowait
    return (sum(fields) - idle) / ticks, sum(fields) / ticks


def _cpu_now(clients: list[asyncio.subprocess.Process]) -> dict[str, float]:
    busy, wall = machine_busy_s()
    return {
        "poster": cpu_s(os.getpid()),
        "subscribers": sum(cpu_s(c.pid) for c in clients),
        "machine": busy,
        "cores_s": wall,
    }


def cpu_shares(
    before: dict[str, float], after: dict[str, float], server_s: float
) -> dict[str, float]:
    """Each side's CPU while posting as a share of the whole machine (8)."""
    cores_s = (after["cores_s"] - before["cores_s"]) or 1.0
    return {
        "server_share": server_s / cores_s,
        "poster_share": (after["poster"] - before["poster"]) / cores_s,
        "subscribers_share": (after["subscribers"] - before["subscribers"]) / cores_s,
        "machine_share": (after["machine"] - before["machine"]) / cores_s,
    }


def load_clients(rate_per_s: float, runs: bool) -> int:
    """Load-client processes for ``SUBSCRIBERS`` at ``rate_per_s`` posts a second, the
    events coming in ``runs`` or one at a time (7)."""
    each = PAIRS_PER_CLIENT_S if runs else READS_PER_CLIENT_S
    return max(1, -(-int(SUBSCRIBERS * rate_per_s) // each))


def added(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The load clients' delivery counts as one (7); their witnesses must have seen
    the same run of ids (bench/runs.py), or every other process counts as broken."""
    latency: collections.Counter[int] = collections.Counter()
    for r in results:
        latency.update({int(us): n for us, n in r["latency_counts"].items()})
    astray = len(results) - collections.Counter(r["run"] for r in results).most_common(1)[0][1]
    return {
        "delivered": sum(r["delivered"] for r in results),
        "expected": sum(r["expected"] for r in results),
        "broken": sum(r["broken"] for r in results) + astray,
        "last_at_ns": max(r["last_at_ns"] for r in results),
        "latency_counts": latency,
    }


def counted_percentile(counts: dict[int, int], q: float) -> float:
    """Nearest-rank percentile of values given as {value: how many} (NaN if none)."""
    total = sum(counts.values())
    if not total:
        return math.nan
    rank, seen = max(1, math.ceil(q * total)), 0
    for value in sorted(counts):
        seen += counts[value]
        if seen >= rank:
            return float(value)
    raise AssertionError("unreachable: the counts add up to total")


def rate(row: dict[str, Any]) -> float:
    """Posts a second both persisted and delivered: the lower of the two, as the
    ratio to Nchan takes it."""
    return float(min(row["persisted_per_s"], row["delivered_per_s"]))


def compare(rows: list[dict[str, Any]]) -> None:
    """Add each row's ratio to Nchan's rate, when Nchan was measured."""
    nchan = next((r for r in rows if r["target"] == "nchan"), None)
    for row in rows:
        row["over_nchan"] = rate(row) / rate(nchan) if nchan and rate(nchan) > 0 else None


def verdict(row: dict[str, Any]) -> str | None:
    """Whether ``row`` meets its store's target, or None where no target is set."""
    wanted = TARGET_RATIO.get(row["target"])
    if wanted is None or row["over_nchan"] is None:
        return None
    ok = (
        row["over_nchan"] >= wanted
        and row["publish_p99_ms"] <= TARGET_PUBLISH_P99_MS
        and row["lost_pairs"] == 0
        and row.get("broken", 0) == 0
        and row["stored"] == row["created"]
    )
    return (
        f"target >= {wanted:.1f}x Nchan, publish p99 <= {TARGET_PUBLISH_P99_MS:.0f} ms, "
        f"nothing lost: {'met' if ok else 'MISSED'}"
    )


def batch_verdict(row: dict[str, Any]) -> str | None:
    """Whether a batch run on SQLite meets its absolute target (6)."""
    if row["target"] != "feed":
        return None
    ok = rate(row) >= BATCH_TARGET_PER_S and row["lost_pairs"] == 0
    ok = ok and row.get("broken", 0) == 0
    ok = ok and row["stored"] == row["created"]
    return f"target >= {BATCH_TARGET_PER_S:.0f}/s, nothing lost: {'met' if ok else 'MISSED'}"


def summarise(profile: Path, targets: list[str]) -> None:
    """Each profiled target's top items, printed and written beside its stacks."""
    for target in targets:
        found = shares(profile / f"{target}.txt").text()
        (profile / f"{target}.top.txt").write_text(found + "\n")
        print(f"\nprofile of {target} while posting ({profile / target}.txt):\n{found}")


COLUMNS = (
    ("target", "{}"),
    ("posts", "{}"),
    ("created", "{}"),
    ("stored", "{}"),
    ("persisted_per_s", "{:.0f}"),
    ("delivered_per_s", "{:.0f}"),
    ("server_cpu_us_per_post", "{:.0f}"),
    ("server_share", "{:.0%}"),
    ("poster_share", "{:.0%}"),
    ("subscribers_share", "{:.0%}"),
    ("client_us_per_pair", "{:.2f}"),
    ("machine_share", "{:.0%}"),
    ("lost_pairs", "{}"),
    ("broken", "{}"),
    ("publish_p50_ms", "{:.1f}"),
    ("publish_p99_ms", "{:.1f}"),
    ("p50_ms", "{:.1f}"),
    ("p99_ms", "{:.1f}"),
)


async def run(
    posts: int,
    within: float,
    targets: list[str],
    concurrency: int = CONCURRENCY,
    profile: Path | None = None,
    batch: int = 0,
    rounds: int = 1,
) -> tuple[dict[str, Any], bool]:
    if set(targets) - set(TARGETS):
        raise BenchError(f"throughput measures {', '.join(TARGETS)}: the store is what it loads")
    if batch and "nchan" in targets:
        raise BenchError("Nchan has no batch endpoint: a batch run measures feed (rationale 6)")
    posted: dict[str, list[Posted]] = {target: [] for target in targets}
    with running_postgres("feed-pg" in targets) as postgres:
        for target in targets:  # a short round of each first, not counted (10)
            print(f"throughput: {target}, warming up, not counted ...", file=sys.stderr)
            database = postgres.new_database() if postgres and target == "feed-pg" else None
            warm = min(posts, WARM_UP_POSTS)
            await measure(target, warm, within, concurrency, database, None, batch)
        for turn in range(rounds):
            for target in turn_order(targets, turn):  # (10)
                again = f", round {turn + 1} of {rounds}" if rounds > 1 else ""
                print(
                    f"throughput: {target}, {posts} posts{again} ...", file=sys.stderr, flush=True
                )
                database = postgres.new_database() if postgres and target == "feed-pg" else None
                # A profile samples the first round only: a later one would overwrite it.
                sampled = profile if turn == 0 else None
                posted[target].append(
                    await measure(target, posts, within, concurrency, database, sampled, batch)
                )
    rows = [pooled_row(done) for done in posted.values()]
    compare(rows)
    how = f" in batches of {batch}" if batch else ""
    print(
        f"\npublish throughput{how}: {concurrency} concurrent posting connections, "
        f"{SUBSCRIBERS} subscribers, at most {posts} posts in {within:.0f} s"
        f"{f' in each of {rounds} rounds' if rounds > 1 else ''}\n"
    )
    print(report.table(rows, COLUMNS))
    for row in rows:
        summary = (
            f"{row['target']}: {row['persisted_per_s']:.0f} posts/s persisted, "
            f"{row['delivered_per_s']:.0f}/s delivered with {row['lost_pairs']} lost "
            f"and {row['broken']} out of order or doubled, "
            f"publish p99 {row['publish_p99_ms']:.1f} ms"
        )
        if row["over_nchan"] is not None and row["target"] != "nchan":
            summary += f", {row['over_nchan']:.2f}x Nchan"
        if rounds > 1:
            each = ", ".join(f"{r:.0f}" for r in row["round_persisted_per_s"])
            summary += f" (rounds: {each}/s persisted)"
        found = batch_verdict(row) if batch else verdict(row)
        print(summary + (f" ({found})" if found else ""))
    if profile is not None:
        summarise(profile, [t for t in targets if t != "nchan"])
    complete = all(
        r["lost_pairs"] == 0 and r["broken"] == 0 and r["stored"] == r["created"] for r in rows
    )
    return {
        "posts": posts,
        "rounds": rounds,
        "within_s": within,
        "concurrency": concurrency,
        "batch": batch,
        "results": rows,
    }, complete
