"""Threads' summaries in long threads: what a reply's write costs however long its
thread is, and what a summary names when its newest replies are all by a few people
(storage/threads.py, on summaries of long threads)."""

from __future__ import annotations

import asyncio
import statistics
import time
from datetime import UTC, datetime

from sqlalchemy import insert, text
from sqlmodel import Session

from feed.models import Post
from feed.storage import threads
from feed.storage.threads import WALK
from feed.store import Store, make_engine
from feed.values import Commit, Thread
from tests.migrating import index_names, schema_at

# Replies in the long thread: enough that reading all of them costs many times a
# write, few enough to insert in a second or two.
LONG = 20_000
# Writes timed in each thread, alternated, so that the machine's noise falls on both.
ROUNDS = 15
# A reply in the long thread may cost this many times one in a short thread. Reading
# every reply made it about ten times at LONG; walking the newest makes it about one.
MARGIN = 3.0


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def _replies(store: Store, channel: str, parent: int, authors: list[str]) -> None:
    """Replies to ``parent`` by ``authors`` in turn, as rows of one transaction, counted
    with their parent as a group's write counts them: a long thread made in a second,
    not through thousands of writes."""
    engine = store._engine
    with engine.begin() as connection:
        channel_id = connection.execute(
            text("SELECT id FROM channels WHERE name = :n"), {"n": channel}
        ).scalar_one()
        now = datetime.now(UTC)
        rows = [
            {
                "channel_id": channel_id,
                "parent_id": parent,
                "author": author,
                "body": "more",
                "html": "<p>more</p>\n",
                "created_at": now,
                "pinned": False,
                "deleted": False,
            }
            for author in authors
        ]
        connection.execute(insert(Post), rows)
        connection.execute(
            text("UPDATE posts SET reply_count = reply_count + :n WHERE id = :p"),
            {"n": len(authors), "p": parent},
        )
    if engine.dialect.name == "postgresql":
        # As autovacuum would have after a thread grew this long over days.
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text("VACUUM ANALYZE posts"))


def test_a_reply_costs_about_the_same_in_a_long_thread_as_in_a_short_one(store: Store) -> None:
    told: list[Commit] = []
    store.on_commit(told.append)

    async def main() -> tuple[list[float], list[float]]:
        short = (await store.create_post("general", "ann", "short")).post.id
        long = (await store.create_post("general", "ann", "long")).post.id
        _replies(store, "general", short, [f"p{i}" for i in range(10)])
        _replies(store, "general", long, [f"p{i % 500}" for i in range(LONG)])
        timed: dict[int, list[float]] = {short: [], long: []}
        for _ in range(ROUNDS):
            for parent in (short, long):
                start = time.perf_counter()
                await store.create_reply("general", parent, "zed", "one more")
                timed[parent].append(time.perf_counter() - start)
        return timed[short], timed[long]

    short, long = run(main())
    # The summary is still exact: every live reply counted, the latest repliers named.
    thread = _thread(told[-1])
    assert (thread.replies, thread.repliers) == (LONG + ROUNDS, ("zed", "p499", "p498"))
    ratio = statistics.median(long) / statistics.median(short)
    assert ratio < MARGIN, (
        f"a reply in a thread of {LONG} cost {ratio:.1f}x one in a thread of 10 "
        f"(medians {statistics.median(long) * 1000:.2f} and "
        f"{statistics.median(short) * 1000:.2f} ms)"
    )


