"""The stored reply count (storage/threads.py, on the stored count): kept exact by
every write that changes a thread, on each store, and filled for existing threads by
its migration."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Sequence
from typing import Any

from sqlalchemy import Engine, text

from feed.store import PostDeleted, Store, make_engine
from feed.values import Answer, Change, Claim, Commit, NewPost, Once
from tests.migrating import schema_at
from tests.services import Postgres

# The revision before the stored count, and the column it adds.
BEFORE = "0015_thread_summaries"
COLUMN = "reply_count"


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


class ThreadWritingStore(Store):
    """A store that writes every group of new posts in the group commit's thread, as
    PostgreSQL does before the event loop's connection is ready (storage/new_posts.py,
    on the write on the loop), so that both of PostgreSQL's ways are tried."""

    async def _write_new(self, batch: Sequence[NewPost]) -> Any:
        return await self._insert_posts(batch)


def _answer(change: Change) -> Answer:
    return Answer(201, f"reply {change.post.id}")


def _stored_and_counted(engine: Engine) -> dict[int, tuple[int, int]]:
    """Each top-level post's stored count, and its live replies counted."""
    with engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT p.id, p.reply_count, (SELECT count(*) FROM posts r"
                " WHERE r.parent_id = p.id AND NOT r.deleted)"
                " FROM posts p WHERE p.parent_id IS NULL ORDER BY p.id"
            )
        ).all()
    return {post: (stored, counted) for post, stored, counted in rows}


def test_the_stored_count_equals_the_live_replies_after_concurrent_replies_and_deletes(
    store: Store,
) -> None:
    """Replies, batches with replies, keyed replies sent twice at once and retried,
    replies deleted and a parent deleted, all at once in a shuffled order: each
    top-level post's stored count is its live replies, counted. On PostgreSQL new
    posts are written from the event loop."""
    _mix_and_check(store)


def test_the_stored_count_stays_exact_when_postgresql_writes_replies_in_threads(
    postgres: Postgres,
) -> None:
    """The same, with PostgreSQL's new posts written in the group commit's thread."""
    store = ThreadWritingStore(make_engine(postgres.new_database()), notify=True)
    try:
        run(store.create_schema())
        _mix_and_check(store)
    finally:
        store.close()


def _mix_and_check(store: Store) -> None:
    shuffle = random.Random(27).shuffle
    told: list[Commit] = []
    store.on_commit(told.append)

    async def main() -> list[int]:
        parents = [
            (await store.create_post("general", "ann", f"topic {n}")).post.id for n in range(4)
        ]
        earlier = await asyncio.gather(
            *(store.create_reply("general", parents[n % 4], f"p{n}", f"r{n}") for n in range(16))
        )
        for round_ in range(3):
            claim = Claim(f"k{round_}", "f")
            keyed = parents[round_ % 3]
            batch = [
                NewPost("general", "bo", f"b{round_}", parent=parents[0]),
                NewPost("general", "bo", f"c{round_}", parent=parents[1]),
                NewPost("general", "bo", f"top {round_}"),
                # Refused alone (a reply to a reply): counts nothing.
                NewPost("general", "bo", "deep", parent=earlier[1].post.id),
                NewPost("general", "cy", "kept", parent=keyed, claim=claim, answer=_answer),
            ]
            writes: list[Awaitable[object]] = [
                *(
                    store.create_reply("general", parents[n % 4], f"q{n}", f"s{n}")
                    for n in range(10)
                ),
                *(store.delete_post(earlier[n].post.id) for n in range(round_, 16, 5)),
                store.create_posts(batch),
                store.create_post_once(claim, "general", "cy", "kept", _answer, parent=keyed),
                store.create_post_once(claim, "general", "cy", "kept", _answer, parent=keyed),
            ]
            if round_ == 1:
                writes.append(store.delete_post(parents[3]))
            shuffle(writes)
            done = await asyncio.gather(*writes, return_exceptions=True)
            # Only a reply to the deleted parent, or the deletion of a reply that went
            # with it, is refused.
            refused = [d for d in done if isinstance(d, Exception)]
            assert all(isinstance(e, PostDeleted) for e in refused), refused
            # A retry after the commit is answered as before and writes nothing.
            again = await store.create_post_once(
                claim, "general", "cy", "kept", _answer, parent=keyed
            )
            assert isinstance(again, Once) and again.replayed
        return parents

    parents = run(main())
    found = _stored_and_counted(store._engine)
    assert all(stored == counted for stored, counted in found.values()), found
    # 4 early replies each, less those deleted (2, 2, 3), 9, 9 and 6 single replies,
    # 3 in batches to each of the first two, and each keyed reply once, whatever its
    # retries; none left under the deleted parent.
    counts = {post: counted for post, (_, counted) in found.items()}
    assert [counts[p] for p in parents] == [15, 15, 8, 0]
    # The last summary each thread's events carried is its count now.
    carried = {e.thread.post: e.thread.replies for c in told for e in c.events if e.thread}
    assert {p: carried[p] for p in parents[:3]} == {p: counts[p] for p in parents[:3]}

    async def read() -> tuple[dict[int, int], int]:
        listed = {p.id: p.replies for p in await store.list_posts(["general"])}
        one = await store.get_post(parents[0])
        return listed, one.replies

    listed, one = run(read())
    assert {p: listed.get(p, 0) for p in parents[:3]} == {p: counts[p] for p in parents[:3]}
    assert one == counts[parents[0]]


def _columns(url: str, revision: str | None) -> set[str]:
    """The posts table's columns once the schema is taken to ``revision`` (down), or
    left where it is (None)."""
    return schema_at(url, revision, lambda i: {c["name"] for c in i.get_columns("posts")})


def test_the_stored_count_comes_with_its_migration_filled_from_each_thread_and_goes_with_it(
    each_database_url: str,
) -> None:
    async def threads(store: Store) -> tuple[int, int, int]:
        await store.create_schema()
        talked = (await store.create_post("general", "ann", "talked about")).post.id
        gone = (await store.create_post("general", "ann", "gone")).post.id
        quiet = (await store.create_post("general", "ann", "quiet")).post.id
        for author in ["bo", "cy", "di"]:
            await store.create_reply("general", talked, author, "yes")
            await store.create_reply("general", gone, author, "yes")
        taken_back = await store.create_reply("general", talked, "ed", "no")
        await store.delete_post(taken_back.post.id)
        await store.delete_post(gone)
        return talked, gone, quiet

    store = Store.from_url(each_database_url)
    try:
        talked, gone, quiet = run(threads(store))
    finally:
        store.close()
    assert COLUMN not in _columns(each_database_url, BEFORE)
    # A reply written at the older revision, which no stored count followed.
    engine = make_engine(each_database_url)
    try:
        with engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO posts (channel_id, parent_id, author, body, html, created_at,"
                    " pinned, deleted) SELECT channel_id, id, 'fi', 'late', '<p>late</p>',"
                    " created_at, false, false FROM posts WHERE id = :p"
                ),
                {"p": talked},
            )
        store = Store.from_url(each_database_url)
        run(store.create_schema())
        store.close()
        assert COLUMN in _columns(each_database_url, None)
        found = _stored_and_counted(engine)
    finally:
        engine.dispose()
    assert {p: found[p] for p in (talked, gone, quiet)} == {
        talked: (4, 4),
        gone: (0, 0),
        quiet: (0, 0),
    }
