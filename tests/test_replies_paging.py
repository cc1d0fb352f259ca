"""Paging through a thread's replies reads the index of its replies, never the posts
older than the thread (storage/posts.py, rationale 6), and so does its summary."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import Engine

from feed.store import Store
from feed.values import Change, NewPost
from tests.plans import migrated, sent_by

INDEX = "ix_posts_parent_id_deleted_id"
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


def _plan(engine: Engine, statement: str, parameters: Any) -> str:
    """How the database answers ``statement``: on PostgreSQL as it ran (EXPLAIN
    ANALYZE), after statistics taken from every row, so that the plan it picks does not
    depend on a sample."""
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        if engine.dialect.name == "sqlite":
            cursor.execute(f"EXPLAIN QUERY PLAN {statement}", parameters)
            return "\n".join(str(row[-1]) for row in cursor.fetchall())
        cursor.execute("SET default_statistics_target = 1000")  # a sample of 300,000 rows
        cursor.execute("ANALYZE posts")
        cursor.execute(f"EXPLAIN (ANALYZE, COSTS OFF) {statement}", parameters)
        return "\n".join(str(row[0]) for row in cursor.fetchall())
    finally:
        raw.close()


def test_every_page_of_a_long_thread_is_read_down_the_index_of_its_replies(
    each_database_url: str,
) -> None:
    with migrated(each_database_url) as store:
        root, replies = _long_thread(store)
        # The newest page, one in the middle, one near the start, and the oldest: five
        # replies left, a page shorter than its limit.
        for before in (None, replies[len(replies) // 2], replies[60], replies[5]):
            found: list[int] = []

            def page(before: int | None = before, found: list[int] = found) -> None:
                found.extend(p.id for p in asyncio.run(store.list_replies(root, before=before)))

            sent = sent_by(store._engine, page, naming="parent_id")
            older = [r for r in replies if before is None or r < before]
            assert found == older[::-1][:50]
            statement, parameters = next(s for s in sent if "ORDER BY posts." in s[0])
            plan = _plan(store._engine, statement, parameters)
            assert INDEX in plan, plan
            assert "posts_pkey" not in plan and "Rows Removed" not in plan, plan
            assert "Sort" not in plan and "TEMP B-TREE" not in plan, plan


def test_a_long_threads_summary_walks_the_index_of_its_replies(each_database_url: str) -> None:
    """The summary's newest replies (storage/threads.py, on summaries of long threads)
    are read down the same index, never down the posts' key."""
    with migrated(each_database_url) as store:
        root, replies = _long_thread(store)
        shown: list[Any] = []
        sent = sent_by(
            store._engine,
            lambda: shown.append(asyncio.run(store.get_post(root, counted=True))),
            naming="row_number",
        )
        assert shown[0].replies == len(replies)
        (statement, parameters), *_ = sent
        plan = _plan(store._engine, statement, parameters)
        assert INDEX in plan, plan
        assert "Backward using posts_pkey" not in plan, plan  # PostgreSQL's walk by key
        assert "SCAN posts" not in plan, plan  # SQLite's