def test_a_summary_names_the_repliers_among_the_newest_replies(store: Store) -> None:
    told: list[Commit] = []
    store.on_commit(told.append)

    async def main() -> tuple[Thread, int, tuple[str, ...]]:
        parent = (await store.create_post("general", "ann", "the plan")).post.id
        # Three people replied long ago; then two people wrote WALK replies between them.
        _replies(store, "general", parent, ["old1", "old2", "old3"])
        _replies(store, "general", parent, ["bo", "cy"] * (WALK // 2))
        now = await store.create_reply("general", parent, "bo", "and again")
        # Deleting a reply takes it out of the count and lets the walk reach one
        # reply further back.
        await store.delete_post(now.post.id)
        (post,) = [p for p in await store.list_posts(["general"]) if p.id == parent]
        return _thread(told[-2]), post.replies, post.repliers

    thread, after, names = run(main())
    assert (thread.replies, thread.repliers) == (3 + WALK + 1, ("bo", "cy"))
    assert (after, names) == (3 + WALK, ("cy", "bo"))


def _thread(commit: Commit) -> Thread:
    """The thread's summary the reply's event of ``commit`` carries."""
    (event,) = commit.events
    assert event.thread is not None
    return event.thread


INDEX = "ix_posts_parent_id_deleted_id"


def _indexes(url: str, revision: str | None) -> set[str]:
    """The posts table's indexes once the schema is taken to ``revision`` (down), or
    left where it is (None)."""
    return schema_at(url, revision, index_names("posts"))


def test_the_threads_index_comes_with_its_migration_and_goes_with_it(
    each_database_url: str,
) -> None:
    async def summary(store: Store, parent: int) -> tuple[int, tuple[str, ...]]:
        (post,) = [p for p in await store.list_posts(["general"]) if p.id == parent]
        return post.replies, post.repliers

    async def thread(store: Store) -> tuple[int, tuple[int, tuple[str, ...]]]:
        parent = (await store.create_post("general", "ann", "the plan")).post.id
        for author in ["bo", "cy", "di"]:
            await store.create_reply("general", parent, author, "yes")
        gone = await store.create_reply("general", parent, "ed", "no")
        await store.delete_post(gone.post.id)
        return parent, await summary(store, parent)

    store = Store.from_url(each_database_url)
    try:
        run(store.create_schema())
        assert INDEX in _indexes(each_database_url, None)
        parent, before = run(thread(store))
    finally:
        store.close()
    assert before == (3, ("di", "cy", "bo"))
    assert INDEX not in _indexes(each_database_url, "0014_search_pairs")
    # Up again, it returns, and the summaries read the same (the code reads a schema
    # at its own revision: the stored count of 0016_reply_counts went down with it).
    store = Store.from_url(each_database_url)
    try:
        run(store.create_schema())
        assert INDEX in _indexes(each_database_url, None)
        assert run(summary(store, parent)) == before
    finally:
        store.close()


# The index of a post's replies alone, which that index made redundant, and the
# revision it was last part of (migration 0017_one_thread_index).
REDUNDANT = "ix_posts_parent_id"
WITH_REDUNDANT = "0016_reply_counts"


def test_a_database_at_0016_with_threads_upgrades_to_one_index_of_replies(
    each_database_url: str,
) -> None:
    async def thread(store: Store) -> int:
        parent = (await store.create_post("general", "ann", "the plan")).post.id
        for author in ["bo", "cy", "di"]:
            await store.create_reply("general", parent, author, "yes")
        gone = await store.create_reply("general", parent, "ed", "no")
        await store.delete_post(gone.post.id)
        return parent

    async def read(store: Store, parent: int) -> tuple[int, tuple[str, ...], list[str]]:
        post = await store.get_post(parent)
        replies = await store.list_replies(parent)
        return post.replies, post.repliers, [f"{r.author}: {r.body}" for r in replies]

    store = Store.from_url(each_database_url)
    try:
        asyncio.run(store.create_schema())
        parent = asyncio.run(thread(store))
        before = asyncio.run(read(store, parent))
    finally:
        store.close()
    assert before == (3, ("di", "cy", "bo"), ["di: yes", "cy: yes", "bo: yes"])
    # Down to 0016, the index comes back beside the one that covers it.
    assert {INDEX, REDUNDANT} <= _indexes(each_database_url, WITH_REDUNDANT)
    store = Store.from_url(each_database_url)
    try:
        asyncio.run(store.create_schema())
        indexes = _indexes(each_database_url, None)
        assert INDEX in indexes and REDUNDANT not in indexes
        # The thread reads the same, takes a reply, and its deletion finds its replies.
        assert asyncio.run(read(store, parent)) == before
        asyncio.run(store.create_reply("general", parent, "fi", "late"))
        assert asyncio.run(read(store, parent))[2] == ["fi: late", "di: yes", "cy: yes", "bo: yes"]
        asyncio.run(store.delete_post(parent))
    finally:
        store.close()
    engine = make_engine(each_database_url)
    try:
        with engine.connect() as connection:
            live = connection.execute(
                text("SELECT count(*) FROM posts WHERE parent_id = :p AND NOT deleted"),
                {"p": parent},
            ).scalar_one()
    finally:
        engine.dispose()
    assert live == 0


# A thread's count read in a thread of LONG replies may cost this many times one read
# in a thread of 10: counted over the thread's live replies it cost about 8 times on
# SQLite; stored with the post, it is one row's read either way.
COUNT_MARGIN = 2.0
# Reads timed in each thread, alternated: each is a fraction of a millisecond.
COUNT_ROUNDS = 41


def test_a_threads_count_costs_the_same_however_long_the_thread(store: Store) -> None:
    async def main() -> tuple[int, int]:
        short = (await store.create_post("general", "ann", "short")).post.id
        long = (await store.create_post("general", "ann", "long")).post.id
        return short, long

    short, long = run(main())
    _replies(store, "general", short, [f"p{i}" for i in range(10)])
    _replies(store, "general", long, [f"p{i % 500}" for i in range(LONG)])
    # The count's own query, as a summary reads it (storage/threads.py, on summaries).
    counts = {parent: threads.statements([parent])[0] for parent in (short, long)}
    timed: dict[int, list[float]] = {short: [], long: []}
    with Session(store._engine) as session:
        found = {parent: session.exec(query).all() for parent, query in counts.items()}
        for _ in range(COUNT_ROUNDS):
            for parent, query in counts.items():
                start = time.perf_counter()
                session.exec(query).all()
                timed[parent].append(time.perf_counter() - start)
    assert found == {short: [(short, 10)], long: [(long, LONG)]}
    ratio = statistics.median(timed[long]) / statistics.median(timed[short])
    assert ratio < COUNT_MARGIN, (
        f"a count in a thread of {LONG} cost {ratio:.1f}x one in a thread of 10 "
        f"(medians {statistics.median(timed[long]) * 1000:.3f} and "
        f"{statistics.median(timed[short]) * 1000:.3f} ms)"
    )
