"""The reaction-storm scenario: N people react to one post within a second while M
screens watch it.

1. feed (SQLite, in a temporary directory) starts with N reader tokens; one post.
2. M watchers open JSON streams (``bench.watchers``, their own processes).
3. N reactors each PUT one reaction (chosen at random, seeded) to the post, their
   requests spread evenly over ``--spread`` seconds, each on its own connection.
   Halfway through, ``--cut`` watchers hang up and resume with Last-Event-ID, as
   screens that lose their connection mid-storm do.
4. Once every toggle is answered, the database's counts are read through the API and
   every watcher waits until its last frame shows exactly those.

Reported: toggles stored (200 answers, and the counts' sum), frames per watcher (the
most, the mean, and the most within any one second), how many watchers ended exact,
stale ids (a frame not newer than the last: a duplicate or an old replay), how long
the last watcher took to settle after the last answer, and the server's CPU seconds
over the storm. Bounded: at most ``MAX_REACTORS`` reactors and ``MAX_WATCHERS``
watchers, every wait has a deadline, and everything runs on loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import sqlite3
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from bench import report
from bench.fanout import (
    HOST,
    MARGIN,
    BenchError,
    Plan,
    cpu_s,
    free_port,
    read_all,
    shares,
    spawn,
    start_server,
    tell,
)
from bench.watchers import per_second_max

REACTORS = 1000
WATCHERS = 5000
MAX_REACTORS = 5000
MAX_WATCHERS = 19_000
WATCHERS_PER_CLIENT = 5000
SPREAD_S = 1.0
WINDOW_S = 0.5  # FEED_REACTION_WINDOW
CUT = 50  # watchers that reconnect mid-storm
CONNECT_TIMEOUT = 120.0
SETTLE_S = 30.0
REQUEST_TIMEOUT = 30.0
REACTIONS = ("\U0001f44d", "\u2764\ufe0f", "\U0001f389", "\U0001f604", "\U0001f62e", "\U0001f440")
SEED = 16


async def tokens(database: str, count: int) -> list[str]:
    """``count`` reader tokens, written straight into the server's database."""
    from feed.identity import digest, new_token
    from feed.store import Store

    store = Store.from_url(database)
    try:
        made = []
        for n in range(count):
            token, _ = new_token()
            await store.add_token(f"reactor{n}", "reader", "api", None, digest(token))
            made.append(token)
        return made
    finally:
        store.close()


