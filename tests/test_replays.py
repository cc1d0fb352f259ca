"""Shared replays (feed/replays.py): one query for many streams resuming alike, and
every stream still gets exactly what it missed."""

from __future__ import annotations

import asyncio
import json
import re
import socket
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from feed import replays as replays_module
from feed.render import Renderer
from feed.replays import Cursor, Replays
from feed.sse import Format
from feed.store import Store
from tests.auth import bearer
from tests.conftest import Server
from tests.sse import SSEClient
from tests.waiting import until


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    store = Store.from_url(f"sqlite:///{tmp_path / 'feed.db'}")
    asyncio.run(store.create_schema())
    yield store
    store.close()


class CountingStore:
    """The real store, counting the replay queries that reach it."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.pages: list[int] = []  # the id each page was read after
        self.counts = 0

    async def events_after(self, after: int, *args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        self.pages.append(after)
        return await self.store.events_after(after, *args, **kwargs)  # type: ignore[arg-type]

    async def count_events_after(self, *args: object, **kwargs: object) -> int:
        self.counts += 1
        return await self.store.count_events_after(*args, **kwargs)  # type: ignore[arg-type]


def posted(store: Store, bodies: list[str]) -> list[int]:
    """Post ``bodies`` in turn; their event ids."""
    changes = [asyncio.run(store.create_post("general", "ann", body)) for body in bodies]
    return [c.event_id for c in changes if c.event_id is not None]


def post_bodies(data: bytes) -> list[str]:
    return [
        json.loads(line[6:])["post"]["body"]
        for line in data.decode().split("\n")
        if line.startswith("data: ")
    ]


PIECE = 64 * 1024


def cursor(after: int, delivered: int, channels: frozenset[str] | None = None) -> Cursor:
    """A JSON stream's cursor, in pieces of ``PIECE`` bytes."""
    backlog = replays_module.PIECES * PIECE
    return Cursor(Format.JSON, after, channels, frozenset(), delivered, delivered, backlog)


async def everything(replays: Replays, at: Cursor) -> list[bytes]:
    """Every piece of ``at``'s replay."""
    pieces = []
    while not at.done:
        pieces.append(await replays.next_piece(at))
    return pieces


def test_streams_asking_alike_at_once_share_one_query_and_one_encoding(store: Store) -> None:
    ids = posted(store, [f"post {n}" for n in range(5)])
    counting = CountingStore(store)
    replays = Replays(counting, Renderer())  # type: ignore[arg-type]

    async def scenario() -> None:
        cursors = [cursor(ids[1], ids[4]) for _ in range(50)]
        counted = await asyncio.gather(*(replays.count(c, 101) for c in cursors))
        assert counted == [3] * 50 and counting.counts == 1
        pieces = await asyncio.gather(*(replays.next_piece(c) for c in cursors))
        assert counting.pages == [ids[1]]
        assert len(set(pieces)) == 1 and pieces[0] is not None
        assert post_bodies(pieces[0]) == ["post 2", "post 3", "post 4"]
        assert {(c.after, c.sent, c.done) for c in cursors} == {(ids[4], 3, True)}
        assert counting.pages == [ids[1]]
        # Once the relay has published something newer, a stream that joins after it
        # needs a query of its own.
        await replays.next_piece(cursor(ids[1], ids[4] + 1))
        await replays.next_piece(cursor(ids[1], ids[4], frozenset({"general"})))
        assert counting.pages == [ids[1]] * 3

    asyncio.run(scenario())


def test_a_failed_query_is_not_kept(store: Store) -> None:
    class Failing(CountingStore):
        async def events_after(self, after: int, *args: object, **kwargs: object):  # type: ignore[no-untyped-def]
            if not self.pages:
                self.pages.append(after)
                raise RuntimeError("the database went away")
            return await super().events_after(after, *args, **kwargs)

    failing = Failing(store)
    replays = Replays(failing, Renderer())  # type: ignore[arg-type]

    async def scenario() -> None:
        with pytest.raises(RuntimeError):
            await replays.next_piece(cursor(0, 0))
        nothing = cursor(0, 0)
        assert await replays.next_piece(nothing) == b"" and nothing.done
        assert failing.pages == [0, 0]

    asyncio.run(scenario())


