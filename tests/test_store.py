"""The store: posts, the event log in commit order, current-state replay."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio.to_thread
import psycopg
import pytest
from sqlalchemy import create_engine

from feed import markdown
from feed.models import EventKind
from feed.storage.log import WRITE_LOCK_KEY
from feed.store import (
    ChannelArchived,
    ChannelNotFound,
    PostDeleted,
    PostNotFound,
    Store,
    StoreUnavailable,
    Unstorable,
    make_engine,
)
from feed.values import AccessChange, Change, ChannelChange, Commit, FeedEvent, FrontPage, NewPost
from tests.services import Postgres


@pytest.fixture
def database_url(each_database_url: str) -> str:
    return each_database_url


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def test_seed_channels_exist_once(store: Store) -> None:
    run(store.create_schema())
    assert [c.name for c in run(store.list_channels())] == ["announcements", "general"]


def test_every_change_logs_one_event_in_order(store: Store) -> None:
    created = run(store.create_post("general", "ann", "first"))
    edited = run(store.edit_post(created.post.id, "second"))
    pinned = run(store.set_pinned(created.post.id, True))
    unpinned = run(store.set_pinned(created.post.id, False))
    deleted = run(store.delete_post(created.post.id))
    ids = [c.event_id for c in (created, edited, pinned, unpinned, deleted)]
    assert created.event_id is not None
    assert ids == list(range(created.event_id, created.event_id + 5))
    events = run(store.events_after(0))
    assert [e.kind for e in events] == [
        EventKind.POST_CREATED,
        EventKind.POST_UPDATED,
        EventKind.POST_PINNED,
        EventKind.POST_UNPINNED,
        EventKind.POST_DELETED,
    ]
    assert run(store.latest_event_id()) == ids[-1]


def test_every_write_is_announced_before_its_caller_resumes_as_a_reader_reads_it(
    store: Store,
) -> None:
    async def main() -> list[Commit]:
        told: list[Commit] = []
        store.on_commit(told.append)

        async def announced(write: Awaitable[Change | ChannelChange]) -> None:
            before = len(told)
            change = await write
            # Told already: the caller resumed after the announcement, not before it.
            assert len(told) == before + 1
            commit = told[-1]
            assert [e.id for e in commit.events] == [change.event_id]
            assert commit.events == await store.events_after(commit.after)

        created = await store.create_post("general", "ann", "one")
        assert len(told) == 1
        post_id = created.post.id
        await announced(store.edit_post(post_id, "two"))
        await announced(store.set_pinned(post_id, True))
        await announced(store.set_pinned(post_id, False))
        await announced(store.delete_post(post_id))
        await announced(store.create_channel("ops", "Ops", "", private=True))
        await announced(store.update_channel("ops", title="Operations"))
        await announced(store.set_archived("ops", True))
        await announced(store.set_archived("ops", False))
        return told

    told = run(main())
    kinds = [e.kind.value for commit in told for e in commit.events]
    assert kinds == [
        "post-created",
        "post-updated",
        "post-pinned",
        "post-unpinned",
        "post-deleted",
        "channel-created",
        "channel-updated",
        "channel-archived",
        "channel-restored",
    ]
    # In commit order, each right after the one before.
    assert all(told[n].after == told[n - 1].events[-1].id for n in range(1, len(told)))
    # Channels decide who may read what: their changes are changes of access too.
    assert [bool(commit.access) for commit in told] == [False] * 5 + [True] * 4
    assert all(commit.events[0].private for commit in told[5:])


def test_changes_of_access_are_announced_with_what_they_changed(store: Store) -> None:
    async def main() -> list[AccessChange]:
        told: list[Commit] = []
        store.on_commit(told.append)
        token = await store.add_token("ann", "writer", "api", None, "d" * 64)
        await store.revoke_token(token.id)
        await store.revoke_token(token.id)  # revoked already: nothing changes
        await store.end_session("s" * 64, datetime.now(UTC) + timedelta(days=1))
        await store.set_member("general", "ann", may_post=False)
        await store.set_member("general", "ann", may_post=False)  # as it was
        await store.set_member("general", "ann", may_post=True)
        await store.remove_member("general", "ann")
        await store.secret("key", lambda: "made once")
        assert all(not commit.events for commit in told)
        return [commit.access for commit in told]

    assert run(main()) == [
        AccessChange(tokens=True),
        AccessChange(revoked=frozenset({1})),
        AccessChange(ended=frozenset({"s" * 64})),
        AccessChange(members=True),
        AccessChange(members=True),
        AccessChange(members=True),
    ]


def test_no_op_changes_log_nothing(store: Store) -> None:
    created = run(store.create_post("general", "ann", "same"))
    assert run(store.edit_post(created.post.id, "same")).event_id is None
    assert run(store.set_pinned(created.post.id, False)).event_id is None
    assert run(store.latest_event_id()) == created.event_id


def test_events_carry_the_current_state_of_their_post(store: Store) -> None:
    created = run(store.create_post("general", "ann", "draft"))
    run(store.edit_post(created.post.id, "final"))
    first = run(store.events_after(0, limit=1))[0]
    assert first.kind is EventKind.POST_CREATED
    assert first.post.body == "final"
    assert first.post.edited_at is not None


def test_delete_leaves_a_tombstone_without_the_text(store: Store) -> None:
    created = run(store.create_post("general", "ann", "secret"))
    run(store.delete_post(created.post.id))
    post = run(store.get_post(created.post.id))
    assert post.deleted and post.body == ""
    assert run(store.list_posts()) == []
    with pytest.raises(PostDeleted):
        run(store.edit_post(created.post.id, "again"))


def test_unknown_channel_and_post_are_errors_that_name_them(store: Store) -> None:
    with pytest.raises(ChannelNotFound, match="'nope'"):
        run(store.create_post("nope", "ann", "x"))
    with pytest.raises(PostNotFound, match="42"):
        run(store.edit_post(42, "x"))
    assert run(store.latest_event_id()) == 0


def test_events_after_filters_by_channel_and_limit(store: Store) -> None:
    for i in range(6):
        run(store.create_post("general" if i % 2 else "announcements", "ann", f"p{i}"))
    general = run(store.events_after(0, ["general"]))
    assert [e.post.body for e in general] == ["p1", "p3", "p5"]
    ids = [e.id for e in run(store.events_after(0))]
    assert [e.id for e in run(store.events_after(ids[1], limit=2))] == ids[2:4]


def test_list_posts_pages_newest_first(store: Store) -> None:
    for i in range(5):
        run(store.create_post("general", "ann", f"p{i}"))
    first = run(store.list_posts(["general"], limit=2))
    assert [p.body for p in first] == ["p4", "p3"]
    second = run(store.list_posts(["general"], before=first[-1].id, limit=2))
    assert [p.body for p in second] == ["p2", "p1"]


def test_front_page_holds_pinned_posts_and_the_matching_event_id(store: Store) -> None:
    old = run(store.create_post("general", "ann", "old but pinned"))
    run(store.set_pinned(old.post.id, True))
    for i in range(3):
        last = run(store.create_post("general", "ann", f"new{i}"))
    page = run(store.front_page(["general"], 2))
    assert [p.body for p in page.posts] == ["new2", "new1", "old but pinned"]
    assert page.older_before == page.posts[1].id
    assert page.last_event_id == last.event_id == run(store.latest_event_id())


def test_pinned_posts_past_the_front_pages_section_are_in_its_history(store: Store) -> None:
    ids = [run(store.create_post("general", "ann", f"p{i}")).post.id for i in range(8)]
    for post_id in ids[:4]:
        run(store.set_pinned(post_id, True))
    page = run(store.front_page(["general"], 2))
    # The section (the two newest pinned), then the two newest others, of any kind.
    assert [p.id for p in page.posts] == [ids[7], ids[6], ids[3], ids[2]]
    assert page.older_before == ids[6]
    older = run(store.older_posts(["general"], ids[6], 2))
    assert [p.id for p in older.posts] == [ids[5], ids[4]]
    # The pinned posts older than the section's oldest are history too.
    assert [p.id for p in run(store.older_posts(["general"], ids[4], 2)).posts] == [ids[1], ids[0]]
    # Without a full section, every pinned post is in it and none in the history.
    run(store.set_pinned(ids[3], False))
    assert [p.id for p in run(store.older_posts(["general"], ids[4], 5)).posts] == [ids[3]]
    assert [p.id for p in run(store.front_page(["general"], 5)).posts] == ids[::-1]


def test_ids_stay_in_commit_order_under_concurrent_writers(store: Store) -> None:
    async def writers() -> list[int]:
        async def write(n: int) -> list[int]:
            out = []
            for i in range(25):
                change = await store.create_post("general", f"w{n}", f"{n}-{i}")
                assert change.event_id is not None
                out.append(change.event_id)
            return out

        results = await asyncio.gather(*(write(n) for n in range(8)))
        return sorted(i for ids in results for i in ids)

    ids = run(writers())
    assert ids == list(range(ids[0], ids[0] + 200))
    assert [e.id for e in run(store.events_after(0, limit=500))] == ids


def test_posts_that_arrive_together_commit_together_each_with_its_own_answer(
    store: Store,
) -> None:
    async def burst() -> tuple[list[object], list[Commit]]:
        told: list[Commit] = []
        store.on_commit(told.append)
        results = await asyncio.gather(
            store.create_post("general", "ann", "one"),
            store.create_post("nowhere", "ann", "lost"),
            store.create_post("announcements", "bob", "two"),
            store.create_post("old", "bob", "late"),
            return_exceptions=True,
        )
        return results, told

    run(store.create_channel("old", "Old", ""))
    archived_at = run(store.set_archived("old", True)).event_id
    results, told = run(burst())
    one, missing, two, archived = results
    assert isinstance(missing, ChannelNotFound) and missing.name == "nowhere"
    assert isinstance(archived, ChannelArchived) and archived.name == "old"
    assert isinstance(one, Change) and isinstance(two, Change)
    first = run(store.latest_event_id()) - 1
    assert (one.event_id, two.event_id) == (first, first + 1)
    # One commit, one call, in id order; what it hands over is what a reader reads back,
    # with the event just before it in the log.
    assert len(told) == 1
    read = run(store.events_after(first - 1))
    assert told[0].events == read and told[0].after == archived_at
    assert [(e.channel, e.post.body if e.post else None) for e in read] == [
        ("general", "one"),
        ("announcements", "two"),
    ]
    assert run(store.get_post(one.post.id)) == one.post


def test_ended_sessions_are_kept_until_they_expire(store: Store) -> None:
    now = datetime.now(UTC)
    run(store.end_session("a" * 64, now - timedelta(seconds=1)))  # already past its expiry
    run(store.end_session("b" * 64, now + timedelta(days=1)))
    run(store.end_session("b" * 64, now + timedelta(days=1)))  # twice is once
    assert run(store.ended_sessions(["a" * 64, "b" * 64, "c" * 64])) == {"b" * 64}
    assert run(store.ended_sessions([])) == set()


def test_front_page_and_its_event_id_come_from_one_snapshot_under_concurrent_writers(
    database_url: str, store: Store
) -> None:
    """Four writers in their own stores (as four processes would be) post while pages are
    read. Each page's posts must be exactly the newest posts whose events are at or
    before the page's event id: a newer id would make its stream skip posts for good."""
    limit, stop = 5, threading.Event()

    def write(n: int) -> None:
        async def loop() -> None:
            writer = Store.from_url(database_url)
            try:
                for i in range(300):
                    if stop.is_set():
                        return
                    await writer.create_post("general", f"w{n}", f"{n}-{i}")
            finally:
                writer.close()

        asyncio.run(loop())

    async def read_pages() -> list[FrontPage]:
        pages = []
        for _ in range(150):
            pages.append(await store.front_page(["general"], limit))
        return pages

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    try:
        pages = run(read_pages())
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    created = {e.post.id: e.id for e in run(store.events_after(0, limit=5000)) if e.post}
    wrong = []
    for page in pages:
        due = sorted((p for p, e in created.items() if e <= page.last_event_id), reverse=True)
        if [p.id for p in page.posts] != due[:limit]:
            wrong.append((page.last_event_id, [p.id for p in page.posts], due[:limit]))
    assert not wrong, f"{len(wrong)} of {len(pages)} pages disagree with their id: {wrong[:3]}"