async def request(port: int, method: str, path: str, token: str, body: bytes = b"") -> bytes:
    """One request on its own connection; the answer's status and body."""
    async with asyncio.timeout(REQUEST_TIMEOUT):
        reader, writer = await asyncio.open_connection(HOST, port)
        try:
            head = (
                f"{method} {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
                f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            writer.write(head.encode() + body)
            return await reader.read()
        finally:
            writer.close()


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/") else 0


async def react(port: int, post: int, token: str, reaction: str, at: float) -> int:
    await asyncio.sleep(max(0.0, at - time.monotonic()))  # the reactor's moment
    from urllib.parse import quote

    answer = await request(port, "PUT", f"/api/posts/{post}/reactions/{quote(reaction)}", token)
    return status_of(answer)


async def final_counts(port: int, post: int, token: str) -> dict[str, int]:
    answer = await request(port, "GET", f"/api/posts/{post}", token)
    body = answer.split(b"\r\n\r\n", 1)[1]
    return {r["reaction"]: r["count"] for r in json.loads(body)["post"]["reactions"]}


def emitted(database: Path, post: int) -> list[float]:
    """When each ``post-reactions`` event of the post was written, from the log."""
    with sqlite3.connect(database) as connection:
        rows = connection.execute(
            "SELECT created_at FROM events WHERE kind = 'post-reactions' AND post_id = ? "
            "ORDER BY id",
            (post,),
        ).fetchall()
    connection.close()
    return [datetime.fromisoformat(at).timestamp() for (at,) in rows]


async def measure(reactors: int, watchers: int, spread: float, cut: int) -> dict[str, Any]:
    port = free_port()
    plan = Plan(
        0, 0, 0.0, 0, CONNECT_TIMEOUT, SETTLE_S, env=(("FEED_REACTION_WINDOW", str(WINDOW_S)),)
    )
    with tempfile.TemporaryDirectory(prefix="feed-bench-reactions-") as tmp:
        workdir = Path(tmp)
        async with contextlib.AsyncExitStack() as stack:
            server = await start_server(stack, "feed", port, workdir, plan=plan)
            people = await tokens(f"sqlite:///{workdir / 'feed.db'}", reactors)
            made = await request(
                port, "POST", "/api/channels/general/posts", server.token, b'{"body": "react"}'
            )
            post = json.loads(made.split(b"\r\n\r\n", 1)[1])["post"]["id"]
            pipes = {"stdin": asyncio.subprocess.PIPE, "stdout": asyncio.subprocess.PIPE}
            clients = []
            parts = shares(watchers, -(-watchers // WATCHERS_PER_CLIENT))
            for n in parts:
                cmd = [sys.executable, "-m", "bench.watchers", "--port", str(port)]
                cmd += ["--post", str(post), "--watchers", str(n), "--settle", str(SETTLE_S)]
                clients.append(await stack.enter_async_context(spawn(cmd, **pipes)))
            ready = await read_all(clients, CONNECT_TIMEOUT + MARGIN)
            if sum(r["ready"] for r in ready) < watchers:
                raise BenchError("reactions: not every watcher connected")
            rng = random.Random(SEED)
            began = time.monotonic()
            cpu_before = cpu_s(server.measured)
            toggles = [
                react(port, post, t, rng.choice(REACTIONS), began + spread * n / reactors)
                for n, t in enumerate(people)
            ]
            storm = asyncio.gather(*toggles)
            await asyncio.sleep(spread / 2)  # mid-storm: some screens lose their stream
            await tell(clients[:1], f"cut {cut}")
            await read_all(clients[:1], CONNECT_TIMEOUT + MARGIN)
            statuses = await storm
            answered = time.monotonic() - began
            final = await final_counts(port, post, server.token)
            await tell(clients, f"final {json.dumps(final)}")
            results = await read_all(clients, SETTLE_S + MARGIN)
            cpu = cpu_s(server.measured) - cpu_before
            written = emitted(workdir / "feed.db", post)
    return {
        "reactors": reactors,
        "watchers": watchers,
        "window_s": WINDOW_S,
        "stored": sum(final.values()),
        "answered_200": sum(s == 200 for s in statuses),
        "answered_s": answered,
        "exact_watchers": sum(r["exact"] for r in results),
        "frames_max": max(r["frames_max"] for r in results),
        "frames_mean": sum(r["frames_mean"] * r["watchers"] for r in results) / watchers,
        "events": len(written),
        "emitted_per_second_max": per_second_max(written),
        "per_second_max": max(r["per_second_max"] for r in results),
        "stale_ids": sum(r["stale_ids"] for r in results),
        "settled_s": max(r["settled_s"] for r in results),
        "server_cpu_s": cpu,
        "resumed_mid_storm": min(cut, watchers),
    }


COLUMNS = (
    ("reactors", "{}"),
    ("watchers", "{}"),
    ("answered_200", "{}"),
    ("stored", "{}"),
    ("answered_s", "{:.2f}"),
    ("frames_max", "{}"),
    ("frames_mean", "{:.1f}"),
    ("events", "{}"),
    ("emitted_per_second_max", "{}"),
    ("per_second_max", "{}"),
    ("exact_watchers", "{}"),
    ("stale_ids", "{}"),
    ("settled_s", "{:.2f}"),
    ("server_cpu_s", "{:.2f}"),
)


async def run(
    reactors: int, watchers: int, spread: float = SPREAD_S, cut: int = CUT
) -> tuple[dict[str, Any], bool]:
    if not (1 <= reactors <= MAX_REACTORS and 1 <= watchers <= MAX_WATCHERS):
        raise BenchError(f"reactors 1..{MAX_REACTORS} and watchers 1..{MAX_WATCHERS}")
    print(
        f"reactions: {reactors} reactors within {spread:g} s, {watchers} watchers ...",
        file=sys.stderr,
        flush=True,
    )
    row = await measure(reactors, watchers, spread, min(cut, watchers))
    exact = (
        row["answered_200"] == reactors
        and row["stored"] == reactors
        and row["exact_watchers"] == watchers
        and row["stale_ids"] == 0
    )
    print(f"\nreaction storm: feed on SQLite, reaction window {WINDOW_S:g} s\n")
    print(report.table([row], COLUMNS))
    print(
        f"every toggle stored and every watcher exact: {'yes' if exact else 'NO'}; the "
        f"post's events: at most {row['emitted_per_second_max']} written in any second, "
        f"at most {row['per_second_max']} received in any second by a screen (a resumed "
        "screen's replay, and a busy client's late reads, arrive together)"
    )
    return {"result": row, "exact": exact}, exact
