"""Replies in a long thread: what a reply's write, and its thread's summary alone,
cost next to a thread of ``--replies`` replies and next to one of 10, on each store.

    python bench/threads.py --replies 100000 --rounds 30 --stores sqlite,postgresql

Run by its path, so that ``feed`` is whichever checkout ``PYTHONPATH`` names: the same
script then times an older feed and a newer one, alternated by the caller (the
machine is noisy). It uses nothing of feed but ``Store``'s public writes,
``storage.threads.summaries`` and the ``posts`` table, which every feed since
threads has.

1. Each store starts empty (a temporary SQLite file; a database in a PostgreSQL
   server started for the run, on loopback) with two top-level posts. One gets 10
   replies, the other ``--replies``, by 500 authors in turn, inserted as rows in
   chunks of one transaction each: a long thread made in seconds, not through a
   hundred thousand writes. Where the schema stores each post's count of replies
   (``posts.reply_count``), the rows' parent gets its count as a write would have
   left it. PostgreSQL is then vacuumed and analysed, as autovacuum would have done
   after a thread grew this long over days.
2. ``--rounds`` replies are written to each thread, short and long alternated,
   through ``Store.create_reply`` (its group commit, the summary its event carries,
   the commit): each one's wall time.
3. Then the thread's summary alone (``threads.summaries`` in one session), short
   and long alternated, ``--rounds`` times each.

Printed: one JSON line per store with the medians in milliseconds, and the thread's
count and repliers as the last reply's summary read them (a check that both feeds
count the same). Bounded: at most ``MAX_REPLIES`` rows, ``MAX_ROUNDS`` rounds; the
PostgreSQL server is stopped and removed at the end, whatever happens.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, insert, inspect, text
from sqlmodel import Session

from feed.models import Post
from feed.storage import threads
from feed.store import Store

MAX_REPLIES = 1_000_000
MAX_ROUNDS = 1_000
# Rows inserted per transaction while the long thread is made (1).
CHUNK = 20_000
AUTHORS = 500


def _replies(engine: Engine, parent: int, count: int) -> None:
    """``count`` replies to ``parent``, as rows, counted with it where the schema
    stores a count (1)."""
    with engine.connect() as connection:
        channel_id = connection.execute(
            text("SELECT channel_id FROM posts WHERE id = :p"), {"p": parent}
        ).scalar_one()
        stored = "reply_count" in {c["name"] for c in inspect(connection).get_columns("posts")}
    now = datetime.now(UTC)
    for start in range(0, count, CHUNK):
        rows = [
            {
                "channel_id": channel_id,
                "parent_id": parent,
                "author": f"p{n % AUTHORS}",
                "body": "more",
                "html": "<p>more</p>\n",
                "created_at": now,
                "pinned": False,
                "deleted": False,
            }
            for n in range(start, min(count, start + CHUNK))
        ]
        with engine.begin() as connection:
            connection.execute(insert(Post), rows)
            if stored:
                connection.execute(
                    text("UPDATE posts SET reply_count = reply_count + :n WHERE id = :p"),
                    {"n": len(rows), "p": parent},
                )
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text("VACUUM ANALYZE posts"))


def _median_ms(times: Sequence[float]) -> float:
    return round(statistics.median(times) * 1000, 3)


async def _writes(store: Store, parents: Sequence[int], rounds: int) -> dict[int, list[float]]:
    """Each thread's reply writes, alternated (2)."""
    timed: dict[int, list[float]] = {parent: [] for parent in parents}
    for _ in range(rounds):
        for parent in parents:
            start = time.perf_counter()
            await store.create_reply("general", parent, "zed", "one more")
            timed[parent].append(time.perf_counter() - start)
    return timed


def measure(url: str, replies: int, rounds: int) -> dict[str, Any]:
    """The medians on the store at ``url`` (1, 2, 3)."""
    store = Store.from_url(url)
    try:

        async def made() -> tuple[int, int]:
            await store.create_schema()
            short = (await store.create_post("general", "ann", "short")).post.id
            long = (await store.create_post("general", "ann", "long")).post.id
            return short, long

        short, long = asyncio.run(made())
        engine: Engine = store._engine
        _replies(engine, short, 10)
        _replies(engine, long, replies)
        written = asyncio.run(_writes(store, (short, long), rounds))
        read: dict[int, list[float]] = {short: [], long: []}
        with Session(engine) as session:
            for _ in range(rounds):
                for parent in (short, long):
                    start = time.perf_counter()
                    found = threads.summaries(session, [parent])
                    read[parent].append(time.perf_counter() - start)
                    session.rollback()  # each read in its own transaction, as a write's
        summary = found[long]
    finally:
        store.close()
    return {
        "store": engine.dialect.name,
        "replies": replies,
        "rounds": rounds,
        "reply_short_ms": _median_ms(written[short]),
        "reply_long_ms": _median_ms(written[long]),
        "summary_short_ms": _median_ms(read[short]),
        "summary_long_ms": _median_ms(read[long]),
        "count": summary.replies,
        "repliers": list(summary.repliers),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replies", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--stores", default="sqlite,postgresql")
    args = parser.parse_args(argv)
    if not (10 <= args.replies <= MAX_REPLIES and 1 <= args.rounds <= MAX_ROUNDS):
        parser.error(f"--replies 10..{MAX_REPLIES}, --rounds 1..{MAX_ROUNDS}")
    for kind in args.stores.split(","):
        with tempfile.TemporaryDirectory() as scratch:
            if kind == "sqlite":
                url = f"sqlite:///{Path(scratch) / 'feed.db'}"
                result = measure(url, args.replies, args.rounds)
            elif kind == "postgresql":
                result = _on_postgres(args.replies, args.rounds)
            else:
                parser.error(f"unknown store {kind!r}")
        print(json.dumps(result), flush=True)
    return 0


def _on_postgres(replies: int, rounds: int) -> dict[str, Any]:
    """``measure`` on a PostgreSQL server of its own, removed afterwards (1)."""
    from bench.fanout import free_port  # the harness's, as bench/corpora.py starts one
    from tests.services import Postgres

    server = Postgres(free_port()).start()
    try:
        return measure(server.new_database(), replies, rounds)
    finally:
        server.remove()


if __name__ == "__main__":
    sys.exit(main())
