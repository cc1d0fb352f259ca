"""The publish-throughput scenario: how many posts a second feed persists and delivers.

``--concurrency`` HTTP clients (default 16) post as fast as answers come back, over keep-alive
connections, until ``posts`` posts are in or ``within`` seconds have passed; 100
subscribers (one load-client process) receive them. Reported, per store:

- persisted per second: posts answered 201 (committed) / time from the first request
  to the last answer; the posts are then read back page by page through the API and
  every marker must be there;
- delivered per second: posts / time from the first request until every subscriber
  has every post;
- loss: (subscriber, post) pairs missing, which must be zero; and the latency of
  each post to its subscribers while the store is this busy.

Rationale:

1. Raw keep-alive HTTP/1.1 on asyncio streams, not an HTTP library: the posting
   clients share the two cores with the server, and the cheaper they are, the more of
   the measurement is the server.
2. Every post is an ordinary ``POST /api/channels/general/posts``: rendering, the
   sanitiser, the transaction with its event row, the broker hint and the fan-out.
3. Bounded twice: a fixed number of posts and a deadline. What missed the deadline
   is reported, not waited for.
4. With ``--batch N``, each posting connection sends ``POST /api/posts:batch`` with N
   posts at a time instead, and a post counts as persisted when its item's result is
   201. The batch target (``BATCH_TARGET_PER_S``) is for SQLite, as the single one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import report
from bench.client import MARKER, marker
from bench.fanout import (
    HOST,
    MARGIN,
    BenchError,
    Plan,
    auth_line,
    free_port,
    post,
    read_all,
    start_clients,
    start_server,
    tell,
)
from bench.report import percentile
from bench.scaling import running_postgres

CONCURRENCY = 16
SUBSCRIBERS = 100
TARGET_PER_S = 1000.0
BATCH_TARGET_PER_S = 20_000.0
BATCH_CONCURRENCY = 4
REQUEST_TIMEOUT = 10.0
PAGE = 200  # the API's largest page
CONTENT_LENGTH = re.compile(rb"\r\ncontent-length: *(\d+)", re.IGNORECASE)


class Connection:
    """One keep-alive HTTP/1.1 connection to the server."""

    def __init__(self, port: int, token: str = "") -> None:
        self.port = port
        self.token = token
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, payload: object = None) -> tuple[int, Any]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(HOST, self.port)
        assert self.reader is not None
        body = b"" if payload is None else json.dumps(payload).encode()
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {HOST}:{self.port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            f"{auth_line(self.token)}\r\n"
        )
        async with asyncio.timeout(REQUEST_TIMEOUT):
            self.writer.write(head.encode() + body)
            answer = await self.reader.readuntil(b"\r\n\r\n")
            length = CONTENT_LENGTH.search(answer)
            if length is None:
                raise BenchError(f"{method} {path}: an answer without Content-Length")
            data = await self.reader.readexactly(int(length[1]))
        return int(answer.split()[1]), json.loads(data)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def post_many(
    port: int, token: str, posts: int, deadline: float, concurrency: int
) -> tuple[int, int, float]:
    """Posts 0..posts-1 from ``concurrency`` connections; (answered 201, refused, seconds)."""
    next_post = iter(range(posts))
    created = refused = 0
    finished = time.monotonic()

    async def worker() -> None:
        nonlocal created, refused, finished
        conn = Connection(port, token)
        try:
            # The deadline is checked before a number is taken, so the posts made are
            # always 0..made-1, whatever the deadline cut.
            while time.monotonic() < deadline:
                k = next(next_post, None)
                if k is None:
                    return
                payload = {"author": "bench", "body": marker(k)}
                status, _ = await conn.request("POST", "/api/channels/general/posts", payload)
                if status == 201:
                    created += 1
                else:
                    refused += 1
                finished = time.monotonic()
        finally:
            conn.close()

    started = time.monotonic()
    async with asyncio.TaskGroup() as group:
        for _ in range(concurrency):
            group.create_task(worker())
    return created, refused, finished - started


async def post_batches(
    port: int, token: str, posts: int, deadline: float, concurrency: int, size: int
) -> tuple[int, int, float]:
    """``post_many`` through the batch endpoint, ``size`` posts a request (4)."""
    starts = iter(range(0, posts, size))
    created = refused = 0
    finished = time.monotonic()

    async def worker() -> None:
        nonlocal created, refused, finished
        conn = Connection(port, token)
        try:
            while time.monotonic() < deadline:
                first = next(starts, None)
                if first is None:
                    return
                items = [
                    {"channel": "general", "body": marker(k)}
                    for k in range(first, min(first + size, posts))
                ]
                status, answer = await conn.request("POST", "/api/posts:batch", items)
                ok = sum(r["status"] == 201 for r in answer["results"]) if status == 200 else 0
                created += ok
                refused += len(items) - ok
                finished = time.monotonic()
        finally:
            conn.close()

    started = time.monotonic()
    async with asyncio.TaskGroup() as group:
        for _ in range(concurrency):
            group.create_task(worker())
    return created, refused, finished - started


async def stored_markers(port: int, posts: int) -> int:
    """How many distinct bench posts the API lists, newest first, page by page."""
    found: set[int] = set()
    conn = Connection(port)
    path = f"/api/channels/general/posts?limit={PAGE}"
    try:
        for _ in range(posts // PAGE + 2):  # bounded: one page more than needed
            status, page = await conn.request("GET", path)
            if status != 200:
                raise BenchError(f"listing posts answered {status}")
            for item in page["posts"]:
                match = MARKER.search(item["body"].encode())
                if match:
                    found.add(int(match[1]))
            if page["next_before"] is None:
                break
            path = f"/api/channels/general/posts?limit={PAGE}&before={page['next_before']}"
    finally:
        conn.close()
    return len(found)


async def measure(
    target: str,
    posts: int,
    within: float,
    concurrency: int,
    database: str | None = None,
    batch: int = 0,
) -> dict[str, Any]:
    plan = Plan(SUBSCRIBERS, posts, 0.0, 1, 60.0, within)
    with tempfile.TemporaryDirectory(prefix=f"feed-bench-{target}-") as tmp:
        port = free_port()
        async with contextlib.AsyncExitStack() as stack:
            token = (await start_server(stack, target, port, Path(tmp), database)).token
            await post(port, lambda: "warm-up", token)
            clients = await start_clients(stack, target, [port], plan)
            ready = await read_all(clients, plan.connect_timeout + MARGIN)
            if sum(r["ready"] for r in ready) < SUBSCRIBERS:
                raise BenchError(f"{target}: not every subscriber connected")
            started_ns = time.monotonic_ns()
            deadline = time.monotonic() + within
            if batch:
                created, refused, seconds = await post_batches(
                    port, token, posts, deadline, concurrency, batch
                )
            else:
                created, refused, seconds = await post_many(
                    port, token, posts, deadline, concurrency
                )
            await tell(clients, f"posted {created + refused}")
            (result,) = await read_all(clients, within + MARGIN)
            stored = await stored_markers(port, posts)
            await tell(clients, "close")
    latencies = sorted(us / 1000 for per_post in result["latencies_us"] for us in per_post)
    delivered_s = (result["last_at_ns"] - started_ns) / 1e9
    return {
        "target": target,
        "posts": posts,
        "concurrency": concurrency,
        "batch": batch,
        "created": created,
        "refused": refused,
        "stored": stored,
        "persisted_per_s": created / seconds if seconds > 0 else 0.0,
        "delivered": result["delivered"],
        "expected": result["expected"],
        "lost_pairs": result["expected"] - result["delivered"],
        "delivered_per_s": created / delivered_s
        if result["delivered"] and delivered_s > 0
        else 0.0,
        "p50_ms": percentile(latencies, 0.5),
        "p99_ms": percentile(latencies, 0.99),
    }


COLUMNS = (
    ("target", "{}"),
    ("posts", "{}"),
    ("created", "{}"),
    ("stored", "{}"),
    ("persisted_per_s", "{:.0f}"),
    ("delivered_per_s", "{:.0f}"),
    ("lost_pairs", "{}"),
    ("p50_ms", "{:.1f}"),
    ("p99_ms", "{:.1f}"),
)


async def run(
    posts: int, within: float, targets: list[str], concurrency: int = CONCURRENCY, batch: int = 0
) -> tuple[dict[str, Any], bool]:
    if set(targets) - {"feed", "feed-pg"}:
        raise BenchError("throughput measures feed and feed-pg: the store is what it loads")
    rows = []
    with running_postgres("feed-pg" in targets) as postgres:
        for target in targets:
            print(f"throughput: {target}, {posts} posts ...", file=sys.stderr, flush=True)
            database = postgres.new_database() if postgres and target == "feed-pg" else None
            rows.append(await measure(target, posts, within, concurrency, database, batch))
    how = f" in batches of {batch}" if batch else ""
    print(
        f"\npublish throughput{how}: {concurrency} concurrent posting connections, "
        f"{SUBSCRIBERS} subscribers, at most {posts} posts in {within:.0f} s\n"
    )
    print(report.table(rows, COLUMNS))
    for row in rows:
        summary = (
            f"{row['target']}: {row['persisted_per_s']:.0f} posts/s persisted, "
            f"{row['delivered_per_s']:.0f}/s delivered with {row['lost_pairs']} lost"
        )
        if row["target"] == "feed":  # the target is set for the embedded store, SQLite
            target = BATCH_TARGET_PER_S if batch else TARGET_PER_S
            ok = row["persisted_per_s"] >= target and row["lost_pairs"] == 0
            summary += f" (target >= {target:.0f}/s, no loss): {'met' if ok else 'MISSED'}"
        print(summary)
    complete = all(r["lost_pairs"] == 0 and r["stored"] == r["created"] for r in rows)
    return {
        "posts": posts,
        "within_s": within,
        "concurrency": concurrency,
        "batch": batch,
        "results": rows,
    }, complete
