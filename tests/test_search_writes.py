"""The search index's write side on both stores: a group's posts are indexed by one
statement for the group, in the group's own transaction, so a search finds exactly the
posts that were committed (and none that were refused), and edits and deletes still
change the index; a database at the filter indexes gets there by its migration."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
from alembic import command
from sqlalchemy import text

from feed import schema
from feed.search import parse
from feed.search_values import Cursor, Filters, Results
from feed.store import Store, make_engine
from feed.values import Change, NewPost
from tests.test_search import database_at


@pytest.fixture
def database_url(each_database_url: str) -> str:
    return each_database_url


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def found(store: Store, q: str, limit: int = 200) -> list[int]:
    results: Results = run(store.search(parse(q), Filters(), limit=limit, cursor=Cursor()))
    return sorted(hit.post.id for hit in results.hits)


def test_a_batch_is_searchable_exactly_as_it_was_committed(store: Store) -> None:
    news = [NewPost("general", "ana", f"lift report {n} word{n}") for n in range(40)]
    # Refused items in the middle of the group: they must leave nothing in the index.
    news[7] = NewPost("nowhere", "ana", "lift report ghost")
    news[23] = NewPost("general", "ana", "lift reply ghost", parent=999_999)
    outcomes = run(store.create_posts(news))
    made = {n: o.post.id for n, o in enumerate(outcomes) if isinstance(o, Change)}
    assert sorted(made) == [n for n in range(40) if n not in (7, 23)]
    assert found(store, "lift") == sorted(made.values())
    assert found(store, "ghost") == []
    # Each post under its own words: the index rows belong to the right ids.
    for n, post_id in made.items():
        assert found(store, f"word{n}") == [post_id]


def test_edits_and_deletes_still_change_the_index(store: Store) -> None:
    outcomes = run(store.create_posts([NewPost("general", "ana", f"alpha {n}") for n in range(3)]))
    first, second, third = (o.post.id for o in outcomes)
    run(store.edit_post(first, "beta instead"))
    run(store.delete_post(second))
    assert found(store, "alpha") == [third]
    assert found(store, "beta") == [first]
    single = run(store.create_post("general", "bo", "gamma single")).post.id
    assert found(store, "gamma") == [single]


def test_a_database_at_the_filter_indexes_indexes_by_group(database_url: str) -> None:
    old = database_at(
        database_url, "0012_search_indexes", [("ana", b) for b in ["delta old", "epsilon old"]]
    )
    store = Store.from_url(database_url)
    try:
        run(store.create_schema())
        assert schema.current(store._engine) == schema.head()
        with store._engine.connect() as connection:
            if connection.dialect.name == "sqlite":
                triggers = connection.exec_driver_sql(
                    "SELECT name FROM sqlite_master WHERE type = 'trigger'"
                ).scalars()
                # No per-row insert trigger: the group's statement fills the index.
                assert sorted(triggers) == ["posts_search_delete", "posts_search_update"]
        assert found(store, "old") == old
        outcomes = run(
            store.create_posts([NewPost("old", "bo", f"delta new {n}") for n in range(3)])
        )
        assert found(store, "delta") == [old[0]] + [o.post.id for o in outcomes]
        run(store.edit_post(old[0], "zeta now"))
        assert found(store, "delta") == [o.post.id for o in outcomes]
    finally:
        store.close()
    # And back: the trigger returns, and keeps the index in step again.
    engine = make_engine(database_url)
    try:
        with engine.begin() as connection:
            command.downgrade(schema._config(connection), "0012_search_indexes")
            theta = connection.execute(
                text(
                    "INSERT INTO posts (channel_id, author, body, html, created_at,"
                    " pinned, deleted) VALUES ((SELECT id FROM channels WHERE name = 'old'),"
                    " 'ana', 'theta', '', :at, false, false) RETURNING id"
                ),
                {"at": datetime.now(UTC)},
            ).scalar_one()
            if connection.dialect.name == "sqlite":
                hits = connection.exec_driver_sql(
                    "SELECT rowid FROM posts_search WHERE posts_search MATCH 'theta'"
                ).scalars()
            else:
                hits = connection.exec_driver_sql(
                    "SELECT id FROM posts WHERE posts_search_vector @@ 'theta'::tsquery"
                ).scalars()
            assert list(hits) == [theta]
    finally:
        engine.dispose()