def test_a_replay_is_read_page_by_page_up_to_where_the_stream_joined(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(replays_module, "PAGE", 4)
    ids = posted(store, [f"post {n}" for n in range(10)])
    counting = CountingStore(store)
    replays = Replays(counting, Renderer())  # type: ignore[arg-type]

    async def scenario() -> None:
        whole = await everything(replays, cursor(0, ids[9]))
        assert post_bodies(b"".join(whole)) == [f"post {n}" for n in range(10)]
        assert counting.pages == [0, ids[3], ids[7]]
        # Newer events reach a stream live: its pages stop at the first that covers
        # the id the relay had delivered when it joined, and what that page holds
        # after it is left to the live path, which judges it as it is now.
        joined_at_6 = cursor(0, ids[5])
        assert post_bodies(b"".join(await everything(replays, joined_at_6))) == [
            f"post {n}" for n in range(6)
        ]
        assert joined_at_6.after == ids[5]
        assert counting.pages == [0, ids[3], ids[7], 0, ids[3]]

    asyncio.run(scenario())


def test_a_resume_past_what_this_process_delivered_leaves_all_after_it_to_the_live_path(
    store: Store,
) -> None:
    """An id another process handed out, newer than this process's relay has
    delivered: the replay has nothing to send, and everything after the id, a
    reader's mention included, comes live (replays.py, on where a replay ends)."""
    from types import SimpleNamespace

    from feed import resume
    from feed.subscribers import Subscriber

    seen = posted(store, ["seen here", "from another process"])
    count = SimpleNamespace(inc=lambda *_: None, observe=lambda *_: None)
    rt = SimpleNamespace(
        relay=SimpleNamespace(delivered=seen[0]),  # this process has seen the first
        settings=SimpleNamespace(replay_limit=1000),
        store=store,
        replays=Replays(store, Renderer()),
        metrics=SimpleNamespace(resyncs=count, replayed=count),
    )

    def bob(channels: frozenset[str] | None) -> Subscriber:
        sub = Subscriber(Format.JSON, channels, last_id=seen[1], limit=1 << 20)
        sub.private, sub.person = None, "bob"
        return sub

    async def scenario() -> list[tuple[bytes, int]]:
        answers = []
        first = bob(None)
        piece, _ = await resume.replay(rt, first, seen[1], "127.0.0.1")  # type: ignore[arg-type]
        answers.append((piece, first.last_id))
        await store.create_post("general", "alice", "hi @bob")
        await store.create_post("general", "alice", "later")
        second = bob(frozenset({"general"}))
        piece, _ = await resume.replay(rt, second, seen[1], "127.0.0.1")  # type: ignore[arg-type]
        answers.append((piece, second.last_id))
        return answers

    # Nothing replayed, and the stream's last id stays at its resume id: the mention
    # and the post after it both pass the live path's filter when the relay brings them.
    assert asyncio.run(scenario()) == [(b"", seen[1]), (b"", seen[1])]


def test_pieces_are_bounded_and_a_stream_keeps_no_page_between_them(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    big = "y" * 10_000  # about 20 KB of JSON each: three to a piece
    ids = posted(store, [f"{n} {big}" for n in range(12)])
    counting = CountingStore(store)
    replays = Replays(counting, Renderer())  # type: ignore[arg-type]

    async def scenario() -> None:
        pieces = await everything(replays, cursor(0, ids[-1]))
        assert [len(post_bodies(p)) for p in pieces] == [3, 3, 3, 3]
        assert all(len(p) <= PIECE for p in pieces)
        assert post_bodies(b"".join(pieces)) == [f"{n} {big}" for n in range(12)]
        assert counting.pages == [0]
        # A stream that comes back after the cache let its page go (here: at once)
        # reads on from where it stopped, not from where the page began.
        monkeypatch.setattr(replays._pages, "ttl", 0.0)
        again = await everything(replays, cursor(0, ids[-1]))
        assert [len(post_bodies(p)) for p in again] == [3, 3, 3, 3]
        assert counting.pages == [0, 0, ids[2], ids[5], ids[8]]

    asyncio.run(scenario())


def test_many_streams_resuming_from_one_id_each_get_exactly_what_they_missed(
    server: Server,
) -> None:
    ids = [server.post(f"missed {n}")["event_id"] for n in range(5)]
    streams = [
        SSEClient(server.port, params={"format": "json"}, headers={"Last-Event-ID": str(ids[1])})
        for _ in range(40)
    ]
    try:
        late = server.post("live")["event_id"]
        for stream in streams:
            stream.wait_for(lambda s: any(m.id == str(late) for m in s.events()))
            assert [m.id for m in stream.events()] == [str(i) for i in [*ids[2:], late]]
    finally:
        for stream in streams:
            stream.close()


# -- memory: a replay goes out in pieces, within the stream's backlog ----------------

STALLED = 30
BACKLOG = 256 * 1024
BIG_POST = 9000  # characters; JSON carries each twice (the body and its HTML)
BIG_POSTS = 450  # about 8 MB of JSON to replay: more than a socket's kernel buffers


def rss(pid: int) -> int:
    """The resident memory of process ``pid``, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for process {pid}")


def settled_rss(pid: int) -> int:
    """``rss(pid)`` once it has stayed within 1 MiB for longer than replays are cached,
    so that what a replay cached is gone from it."""
    pause = 0.25
    window = int((replays_module.TTL + 1) / pause)
    samples: list[int] = []

    def ask() -> list[int]:
        samples.append(rss(pid))
        return samples[-window:]

    steady = until(
        ask, lambda s: len(s) == window and max(s) - min(s) < 2**20, timeout=30, pause=pause
    )
    return max(steady)


def big_log(make_server: Callable[..., Server], **settings: object) -> tuple[Server, list[int]]:
    """A server whose log holds ``BIG_POSTS`` large posts, and their event ids."""
    server = make_server(subscriber_backlog=BACKLOG, **settings)
    with ThreadPoolExecutor(8) as pool:
        made = list(pool.map(lambda n: server.post(big_body(n)), range(BIG_POSTS)))
    return server, sorted(m["event_id"] for m in made)


def big_body(n: int) -> str:
    return f"{n} " + "x" * BIG_POST


def replayed(stream: SSEClient) -> list[tuple[int, str]]:
    """(id, post body) of each event ``stream`` got."""
    return [(int(e.id or 0), json.loads(e.data)["post"]["body"]) for e in stream.events()]


def test_a_slow_reader_gets_a_large_replay_whole_exactly_and_in_order(
    make_server: Callable[..., Server],
) -> None:
    # Heartbeats come often: each would find the stream behind if the replay counted.
    server, ids = big_log(make_server, heartbeat=0.5)
    params = {"format": "json", "last_event_id": "0"}
    with SSEClient(server.port, params=params, rcvbuf=4096) as slow:
        slow.wait_events(BIG_POSTS, timeout=60)
        got = replayed(slow)
        assert not slow.ended
    assert [event_id for event_id, _ in got] == ids
    # Posted from several threads at once: in the order they committed, each once.
    assert sorted(body for _, body in got) == sorted(big_body(n) for n in range(BIG_POSTS))


def test_a_slow_replay_gives_what_came_after_it_began_as_live_delivery_does(
    make_server: Callable[..., Server],
) -> None:
    """While a long replay waits for a slow reader, what happens to its access and
    what is written for it are judged as live delivery judges them: nothing from a
    channel taken from it, its own mentions, a channel granted to it."""
    server, _ = big_log(make_server)
    admin = server.client
    for name in ("board", "vault"):
        made = admin.post("/api/channels", json={"name": name, "title": name, "private": True})
        assert made.status_code == 201, made.text
    assert admin.put("/api/channels/board/members/cy", json={}).status_code == 200
    headers = bearer(server.token("cy", role="reader"))
    params = {"format": "json", "last_event_id": "0"}
    # Reads nothing until the end: the replay, 8 MB, waits on it well past the writes.
    # Before the stream joins, but the last event of its replay: reached after the
    # reader is taken off the board, so withheld as live delivery would withhold it.
    earlier = server.post("earlier on the board", channel="board")["event_id"]
    with SSEClient(server.port, params=params, headers=headers, rcvbuf=4096) as slow:
        assert slow.status == 200
        assert admin.delete("/api/channels/board/members/cy").status_code == 200
        secret = server.post("SECRET for the board", channel="board")["event_id"]
        mention = server.post("hello @cy")["event_id"]
        assert admin.put("/api/channels/vault/members/cy", json={}).status_code == 200
        granted = server.post("for the vault", channel="vault")["event_id"]
        last = server.post("the last")["event_id"]
        slow.wait_for(lambda s: str(last) in [m.id for m in s.events()], timeout=60)
        got = [(int(m.id or 0), m.event) for m in slow.events() if m.id]
    ids = [event_id for event_id, _ in got]
    assert ids == sorted(set(ids)), "out of order or twice"
    assert secret not in ids and earlier not in ids
    assert (granted, "post-created") in got
    assert (mention, "post-created") in got
    mentions = [event_id for event_id, kind in got if kind == "mention"]
    assert len(mentions) == 1 and ids[-1] == last, got[-6:]


def test_clients_that_resume_and_never_read_cost_their_backlog_not_the_replay(
    make_server: Callable[..., Server],
) -> None:
    server, _ = big_log(make_server)
    assert server.proc is not None
    params = {"format": "json", "last_event_id": "0"}
    # One reader first, so what any replay leaves behind (caches) is counted before.
    with SSEClient(server.port, params=params) as reader:
        reader.wait_events(BIG_POSTS, timeout=60)
        replay_bytes = sum(len(e.data) for e in reader.events())
    before = settled_rss(server.proc.pid)
    stalled = [SSEClient(server.port, params=params, rcvbuf=4096) for _ in range(STALLED)]
    try:
        assert {s.status for s in stalled} == {200}
        grown = settled_rss(server.proc.pid) - before
    finally:
        for stream in stalled:
            stream.close()
    mib = 2**20
    print(f"replay {replay_bytes / mib:.1f} MiB; {STALLED} stalled clients: +{grown / mib:.1f} MiB")
    # Each stalled stream holds at most its backlog, and the connection's write buffer.
    assert grown < STALLED * BACKLOG + 12 * mib, f"grew {grown / mib:.1f} MiB"


def test_shared_pages_are_bounded_in_bytes_as_well_as_in_number(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(replays_module, "PAGE", 2)
    monkeypatch.setattr(replays_module, "MAX_PAGE_BYTES", 200_000)
    big = "z" * 20_000  # two to a page: about 160 KB with the HTML and one encoding
    ids = posted(store, [f"{n} {big}" for n in range(12)])
    replays = Replays(store, Renderer())

    async def scenario() -> None:
        for after in ids[:-1]:  # a page each, from a different place
            await replays.next_piece(cursor(after, ids[-1]))
            pages = replays._pages  # the cache's own accounting
            # The bound, and at most the page just added on top (11 pages: 1.8 MB).
            assert pages.weight() <= replays_module.MAX_PAGE_BYTES + 200_000
        assert 1 < len(replays) < len(ids) - 1

    asyncio.run(scenario())


def test_a_replay_stops_once_its_client_has_left(make_server: Callable[..., Server]) -> None:
    server = make_server(subscriber_backlog=16384, log_level="info")
    first = server.post("before")["event_id"]
    filler = "x" * 2000
    items = [{"channel": "general", "body": f"{n} {filler}"} for n in range(900)]
    assert server.client.post("/api/posts:batch", json=items).status_code == 200
    request = f"GET /events?format=json&last_event_id={first} HTTP/1.1\r\nHost: feed\r\n\r\n"
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(request.encode())
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")
    # It read its opening and left: what it missed is not read, rendered and written
    # for nobody.
    closed = re.compile(r"stream closed after [\d.]+ s, (\d+) events: client left")
    found = until(lambda: closed.search(server.logs()), timeout=10)
    assert int(found[1]) < 450, found[0]


class HeldStore(CountingStore):
    """The real store, whose page reads wait until ``opened``: which were asked for,
    and how many wait."""

    def __init__(self, store: Store) -> None:
        super().__init__(store)
        self.opened = asyncio.Event()
        self.changed = asyncio.Condition()
        self.asked: list[int] = []

    async def events_after(self, after: int, *args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        async with self.changed:
            self.asked.append(after)
            self.changed.notify_all()
        await self.opened.wait()
        return await super().events_after(after, *args, **kwargs)


def test_one_client_builds_a_few_pieces_at_once_and_others_are_not_held_behind_it(
    store: Store,
) -> None:
    ids = posted(store, [f"post {n}" for n in range(30)])
    held = HeldStore(store)
    replays = Replays(held, Renderer())  # type: ignore[arg-type]
    at_once = replays_module.PIECES_AT_ONCE

    async def scenario() -> None:
        # One client resumes from 20 places, each its own page to read.
        many = [cursor(after, ids[-1]) for after in ids[:20]]
        for at in many:
            at.client = "198.51.100.7"
        other = cursor(ids[25], ids[-1])
        other.client = "203.0.113.9"
        pieces = [asyncio.ensure_future(replays.next_piece(at)) for at in many]
        theirs = asyncio.ensure_future(replays.next_piece(other))
        async with held.changed:
            asked = lambda: len(held.asked) == at_once + 1  # noqa: E731
            await asyncio.wait_for(held.changed.wait_for(asked), 5)
        # The first client's first few reads, and the other client's, not queued behind.
        assert sorted(held.asked) == sorted([*ids[:at_once], ids[25]])
        held.opened.set()
        done = await asyncio.gather(*pieces, theirs)
        assert post_bodies(done[-1]) == [f"post {n}" for n in range(26, 30)]
        assert [post_bodies(p)[0] for p in done[:-1]] == [f"post {n}" for n in range(1, 21)]
        assert len(held.asked) == 21

    asyncio.run(scenario())
