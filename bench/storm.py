"""The connect-storm scenario: a restart, missed posts, and everyone back at once.

1. feed (SQLite, in a temporary directory) starts; 10,000 subscribers connect, from
   two load-client processes that track the last ``id:`` each stream has seen.
2. One post reaches them all (so each knows a real last id).
3. feed is stopped (SIGTERM: it ends every stream) and started again on the same port
   and the same database.
4. 100 posts are made while nobody is connected.
5. Every subscriber reconnects at the same moment with ``Last-Event-ID``, as
   browsers do after a restart (no connection gate in the clients); one that fails
   tries again after the stream's ``retry:`` interval, as an EventSource does.
6. Measured from that moment: until every stream is open again ("live"), and until
   every subscriber has every missed post ("caught up"). Exactness: every subscriber
   must hold each missed post, and no id may arrive that is not newer than the last
   one that stream saw (a replayed old event or a duplicate).
7. One more post checks that every stream is live after the replay, and how fast.

The target is caught up within 10 s.
"""

from __future__ import annotations

import contextlib
import functools
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench import report
from bench.client import marker
from bench.fanout import (
    MARGIN,
    BenchError,
    Plan,
    free_port,
    post,
    read_all,
    start_clients,
    start_server,
    tell,
)
from bench.report import percentile

SUBSCRIBERS = 10_000
MISSED = 100
CLIENTS = 2
TARGET_S = 10.0
RETRY_S = 2.0  # feed's retry: hint (FEED_RETRY_MS): an EventSource waits this long
CONNECT_TIMEOUT = 120.0  # for the first connect and for the reconnect
DRAIN = 30.0


async def posted(clients: list[Any], count: int) -> list[dict[str, Any]]:
    """Tell the clients posts 0..count-1 exist; their tallies once all arrived."""
    await tell(clients, f"posted {count}")
    return await read_all(clients, DRAIN + MARGIN)


async def stop(first: contextlib.AsyncExitStack) -> float:
    """Stop the running server (its stack) and return how long the stop took."""
    started = time.monotonic()
    await first.aclose()
    return time.monotonic() - started


def listen_overflows() -> int:
    """The kernel's count of connections dropped because a listen queue was full."""
    lines = Path("/proc/net/netstat").read_text().splitlines()
    for names, values in zip(lines[::2], lines[1::2], strict=True):
        if names.startswith("TcpExt:"):
            table = dict(zip(names.split()[1:], values.split()[1:], strict=True))
            return int(table.get("ListenOverflows", 0))
    return 0


async def measure(subscribers: int, missed: int, clients_n: int, gate: int) -> dict[str, Any]:
    plan = Plan(subscribers, missed + 2, 0.0, clients_n, CONNECT_TIMEOUT, DRAIN)
    port = free_port()
    out: dict[str, Any] = {
        "subscribers": subscribers,
        "missed": missed,
        "clients": clients_n,
        "reconnects_in_flight": gate or "all",
    }
    with tempfile.TemporaryDirectory(prefix="feed-bench-storm-") as tmp:
        workdir = Path(tmp)
        async with contextlib.AsyncExitStack() as stack:
            first = contextlib.AsyncExitStack()
            stack.push_async_callback(first.aclose)
            token = (await start_server(first, "feed", port, workdir)).token
            await post(port, lambda: "warm-up", token)
            extra = ("--track-ids", "--reconnect-in-flight", str(gate), "--retry", str(RETRY_S))
            clients = await start_clients(stack, "feed", [port], plan, *extra)
            ready = await read_all(clients, CONNECT_TIMEOUT + MARGIN)
            if sum(r["ready"] for r in ready) < subscribers:
                raise BenchError("storm: not every subscriber connected before the restart")
            await post(port, lambda: marker(0), token)
            before = await posted(clients, 1)
            out["before_restart_delivered"] = sum(r["delivered"] for r in before)

            out["stop_s"] = await stop(first)
            started = time.monotonic()
            token = (await start_server(stack, "feed", port, workdir)).token
            out["start_s"] = time.monotonic() - started
            for k in range(1, missed + 1):
                await post(port, functools.partial(marker, k), token)

            overflows = listen_overflows()
            reconnect_ns = time.monotonic_ns()
            await tell(clients, "reconnect")
            again = await read_all(clients, CONNECT_TIMEOUT + MARGIN)
            caught = await posted(clients, missed + 1)
            out["listen_overflows"] = listen_overflows() - overflows
            out["reconnected"] = sum(r["ready"] for r in again)
            out["reconnect_attempts"] = max(r["attempts"] for r in again)
            out["reconnect_failures"] = dict(sum((Counter(r["why"]) for r in again), Counter()))
            out["live_s"] = max(r["connect_s"] for r in again)
            last = max(r["last_at_ns"] for r in caught)
            out["caught_up_s"] = (last - reconnect_ns) / 1e9
            out["missed_delivered"] = sum(r["delivered"] for r in caught) - subscribers
            out["missed_expected"] = subscribers * missed
            out["stale_ids"] = sum(r["stale_ids"] for r in caught)

            await post(port, lambda: marker(missed + 1), token)
            live = await posted(clients, missed + 2)
            await tell(clients, "close")
    latencies = sorted(us / 1000 for r in live for us in r["latencies_us"][missed + 1])
    out["live_post_delivered"] = len(latencies)
    out["live_post_p99_ms"] = percentile(latencies, 0.99)
    return out


COLUMNS = (
    ("subscribers", "{}"),
    ("missed", "{}"),
    ("stop_s", "{:.1f}"),
    ("reconnected", "{}"),
    ("reconnect_attempts", "{}"),
    ("live_s", "{:.2f}"),
    ("caught_up_s", "{:.2f}"),
    ("missed_delivered", "{}"),
    ("missed_expected", "{}"),
    ("stale_ids", "{}"),
    ("listen_overflows", "{}"),
    ("live_post_p99_ms", "{:.1f}"),
)


async def run(
    subscribers: int, missed: int, clients: int, gate: int = 0
) -> tuple[dict[str, Any], bool]:
    print(
        f"storm: {subscribers} subscribers, a restart, {missed} missed posts ...",
        file=sys.stderr,
        flush=True,
    )
    row = await measure(subscribers, missed, clients, gate)
    exact = (
        row["reconnected"] == subscribers
        and row["missed_delivered"] == row["missed_expected"]
        and row["stale_ids"] == 0
        and row["live_post_delivered"] == subscribers
    )
    how = f"{gate} per client at a time" if gate else "all at once"
    print(f"\nconnect storm: feed on SQLite, {clients} client processes, reconnects {how}\n")
    print(report.table([row], COLUMNS))
    verdict = "met" if exact and row["caught_up_s"] <= TARGET_S else "MISSED"
    print(
        f"every client got exactly the missed events: {'yes' if exact else 'NO'}; "
        f"caught up in {row['caught_up_s']:.2f} s (target <= {TARGET_S:g} s): {verdict}"
    )
    failures = {why: n for why, n in row["reconnect_failures"].items() if n}
    if failures:
        print(f"reconnect attempts that failed (and were retried), by reason: {failures}")
    if row["listen_overflows"]:
        print(
            f"the listen queue overflowed {row['listen_overflows']} times: those clients "
            "waited for their SYN to be retransmitted (after 1 s, 3 s, 7 s, ...)"
        )
    return {"result": row, "exact": exact}, exact
