"""A page's posts' events are looked up by post, not by reading the whole log
(storage/reading.py, on a page's posts' events; migration 0018_events_by_post)."""

from __future__ import annotations

import asyncio

from sqlalchemy import Engine, text
from sqlalchemy.sql import Select
from sqlmodel import Session

from feed.storage import reading
from feed.storage.reading import created_events_query, reply_events_query
from feed.store import Store, make_engine
from feed.values import NewPost
from tests.migrating import index_names, schema_at
from tests.plans import explained, migrated, sent_by

INDEX = "ix_events_post_id"
BEFORE = "0017_one_thread_index"  # the revision before the index came


def _plan(engine: Engine, query: Select) -> str:  # type: ignore[type-arg]
    """The database's plan for ``query``, as text (tests/plans.py)."""
    sql = str(query.compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True}))
    (plan,) = explained(engine, [(sql, ())])
    return plan


def _thread(store: Store) -> tuple[list[int], int]:
    async def made() -> tuple[list[int], int]:
        posts = [(await store.create_post("general", "ann", f"p{n}")).post.id for n in range(3)]
        reply = await store.create_reply("general", posts[0], "bo", "yes")
        assert reply.event_id is not None
        return posts, reply.event_id

    return asyncio.run(made())


def test_a_pages_posts_events_are_looked_up_by_post(each_database_url: str) -> None:
    with migrated(each_database_url) as store:
        posts, reply_event = _thread(store)
        # What the lookups return, through the index.
        page = asyncio.run(store.front_page(["general"], 10, events=True))
        assert sorted(page.created) == posts and len(set(page.created.values())) == 3
        assert page.replied == {posts[0]: reply_event}
    engine = make_engine(each_database_url)
    try:
        for query in (created_events_query(posts), reply_events_query(posts)):
            plan = _plan(engine, query)
            assert INDEX in plan, plan
            assert "SCAN events" not in plan, plan  # SQLite's whole-table read
    finally:
        engine.dispose()


def _indexes(url: str, revision: str | None = None) -> set[str]:
    """The events table's indexes once the schema is taken to ``revision`` (down), or
    left where it is (None)."""
    return schema_at(url, revision, index_names("events"))


def test_the_events_by_post_index_comes_with_its_migration_and_goes_with_it(
    each_database_url: str,
) -> None:
    with migrated(each_database_url) as store:
        posts, reply_event = _thread(store)
    assert INDEX in _indexes(each_database_url)
    assert INDEX not in _indexes(each_database_url, BEFORE)
    # Up again, it returns, and the lookups read the same.
    with migrated(each_database_url) as store:
        assert INDEX in _indexes(each_database_url)
        page = asyncio.run(store.front_page(["general"], 10, events=True))
        assert page.replied == {posts[0]: reply_event}


# Events in the log for the unread count's plan: enough that PostgreSQL, with its
# statistics, weighs walking the events' index by post against the log's own order.
LOG = 20_000


def test_an_unread_count_reads_the_log_from_the_position_not_the_index_by_post(
    each_database_url: str,
) -> None:
    with migrated(each_database_url) as store:

        async def written() -> list[int]:
            ids: list[int] = []
            for start in range(0, LOG, 1000):
                news = [NewPost("general", "gen", f"p{start + k}") for k in range(1000)]
                ids += [c.event_id for c in await store.create_posts(news)]  # type: ignore[union-attr]
            return ids

        ids = asyncio.run(written())
    engine = make_engine(each_database_url)
    try:
        with engine.begin() as connection:
            if engine.dialect.name == "postgresql":
                connection.execute(text("ANALYZE"))
            (channel,) = connection.execute(text("SELECT id FROM channels WHERE name = 'general'"))
        with Session(engine) as session:
            # A reader half-way through the log: more than the cap left to count.
            counted: list[int] = []
            sent = sent_by(
                engine,
                lambda: counted.append(
                    reading._count(session, "bo", channel[0], ids[LOG // 2], None, mentions=False)
                ),
            )
        assert counted == [reading.COUNT_CAP]
        plan = explained(engine, sent[-1:])[0]
    finally:
        engine.dispose()
    # Walking the index by post visits the posts before the position too: on
    # PostgreSQL a merge join read 151,001 of them for a count of 1,000 (30 ms).
    assert INDEX not in plan, plan
