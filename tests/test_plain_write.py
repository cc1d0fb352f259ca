"""New posts on SQLite: the group write keeps its connection from write to write
(storage/log.py, on the plain write), and gives it back when a write fails or the
store closes."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, event

from feed.storage import search
from feed.store import Store, StoreError, make_engine
from feed.values import Change


class Pool:
    """The connections an engine's pool hands out and takes back, by identity."""

    def __init__(self, engine: Engine) -> None:
        self.out: list[int] = []
        self.back: list[int] = []
        event.listen(engine, "checkout", lambda dbapi, *_: self.out.append(id(dbapi)))
        event.listen(engine, "checkin", lambda dbapi, *_: self.back.append(id(dbapi)))

    @property
    def held(self) -> int:
        return len(self.out) - len(self.back)


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    return make_engine(f"sqlite:///{tmp_path / 'feed.db'}")


@pytest.fixture
def store(engine: Engine) -> Iterator[Store]:
    store = Store(engine)
    asyncio.run(store.create_schema())
    yield store
    store.close()


def post(store: Store, body: str) -> Change:
    return asyncio.run(store.create_post("general", "ann", body))


def test_lone_posts_are_written_on_one_connection_kept_from_write_to_write(
    store: Store, engine: Engine
) -> None:
    pool = Pool(engine)
    changes = [post(store, f"post {n}") for n in range(5)]
    assert all(isinstance(c, Change) for c in changes)
    # Checked out once for the first write and kept: not once a write.
    assert len(pool.out) == 1, pool.out
    assert pool.held == 1
    posts = asyncio.run(store.list_posts(["general"]))
    assert [p.body for p in posts] == [f"post {n}" for n in reversed(range(5))]


def test_a_failed_write_gives_its_connection_back_and_leaves_nothing_behind(
    store: Store, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = post(store, "before")
    index_new = search.index_new

    def failing(cursor: sqlite3.Cursor, first_id: int, last_id: int) -> None:
        index_new(cursor, first_id, last_id)  # the post's rows are written by now
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(search, "index_new", failing)
    pool = Pool(engine)
    with pytest.raises(StoreError):
        post(store, "lost")
    # Given back to the pool, which rolls back what the failed write began.
    assert pool.held == -1, (pool.out, pool.back)
    monkeypatch.setattr(search, "index_new", index_new)
    after = post(store, "after")
    assert pool.held == 0  # the next write took another, and keeps it
    assert isinstance(first, Change) and isinstance(after, Change)
    assert after.post.id == first.post.id + 1
    posts = asyncio.run(store.list_posts(["general"]))
    assert [p.body for p in posts] == ["after", "before"]


def test_closing_the_store_gives_the_kept_connection_back(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'feed.db'}")
    store = Store(engine)
    asyncio.run(store.create_schema())
    assert isinstance(post(store, "one"), Change)
    pool = Pool(engine)
    store.close()
    assert pool.held == -1, (pool.out, pool.back)
    # What it wrote is there for the next process.
    again = Store.from_url(f"sqlite:///{tmp_path / 'feed.db'}")
    try:
        assert [p.body for p in asyncio.run(again.list_posts(["general"]))] == ["one"]
    finally:
        again.close()


class Watched:
    """A lock that tells when someone tries to take it."""

    def __init__(self, lock: threading.Lock) -> None:
        self.lock = lock
        self.tried = threading.Event()

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        self.tried.set()
        return self.lock.acquire(blocking, timeout)

    def release(self) -> None:
        self.lock.release()


def test_closing_during_a_write_gives_the_kept_connection_back_after_that_write(
    store: Store, engine: Engine
) -> None:
    assert isinstance(post(store, "one"), Change)
    pool = Pool(engine)
    held = threading.Lock()
    watched = Watched(held)
    store._write_lock = watched  # type: ignore[assignment]
    held.acquire()  # a write under way (an edit, say): the lock is taken
    closing = threading.Thread(target=store.close)
    closing.start()
    try:
        assert watched.tried.wait(10), "close never asked for the lock"
    finally:
        held.release()  # the write ends
    closing.join(10)
    assert not closing.is_alive()
    assert pool.held == -1, (pool.out, pool.back)
