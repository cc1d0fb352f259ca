"""The index of personal events holds only personal events, and a person's replay goes
by the log's order (storage/history.py, on personal events; migration
0019_personal_events_index)."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from sqlalchemy import text

from feed.store import Store, make_engine
from tests.migrating import schema_at
from tests.plans import Sent, explained, migrated, sent_by

INDEX = "ix_events_recipient"
BEFORE = "0018_events_by_post"  # the revision whose index held every event


def _statements(store: Store, work: Coroutine[Any, Any, object]) -> Sent:
    """The statements naming ``events`` that ``work`` sends, as sent."""
    return sent_by(store._engine, lambda: asyncio.run(work))


def _indexed(url: str, revision: str | None = None) -> dict[str, Any]:
    """The events table's personal index once the schema is taken to ``revision``."""
    found = schema_at(url, revision, lambda i: i.get_indexes("events"))
    return next((dict(i) for i in found if i["name"] == INDEX), {})


def _only_personal(url: str) -> bool:
    """Whether the index leaves out the events for everyone, read from the database."""
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            if engine.dialect.name == "sqlite":
                sql = "SELECT sql FROM sqlite_master WHERE name = :name"
            else:
                sql = "SELECT indexdef FROM pg_indexes WHERE indexname = :name"
            made = str(connection.execute(text(sql), {"name": INDEX}).scalar_one())
        return "recipient IS NOT NULL" in made.replace("(", "").replace(")", "")
    finally:
        engine.dispose()


def test_a_persons_replay_goes_by_the_log_not_by_a_sort_of_everything_after(
    database_url: str,
) -> None:
    with migrated(database_url) as store:

        async def written() -> int:
            first = (await store.create_post("general", "ann", "hello @bo")).event_id
            for n in range(20):
                await store.create_post("general", "ann", f"p{n}")
            assert first is not None
            return first

        first = asyncio.run(written())
        sent = _statements(
            store,
            store.events_after(first - 2, person="bo", limit=5),
        )
        sent += _statements(store, store.count_events_after(first - 2, person="bo", limit=6))
        sent += _statements(store, store.has_personal_after("bo", first - 2))
        events = asyncio.run(store.events_after(first - 2, person="bo", limit=5))
    # What the replay reads: the mention (written just before its post), then the log
    # in order, five in all.
    assert [e.kind for e in events][:2] == ["mention", "post-created"] and len(events) == 5
    plans = explained(make_engine(database_url), sent)
    assert len(plans) == 3, sent
    for plan in plans[:2]:
        # Not the union of two index ranges sorted whole: that read every event after
        # the position, however far back, before the limit could stop it.
        assert "TEMP B-TREE" not in plan and "MULTI-INDEX OR" not in plan, plan
    assert f"INDEX {INDEX} (recipient=?" in plans[2], plans[2]


def test_the_personal_index_holds_personal_events_only_and_goes_back_with_its_migration(
    each_database_url: str,
) -> None:
    with migrated(each_database_url) as store:
        mention = asyncio.run(store.create_post("general", "ann", "hi @bo")).event_id
    assert _indexed(each_database_url)["column_names"] == ["recipient"]
    assert _only_personal(each_database_url)
    assert _indexed(each_database_url, BEFORE)["column_names"] == ["recipient"]
    assert not _only_personal(each_database_url)
    with migrated(each_database_url) as store:
        assert _only_personal(each_database_url)
        assert asyncio.run(store.has_personal_after("bo", 0))
        assert mention is not None and not asyncio.run(store.has_personal_after("bo", mention))
        # The lookup of one person's events goes by the index, on either store.
        sent = _statements(store, store.has_personal_after("bo", 0))
    engine = make_engine(each_database_url)
    try:
        (plan,) = explained(engine, sent)
    finally:
        engine.dispose()
    assert INDEX in plan, plan
