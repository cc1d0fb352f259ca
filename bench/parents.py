"""A reply's cost on PostgreSQL next to its parent's body: a parent whose body is a
word, and one whose body is as long as a post may be (``FEED_MAX_POST_CHARS``).

    python bench/parents.py --replies 20000 --rounds 60

Run by its path, as bench/threads.py is, so that ``feed`` is whichever checkout
``PYTHONPATH`` names.

1. Why. ``posts`` has a stored generated column, ``posts_search_vector``
   (``to_tsvector`` of the body: migration 0010_search), under a GIN index and 0014's
   expression index. A reply adds one to its parent's ``posts.reply_count`` (migration
   0016_reply_counts) with an UPDATE of the parent's row. Were PostgreSQL to recompute
   that column on every UPDATE, each reply would parse its parent's whole body again,
   and the GIN indexes would stop the update from being HOT (a new index entry for
   every reply, and dead tuples on a busy thread).
2. How. A PostgreSQL server of its own, on loopback; two top-level posts, one short,
   one of ``max_post_chars`` characters of varied words (a body that ``to_tsvector``
   has to work through). Each gets ``--replies`` replies as rows (a thread that has
   been busy for a while: the parent's page is full), then ``VACUUM ANALYZE``. Then
   ``--rounds`` replies to each, alternated, through ``Store.create_reply``: each one's
   wall time. Then, on one connection, the count's own UPDATE on each parent alone
   (``reply_count + 0``: the same statement shape, no change), and, as the control
   that shows what a recomputation costs, ``SET body = body``, which PostgreSQL must
   recompute for.
3. HOT. ``pg_stat_user_tables``' ``n_tup_upd`` and ``n_tup_hot_upd`` for ``posts``,
   read before and after the reply writes, each time once the writers' connections
   have closed: a backend hands its counts to the shared statistics as it exits, so
   when none is left in ``pg_stat_activity`` (waited for, with a deadline) the counts
   are complete.

Printed: one JSON line, times in milliseconds (medians). Bounded: at most
``MAX_REPLIES`` rows and ``MAX_ROUNDS`` rounds; the server is removed at the end,
whatever happens.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import time
from collections.abc import Sequence
from typing import Any

import psycopg

from bench.threads import _replies
from feed.settings import Settings
from feed.store import Store

MAX_REPLIES = 200_000
MAX_ROUNDS = 1_000
# Single-statement timings of the count's UPDATE and of the control, per parent (2).
STATEMENTS = 200
# How long the writers' statistics may take to reach the shared counts (3).
STATS_DEADLINE = 30.0


def long_body(chars: int) -> str:
    """``chars`` characters of varied lowercase words, the same every run (2)."""
    pick = random.Random(1)
    letters = "abcdefghijklmnopqrstuvwxyz"
    words = ["".join(pick.choices(letters, k=pick.randint(3, 9))) for _ in range(3000)]
    body: list[str] = []
    size = 0
    while size < chars:
        word = pick.choice(words)
        body.append(word)
        size += len(word) + 1
    return " ".join(body)[:chars].rstrip()


def _median_ms(times: Sequence[float]) -> float:
    return round(statistics.median(times) * 1000, 3)


# Other connections to this database: the writers', until they have exited (3).
OTHERS = """
SELECT count(*) FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid()
"""
# The count's own UPDATE, changing nothing, and the control that must recompute (2).
COUNT = "UPDATE posts SET reply_count = reply_count + 0 WHERE id = %s"
CONTROL = "UPDATE posts SET body = body WHERE id = %s"
UPDATES = "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = 'posts'"


def _settled(url: str) -> tuple[int, int]:
    """``posts``' updates and HOT updates, once every other connection has gone (3)."""
    deadline = time.monotonic() + STATS_DEADLINE
    with psycopg.connect(url, autocommit=True, connect_timeout=5) as connection:
        while (left := connection.execute(OTHERS.encode()).fetchone()) and left[0]:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{left[0]} connections still open")
            time.sleep(0.1)
        # A snapshot per transaction otherwise: each read here sees the counts as now.
        connection.execute(b"SELECT pg_stat_clear_snapshot()")
        row = connection.execute(UPDATES.encode()).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def _timed(connection: psycopg.Connection[Any], sql: str, parent: int) -> float:
    times = []
    for _ in range(STATEMENTS):
        start = time.perf_counter()
        connection.execute(sql.encode(), (parent,))
        times.append(time.perf_counter() - start)
    return _median_ms(times)


def measure(url: str, replies: int, rounds: int) -> dict[str, Any]:
    """The figures on the empty database at ``url`` (2, 3)."""
    body = long_body(Settings().max_post_chars)
    made = Store.from_url(url)
    try:

        async def posts() -> tuple[int, int]:
            await made.create_schema()
            short = (await made.create_post("general", "ann", "short")).post.id
            long = (await made.create_post("general", "ann", body)).post.id
            return short, long

        short, long = asyncio.run(posts())
        _replies(made._engine, short, replies)
        _replies(made._engine, long, replies)
    finally:
        made.close()  # its connections exit, with their counts (3)
    before = _settled(url)
    store = Store.from_url(url)
    try:

        async def written() -> dict[int, list[float]]:
            timed: dict[int, list[float]] = {short: [], long: []}
            for _ in range(rounds):
                for parent in (short, long):
                    start = time.perf_counter()
                    await store.create_reply("general", parent, "zed", "one more")
                    timed[parent].append(time.perf_counter() - start)
            return timed

        times = asyncio.run(written())
    finally:
        store.close()
    after = _settled(url)
    with psycopg.connect(url, autocommit=True, connect_timeout=5) as connection:
        statements = {
            f"{name}_update_{which}_ms": _timed(connection, sql, parent)
            for name, sql in (("count", COUNT), ("control", CONTROL))
            for which, parent in (("short", short), ("long", long))
        }
        version = connection.execute(b"SHOW server_version").fetchone()
    reply_short, reply_long = _median_ms(times[short]), _median_ms(times[long])
    return {
        "server_version": version[0] if version else None,
        "long_body_chars": len(body),
        "replies": replies,
        "rounds": rounds,
        "reply_short_ms": reply_short,
        "reply_long_ms": reply_long,
        "reply_ratio": round(reply_long / reply_short, 2),
        **statements,
        "reply_updates": after[0] - before[0],
        "reply_hot_updates": after[1] - before[1],
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replies", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=60)
    args = parser.parse_args(argv)
    if not (0 <= args.replies <= MAX_REPLIES and 1 <= args.rounds <= MAX_ROUNDS):
        parser.error(f"--replies 0..{MAX_REPLIES}, --rounds 1..{MAX_ROUNDS}")
    from bench.fanout import free_port  # the harness's, as bench/threads.py starts one
    from tests.services import Postgres

    server = Postgres(free_port()).start()
    try:
        result = measure(server.new_database(), args.replies, args.rounds)
    finally:
        server.remove()
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