def test_a_post_that_cannot_be_rendered_or_stored_fails_alone_and_others_in_its_group_commit(
    store: Store,
) -> None:
    async def burst() -> tuple[list[object], list[list[FeedEvent]]]:
        told: list[list[FeedEvent]] = []
        store.on_commit(lambda commit: told.append(commit.events))
        results = await asyncio.gather(
            store.create_post("general", "ann", "one"),
            store.create_post("general", "eve", "lone \ud800 surrogate"),
            store.create_post("general", "bob", "two"),
            return_exceptions=True,
        )
        return results, told

    results, told = run(burst())
    one, bad, two = results
    assert isinstance(bad, Unstorable) and "Unicode" in str(bad)
    assert isinstance(one, Change) and isinstance(two, Change)
    posts = run(store.list_posts(["general"]))
    assert [p.body for p in posts] == ["two", "one"]
    assert [e.post.body for batch in told for e in batch if e.post] == ["one", "two"]
    with pytest.raises(Unstorable):
        run(store.edit_post(one.post.id, "lone \udfff"))
    with pytest.raises(Unstorable):
        run(store.create_channel("odd", "title \ud800", ""))
    assert run(store.get_post(one.post.id)).body == "one"


def test_sqlite_commits_are_synced_so_an_acknowledged_post_survives_an_os_crash(
    tmp_path: Path,
) -> None:
    # In WAL mode NORMAL syncs only at checkpoints: a power cut can lose transactions
    # that were already acknowledged. FULL syncs the WAL at every commit.
    engine = make_engine(f"sqlite:///{tmp_path / 'feed.db'}")
    try:
        with engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    finally:
        engine.dispose()


