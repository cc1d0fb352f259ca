"""Migrations: a database from before migrations is upgraded in place, keeping its
posts and event ids; the migrations build exactly the tables the models describe."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlmodel import SQLModel

from feed import schema
from feed.models import EventKind
from feed.store import Store, make_engine
from tests.test_cli import run_feed

DATA = Path(__file__).parent / "data"


@pytest.fixture
def database_url(each_database_url: str) -> str:
    return each_database_url


@pytest.fixture
def old_database(tmp_path: Path) -> Path:
    """A SQLite file written by feed 0.1.0, which had no migrations."""
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as connection:
        connection.executescript((DATA / "feed-0.1.0.sql").read_text())
    connection.close()
    return path


@pytest.mark.slow
def test_a_database_from_before_migrations_keeps_its_posts_and_event_ids(
    old_database: Path,
) -> None:
    url = f"sqlite:///{old_database}"
    before = run_feed("db", "current", FEED_DATABASE_URL=url)
    assert before.returncode == 0, before.stderr
    assert before.stdout.startswith("schema at revision unversioned (feed 0.1.0); newest is")

    upgraded = run_feed("db", "upgrade", FEED_DATABASE_URL=url)
    assert upgraded.returncode == 0, upgraded.stderr
    assert upgraded.stdout.strip() == (
        f"schema at revision {schema.head()} (upgraded from unversioned (feed 0.1.0))"
    )
    again = run_feed("db", "upgrade", FEED_DATABASE_URL=url)
    assert again.stdout.strip() == f"schema at revision {schema.head()} (already current)"
    # Posts written before their HTML was kept have it now: no read renders Markdown.
    with sqlite3.connect(old_database) as db:
        html = dict(db.execute("SELECT id, html FROM posts").fetchall())
    db.close()
    assert html == {
        1: "<p>first post, edited</p>\n",
        2: "<p>Office closed <strong>Friday</strong></p>\n",
        3: "",
    }

    store = Store.from_url(url)
    try:
        asyncio.run(store.create_schema())
        events = asyncio.run(store.events_after(0))
        assert [(e.id, e.kind, e.post.id) for e in events] == [
            (1, EventKind.POST_CREATED, 1),
            (2, EventKind.POST_CREATED, 2),
            (3, EventKind.POST_UPDATED, 1),
            (4, EventKind.POST_CREATED, 3),
            (5, EventKind.POST_DELETED, 3),
            (6, EventKind.POST_PINNED, 2),
        ]
        posts = asyncio.run(store.list_posts())
        assert [(p.id, p.body, p.pinned) for p in posts] == [
            (2, "Office closed **Friday**", True),
            (1, "first post, edited", False),
        ]
        # New events come after the old ones (past the clock: storage/log.py, on ids never reused).
        after = asyncio.run(store.create_post("general", "ada", "after")).event_id
        assert after is not None and after > 6
        assert [e.id for e in asyncio.run(store.events_after(6))] == [after]
    finally:
        store.close()


def test_migrations_build_exactly_the_tables_the_models_describe(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        assert schema.upgrade(engine) == (None, schema.head())
        with engine.connect() as connection:
            context = MigrationContext.configure(
                connection, opts={"include_name": schema.include_name}
            )
            differences = compare_metadata(context, SQLModel.metadata)
        assert differences == []
        assert schema.current(engine) == schema.head()
    finally:
        engine.dispose()


@pytest.mark.slow
def test_an_unreachable_database_is_a_clear_error() -> None:
    result = run_feed("db", "upgrade", FEED_DATABASE_URL="postgresql://nobody@127.0.0.1:1/feed")
    assert result.returncode == 1
    assert result.stderr.startswith("feed: cannot reach the database:")
