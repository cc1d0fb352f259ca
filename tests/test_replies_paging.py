"""Paging back through a thread's replies reads its replies, not the posts older than
the thread (storage/posts.py, on replies, and their pages)."""

from __future__ import annotations

import asyncio
import re
from typing import Any

from sqlalchemy import Engine

from feed.store import Store
from feed.values import Change, NewPost
from tests.plans import migrated, sent_by

OLDER = 20_000  # posts in the channel before the thread began
ROUNDS = 20  # then this many times: REPLIES replies, and OTHERS other posts
REPLIES = 100
OTHERS = 1000


def _long_thread(store: Store) -> tuple[int, list[int]]:
    """A thread begun after ``OLDER`` posts, its replies among many others'."""

    def posts(author: str, label: str, count: int, parent: int | None = None) -> list[NewPost]:
        return [NewPost("general", author, f"{label} {n}", parent=parent) for n in range(count)]

    async def made() -> tuple[int, list[int]]:
        for start in range(0, OLDER, 1000):
            await store.create_posts(posts("ann", f"p{start}", 1000))
        root = (await store.create_post("general", "ann", "the thread")).post.id
        replies: list[int] = []
        for turn in range(ROUNDS):
            for change in await store.create_posts(posts("bo", f"r{turn}", REPLIES, root)):
                assert isinstance(change, Change)
                replies.append(change.post.id)
            await store.create_posts(posts("cy", f"q{turn}", OTHERS))
        return root, replies

    return asyncio.run(made())


def _rows_read(engine: Engine, statement: str, parameters: Any) -> int:
    """How many rows the database read and threw away to answer ``statement``: the
    filter's on PostgreSQL (EXPLAIN ANALYZE); on SQLite, the size of the range it
    scans, as its plan names it (0 when it seeks by the thread)."""
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        if engine.dialect.name == "sqlite":
            cursor.execute(f"EXPLAIN QUERY PLAN {statement}", parameters)
            plan = "\n".join(str(row[-1]) for row in cursor.fetchall())
            return 0 if "parent_id=?" in plan else OLDER
        cursor.execute("ANALYZE posts")
        cursor.execute(f"EXPLAIN (ANALYZE, FORMAT TEXT) {statement}", parameters)
        plan = "\n".join(str(row[0]) for row in cursor.fetchall())
        return sum(int(n) for n in re.findall(r"Rows Removed by Filter: (\d+)", plan))
    finally:
        raw.close()


def test_the_oldest_page_of_a_long_thread_reads_no_post_older_than_the_thread(
    each_database_url: str,
) -> None:
    with migrated(each_database_url) as store:
        root, replies = _long_thread(store)
        before = replies[5]  # five older replies left: a page shorter than its limit
        found: list[int] = []

        def page() -> None:
            found.extend(p.id for p in asyncio.run(store.list_replies(root, before=before)))

        sent = sent_by(store._engine, page, naming="parent_id")
        assert found == replies[:5][::-1]
        (statement, parameters) = next(s for s in sent if "ORDER BY posts.id DESC" in s[0])
        assert _rows_read(store._engine, statement, parameters) < OTHERS