def test_event_ids_start_past_the_clock_and_every_start_moves_them_on(store: Store) -> None:
    before = time.time_ns() // 1000
    run(store.create_schema())  # a start
    first = run(store.create_post("general", "ann", "one")).event_id
    second = run(store.create_post("general", "ann", "two")).event_id
    assert first is not None and second == first + 1 and first > before
    # Another start: ids jump past the clock again, never back.
    restarted = time.time_ns() // 1000
    run(store.create_schema())
    third = run(store.create_post("general", "ann", "three")).event_id
    assert third is not None and third > restarted > second
    assert run(store.has_event(second)) and run(store.has_event(0))
    assert not run(store.has_event(second + 1))
    assert [e.id for e in run(store.events_after(0))] == [first, second, third]


def test_newest_events_count_rows_across_the_gap_a_start_leaves(store: Store) -> None:
    before = [run(store.create_post("general", "ann", f"old {n}")).event_id for n in range(3)]
    run(store.create_schema())  # a restart: the next id jumps
    after = [run(store.create_post("general", "ann", f"new {n}")).event_id for n in range(2)]
    events, end = run(store.newest_events(4))
    assert [e.id for e in events] == [*before[1:], *after] and end == after[-1]


def test_a_writers_lock_not_free_in_time_is_the_database_being_busy_for_every_post_of_a_group(
    postgres: Postgres,
) -> None:
    """When the writers' lock does not come free within the lock's wait, every post of
    the group gets 503 (busy) after one try: it is nobody's own fault, so the group is
    not split and tried again half by half (commits.py), and no post gets a 500.
    Replies, which read their parents and threads in the same write (storage/postgres.py,
    on keyed posts and replies on the loop too)."""

    class Counting(Store):
        tries = 0

        async def _write_new(self, batch: Sequence[NewPost]) -> Any:
            self.tries += 1
            return await super()._write_new(batch)

    url = postgres.new_database()
    engine = create_engine(
        url.replace("postgresql://", "postgresql+psycopg://"),
        connect_args={"options": "-c lock_timeout=300"},
    )
    store = Counting(engine)

    async def main() -> list[object]:
        await store.create_schema()
        parent = (await store.create_post("general", "ann", "a thread")).post.id
        store.tries = 0
        with psycopg.connect(url, autocommit=True) as holder:
            holder.execute("SELECT pg_advisory_lock(%s)", (WRITE_LOCK_KEY,))
            return await asyncio.gather(
                *(store.create_reply("general", parent, "bo", f"reply {n}") for n in range(8)),
                return_exceptions=True,
            )

    try:
        results = run(main())
    finally:
        store.close()
    assert all(isinstance(r, StoreUnavailable) and "busy" in str(r) for r in results), results
    # One try for the first post, whose error the others, waiting meanwhile, share.
    assert store.tries == 1


