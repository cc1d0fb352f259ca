"""A list's pinned section is read from the index of pinned posts, not by walking every
post (storage/lists.py, on reading the pinned section; migration 0021_pinned_posts_index):
a dashboard and each of its "Older posts" pages read that section."""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Sequence
from typing import Any

import pytest
from sqlalchemy import Engine

from feed.store import Store
from feed.values import Change, NewPost
from tests.migrating import index_names, schema_at
from tests.plans import Sent, migrated, sent_by

INDEX = "ix_posts_pinned"
BEFORE = "0020_access_changes"  # the revision before the index came
POSTS = 6_000  # in turn in these channels, one of them private
CHANNELS = ("general", "announcements", "secret")
SIZE = 50

# Whose list: its channels, the private channels its reader may see (as pages.py asks),
# and the channels of the pinned posts it shows (one is pinned in each channel).
LISTS: dict[str, tuple[Sequence[str] | None, Collection[str] | None, set[str]]] = {
    "an admin's, every channel": (None, None, set(CHANNELS)),
    "a reader's, every public channel": (None, frozenset(), {"general", "announcements"}),
    "a member's, every channel": (None, frozenset({"secret"}), set(CHANNELS)),
    "a channel's": (["general"], frozenset(), {"general"}),
    "a reader's, some channels": (
        ["general", "secret"],
        frozenset({"secret"}),
        {"general", "secret"},
    ),
}


def _filled(store: Store) -> list[int]:
    """``POSTS`` posts, three of the oldest pinned, one in each channel: walked newest
    first, nearly every post comes before them."""

    async def made() -> list[int]:
        await store.create_channel("secret", "Secret", "", private=True)
        ids: list[int] = []
        for start in range(0, POSTS, 1000):
            news = [NewPost(CHANNELS[n % 3], "ann", f"post {start + n}") for n in range(1000)]
            for change in await store.create_posts(news):
                assert isinstance(change, Change)
                ids.append(change.post.id)
        for post_id in ids[99:102]:
            await store.set_pinned(post_id, True)
        return ids

    return asyncio.run(made())


def _section_reads(sent: Sent) -> Sent:
    """The statements that read the pinned section (or its cut), not the history."""
    return [
        (statement, parameters)
        for statement, parameters in sent
        if "pinned IS 1" in statement or "pinned IS true" in statement
        if "pinned IS 0" not in statement and "pinned IS false" not in statement
    ]


def _plan(engine: Engine, statement: str, parameters: Any) -> str:
    """How the database answers ``statement``, on PostgreSQL with statistics taken, as
    autovacuum would have them for a table this size: left to choose, with no way
    disabled."""
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        if engine.dialect.name == "sqlite":
            cursor.execute(f"EXPLAIN QUERY PLAN {statement}", parameters)
            return "\n".join(str(row[-1]) for row in cursor.fetchall())
        cursor.execute("ANALYZE posts")
        cursor.execute(f"EXPLAIN {statement}", parameters)
        return "\n".join(str(row[0]) for row in cursor.fetchall())
    finally:
        raw.close()


@pytest.mark.parametrize("whose", LISTS)
def test_a_lists_pinned_section_is_read_from_the_index_of_pinned_posts(
    each_database_url: str, whose: str
) -> None:
    channels, private, pinned = LISTS[whose]
    with migrated(each_database_url) as store:
        ids = _filled(store)
        pages: list[Any] = []

        def read() -> None:
            pages.append(asyncio.run(store.front_page(channels, SIZE, private=private)))
            before = ids[len(ids) // 2]
            pages.append(asyncio.run(store.older_posts(channels, before, SIZE, private=private)))

        sent = _section_reads(sent_by(store._engine, read, naming="pinned"))
        # The section on the first page, and its cut on the "Older posts" one.
        assert len(sent) == 2, sent
        front, _older = pages
        assert {p.channel for p in front.posts if p.pinned} == pinned
        for statement, parameters in sent:
            plan = _plan(store._engine, statement, parameters)
            assert INDEX in plan, plan
            # Not the posts walked by id (PostgreSQL's key, SQLite's table), nor every
            # live top-level post read from the index of replies.
            assert "posts_pkey" not in plan and "Seq Scan on posts" not in plan, plan
            assert "SCAN posts" not in plan, plan
            assert "ix_posts_parent_id_deleted_id" not in plan, plan


def test_the_index_of_pinned_posts_comes_with_its_migration_and_goes_with_it(
    each_database_url: str,
) -> None:
    with migrated(each_database_url) as store:
        post = asyncio.run(store.create_post("general", "ann", "pinned")).post.id
        asyncio.run(store.set_pinned(post, True))
    assert INDEX in schema_at(each_database_url, None, index_names("posts"))
    assert INDEX not in schema_at(each_database_url, BEFORE, index_names("posts"))
    # Up again, it returns, and the section reads the same.
    with migrated(each_database_url) as store:
        assert INDEX in schema_at(each_database_url, None, index_names("posts"))
        page = asyncio.run(store.front_page(None, SIZE))
        assert [p.id for p in page.posts if p.pinned] == [post]