def test_a_new_post_is_rendered_by_its_own_request_before_it_joins_a_group(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A long hostile body's Markdown delays nobody else's post (storage/posts.py, on
    rendering): while its rendering is held up, a post that arrives after it is
    written."""
    release, rendering = threading.Event(), threading.Event()
    render = markdown.to_html

    def slow_for_hostile(source: str) -> str:
        if source.startswith("hostile"):
            rendering.set()
            release.wait(10)
        return render(source)

    monkeypatch.setattr(markdown, "to_html", slow_for_hostile)

    async def main() -> None:
        body = "hostile " + "![" * markdown.RENDER_APART
        hostile = asyncio.ensure_future(store.create_post("general", "eve", body))
        await asyncio.to_thread(rendering.wait, 10)
        async with asyncio.timeout(10):
            honest = await store.create_post("general", "ann", "hello")
        assert not hostile.done() and honest.post.html == "<p>hello</p>\n"
        release.set()
        assert (await hostile).post.body == body

    try:
        run(main())
    finally:
        release.set()


def test_a_number_past_64_bits_is_unstorable_not_a_driver_error(store: Store) -> None:
    with pytest.raises((Unstorable, PostNotFound)):
        run(store.get_post(2**64))


def test_the_channels_a_group_reads_plainly_are_the_rows_the_orm_reads(tmp_path: Path) -> None:
    # SQLite's own read: PostgreSQL reads a group's channels with its lock (postgres.py).
    from sqlmodel import Session, select

    from feed.models import Channel
    from feed.storage.sqlite import channels as plain_channels

    store = Store.from_url(f"sqlite:///{tmp_path / 'feed.db'}")
    run(store.create_schema())
    run(store.create_channel("quiet", "Quiet", "no replies", private=True, replies=False))
    run(store.create_channel("old", "Old", ""))
    run(store.set_archived("old", True))
    names = ["general", "old", "quiet"]
    with Session(store._writer) as session:
        cursor = session.connection().connection.driver_connection.cursor()  # type: ignore[union-attr]
        plain = sorted(plain_channels(cursor, names), key=lambda c: c.name)
        orm = session.exec(select(Channel).where(Channel.name.in_(names))).all()  # type: ignore[attr-defined]
        by_orm = [(c.id, c.name, c.private, c.archived) for c in sorted(orm, key=lambda c: c.name)]
    assert [tuple(c) for c in plain] == by_orm
    flags = [(False, False), (False, True), (True, False)]  # general, old, quiet
    assert [(c.private, c.archived) for c in plain] == flags
    assert all(type(c.private) is bool and type(c.archived) is bool for c in plain)
    store.close()


def test_a_group_of_posts_is_written_while_every_worker_thread_is_busy(store: Store) -> None:
    """The group commit writes in a thread of its own (storage/engine.py, on the group
    commit's own thread): reads that fill every worker thread delay no post, and the
    commit is announced on the caller's loop before the post's caller resumes."""
    release = threading.Event()

    async def main() -> tuple[Change, list[int]]:
        told: list[int] = []
        store.on_commit(lambda commit: told.extend(e.id for e in commit.events))
        threads = int(anyio.to_thread.current_default_thread_limiter().total_tokens)
        # Every worker thread in a read that waits, and this test told when all are.
        all_busy = threading.Barrier(threads + 1)

        def slow_read() -> None:
            all_busy.wait(10)
            release.wait(10)

        busy = [asyncio.ensure_future(anyio.to_thread.run_sync(slow_read)) for _ in range(threads)]
        await asyncio.to_thread(all_busy.wait, 10)
        try:
            async with asyncio.timeout(5):
                change = await store.create_post("general", "ann", "written all the same")
            assert change.event_id in told
        finally:
            release.set()
            await asyncio.gather(*busy)
        return change, told

    try:
        change, told = run(main())
    finally:
        release.set()
    assert told == [change.event_id]
    assert [p.body for p in run(store.list_posts(["general"]))] == ["written all the same"]


def test_a_store_closed_and_used_again_writes_its_posts(store: Store) -> None:
    """Closing the store ends the group commit's thread; a later post starts another
    instead of waiting for the ended one."""
    run(store.create_post("general", "ann", "before"))
    store.close()

    async def again() -> Change:
        async with asyncio.timeout(5):
            return await store.create_post("general", "ann", "after")

    assert run(again()).post.body == "after"
    assert [p.body for p in run(store.list_posts(["general"]))] == ["after", "before"]


def test_a_database_that_cannot_be_opened_is_unavailable_for_a_new_post(tmp_path: Path) -> None:
    """The group write on SQLite's own cursor (storage/log.py, on the plain write)
    reports the driver's errors as any other write does: a 503, never a driver error."""
    home = tmp_path / "data"
    home.mkdir()
    store = Store.from_url(f"sqlite:///{home / 'feed.db'}")
    try:
        run(store.create_schema())
        store._engine.dispose()  # the next write opens a connection of its own
        home.rename(tmp_path / "moved")
        with pytest.raises(StoreUnavailable):
            run(store.create_post("general", "ann", "nowhere to go"))
    finally:
        store.close()
