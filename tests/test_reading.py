"""Read state and mentions: positions, unread counts, mentions, and personal events
that reach only their own identity."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import pytest
from sqlmodel import Session
from starlette.testclient import TestClient

from feed import markdown, mentions
from feed.models import EventKind
from feed.settings import Settings
from feed.storage.history import EVERYONE
from feed.store import ChannelNotFound, Store
from feed.values import Commit
from tests.auth import ADMIN, ADMIN_NAME, bearer, make_token
from tests.conftest import Server
from tests.services import Postgres
from tests.sse import SSEClient


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def counts(store: Store, name: str, private: list[str] | None = None) -> dict[str, tuple[int, int]]:
    channels = ["announcements", "general", *(private or [])]
    found = run(store.unread(name, channels, private=private or []))
    return {u.channel: (u.posts, u.mentions) for u in found}


def test_a_mention_is_marked_in_the_html_and_found_from_it() -> None:
    html = markdown.to_html("hi @bob, see `@carol` and mail a@b.org; **@dave**.")
    assert '<mark data-mention="bob">@bob</mark>' in html
    assert mentions.mentioned(html) == ["bob", "dave"]
    # Raw HTML stays text: nobody makes a mark of their own.
    forged = markdown.to_html('<mark data-mention="eve">x</mark> <mark onclick="x">')
    assert "<mark" not in forged and mentions.mentioned(forged) == []


def test_unread_counts_follow_the_read_position(store: Store) -> None:
    ids = [run(store.create_post("general", "alice", f"post {n}")).event_id for n in range(3)]
    run(store.create_post("general", "bob", "my own"))
    assert counts(store, "bob") == {"announcements": (0, 0), "general": (3, 0)}
    mark = run(store.mark_read("bob", "general", ids[1] or 0))
    assert (mark.channel, mark.up_to) == ("general", ids[1])
    assert counts(store, "bob")["general"] == (1, 0)
    # Another identity's counts are its own.
    assert counts(store, "carol")["general"] == (4, 0)


def test_a_position_moves_forward_only_and_is_clamped_to_the_log(store: Store) -> None:
    first = run(store.create_post("general", "alice", "one")).event_id or 0
    second = run(store.create_post("general", "alice", "two")).event_id or 0
    assert run(store.mark_read("bob", "general", second)).event_id is not None
    back = run(store.mark_read("bob", "general", first))
    assert (back.up_to, back.event_id) == (second, None)
    beyond = run(store.mark_read("bob", "general", 2**62))
    latest = run(store.latest_event_id())
    assert beyond.up_to == latest - 1  # the newest event before this mark's own
    with pytest.raises(ChannelNotFound):
        run(store.mark_read("bob", "nowhere", 1))


class WriteCountingStore(Store):
    """A real store that counts its write transactions."""

    writes = 0

    @contextmanager
    def _write(self, channels: Sequence[str] = ()) -> Iterator[Session]:
        self.writes += 1
        with super()._write(channels) as session:
            yield session


def test_marking_read_takes_a_position_only_onto_the_channels_events(
    each_database_url: str,
) -> None:
    """A client cannot make the log grow by marking: each mark that moves a position
    writes an event, so a position moves only onto an event of its channel, which only
    posting makes, and a mark that moves nothing takes no write."""
    store = WriteCountingStore.from_url(each_database_url)
    try:
        run(store.create_schema())
        general = run(store.create_post("general", "alice", "one")).event_id or 0
        elsewhere = run(store.create_post("announcements", "alice", "two")).event_id or 0
        latest = run(store.latest_event_id())
        writes = store.writes
        # Ids below every event of the channel, one after another: none is a place in
        # the channel a position could move to.
        for up_to in range(1, 30):
            mark = run(store.mark_read("bob", "general", up_to))
            assert (mark.up_to, mark.event_id) == (0, None), up_to
        assert (run(store.latest_event_id()), store.writes) == (latest, writes)
        assert counts(store, "bob")["general"] == (1, 0)
        # Another channel's post is after the channel's: the position moves onto that,
        # once; nothing later moves it again until the channel has a newer event.
        moved = run(store.mark_read("bob", "general", elsewhere))
        assert moved.up_to == general and moved.event_id is not None
        for up_to in (general, general + 1, elsewhere, moved.event_id or 0, 2**62):
            mark = run(store.mark_read("bob", "general", up_to))
            assert (mark.up_to, mark.event_id) == (general, None), up_to
        assert run(store.latest_event_id()) == moved.event_id
        assert store.writes == writes + 1
        assert counts(store, "bob")["general"] == (0, 0)
        # Marking every channel read twice writes once.
        run(store.mark_all_read("bob", ["announcements", "general"]))
        again = run(store.latest_event_id())
        assert [
            m.event_id for m in run(store.mark_all_read("bob", ["announcements", "general"]))
        ] == [None, None]
        assert run(store.latest_event_id()) == again
        assert counts(store, "bob") == {"announcements": (0, 0), "general": (0, 0)}
    finally:
        store.close()


def test_concurrent_marks_leave_the_furthest_position_and_one_event_per_move(
    store: Store,
) -> None:
    """Tabs marking at once, in any order: the position ends at the furthest mark, each
    move's event says a position further than the one before, and a mark that arrives
    behind moves nothing."""
    told: list[Commit] = []

    async def main() -> tuple[list[int], int]:
        made = [(await store.create_post("general", "alice", f"p{n}")).event_id for n in range(6)]
        ids = [e for e in made if e is not None]
        store.on_commit(told.append)
        order = [ids[3], ids[0], ids[5], ids[1], ids[4], ids[2]] * 2
        marks = await asyncio.gather(*(store.mark_read("bob", "general", u) for u in order))
        return [m.up_to for m in marks], ids[-1]

    ups, last = run(main())
    assert max(ups) == last
    moves = [e.read_up_to for c in told for e in c.events if e.kind is EventKind.READ_POSITION]
    assert moves == sorted(set(moves)) and moves[-1] == last
    assert counts(store, "bob")["general"] == (0, 0)
    assert run(store.mark_read("bob", "general", 1)).up_to == last


def test_mark_all_read_clears_every_channel_given(store: Store) -> None:
    run(store.create_post("general", "alice", "one"))
    run(store.create_post("announcements", "alice", "two @bob"))
    assert counts(store, "bob") == {"announcements": (1, 1), "general": (1, 0)}
    marks = run(store.mark_all_read("bob", ["announcements", "general"]))
    assert [m.channel for m in marks] == ["announcements", "general"]
    assert counts(store, "bob") == {"announcements": (0, 0), "general": (0, 0)}


def test_mentions_are_personal_events_written_with_the_post(store: Store) -> None:
    seen: list[Commit] = []
    store.on_commit(seen.append)
    change = run(store.create_post("general", "alice", "hello @bob and @carol and @alice"))
    events = [e for c in seen for e in c.events]
    assert [(e.kind, e.recipient) for e in events] == [
        (EventKind.MENTION, "bob"),
        (EventKind.MENTION, "carol"),
        (EventKind.POST_CREATED, None),
    ]
    assert [e.id for e in events] == sorted(e.id for e in events)
    assert events[-1].id == change.event_id
    found = run(store.mentions("bob", ["general"], private=[]))
    assert [(m.post.id, m.unread) for m in found] == [(change.post.id, True)]
    # Read up to the post: its mention is read too.
    run(store.mark_read("bob", "general", change.event_id or 0))
    assert [m.unread for m in run(store.mentions("bob", ["general"], private=[]))] == [False]
    assert run(store.mentions("dave", ["general"], private=[])) == []


def test_an_edit_tells_only_the_names_it_adds(store: Store) -> None:
    change = run(store.create_post("general", "alice", "hi @bob"))
    run(store.edit_post(change.post.id, "hi @bob and @carol"))
    assert len(run(store.mentions("bob", ["general"], private=[]))) == 1
    assert len(run(store.mentions("carol", ["general"], private=[]))) == 1


def test_a_name_edited_out_and_back_in_is_told_once(store: Store) -> None:
    seen: list[Commit] = []
    store.on_commit(seen.append)
    change = run(store.create_post("general", "alice", "hi @bob"))
    run(store.edit_post(change.post.id, "hi"))
    run(store.edit_post(change.post.id, "hi again @bob"))
    told = [e.recipient for c in seen for e in c.events if e.kind is EventKind.MENTION]
    assert told == ["bob"]
    found = run(store.mentions("bob", ["general"], private=[]))
    assert [(m.post.id, m.post.body) for m in found] == [(change.post.id, "hi again @bob")]
    assert counts(store, "bob")["general"] == (1, 1)


def test_a_name_edited_out_is_no_longer_counted_or_listed(store: Store) -> None:
    change = run(store.create_post("general", "alice", "hi @bob and @Bobby"))
    run(store.create_post("general", "alice", "and `@bob` in code is no mention"))
    run(store.edit_post(change.post.id, "hi @Bob and @Bobby"))
    # "@Bob" is another name; "@bob" is gone from the post, so bob is not mentioned.
    assert run(store.mentions("bob", ["general"], private=[])) == []
    assert counts(store, "bob")["general"] == (2, 0)
    assert [m.post.id for m in run(store.mentions("Bobby", ["general"], private=[]))] == [
        change.post.id
    ]
    assert counts(store, "Bobby")["general"] == (2, 1)
    # Back in, it counts again, though nobody is told a second time.
    run(store.edit_post(change.post.id, "hi @bob."))
    assert [m.post.body for m in run(store.mentions("bob", ["general"], private=[]))] == [
        "hi @bob."
    ]
    assert counts(store, "bob")["general"] == (2, 1)
    assert counts(store, "Bobby")["general"] == (2, 0)


def test_a_mention_edited_out_is_left_out_of_reads_of_the_log(store: Store) -> None:
    change = run(store.create_post("general", "alice", "hi @bob"))
    run(store.edit_post(change.post.id, "hi"))

    def mentions_read(person: object) -> list[str | None]:
        found = run(store.events_after(0, person=person))
        return [e.recipient for e in found if e.kind is EventKind.MENTION]

    # A replay, for bob or for the hub, reads the post as it is now (log.py, on the
    # current state): it no longer mentions him.
    assert mentions_read("bob") == [] and mentions_read(EVERYONE) == []
    run(store.edit_post(change.post.id, "hi again @bob"))
    assert mentions_read("bob") == ["bob"] and mentions_read(EVERYONE) == ["bob"]


def test_mentions_and_counts_respect_private_channels(store: Store) -> None:
    run(store.create_channel("secret", "Secret", "", private=True))
    run(store.create_post("secret", "alice", "psst @bob"))
    # bob may not read #secret: nothing counted, nothing listed.
    assert run(store.mentions("bob", ["general", "secret"], private=[])) == []
    assert counts(store, "bob", [])["general"] == (0, 0)
    assert run(store.unread("bob", ["secret"], private=[]))[0].posts == 0
    # Granted, the same mention counts.
    assert counts(store, "bob", ["secret"])["secret"] == (1, 1)


def test_a_reader_reads_its_own_personal_events_and_nobody_elses(store: Store) -> None:
    start = run(store.latest_event_id())
    post = run(store.create_post("general", "alice", "for @bob")).event_id or 0
    run(store.mark_read("bob", "general", post))
    run(store.mark_read("carol", "general", post))
    mine = run(store.events_after(start, private=[], person="bob"))
    assert [(e.kind, e.recipient) for e in mine] == [
        (EventKind.MENTION, "bob"),
        (EventKind.POST_CREATED, None),
        (EventKind.READ_POSITION, "bob"),
    ]
    assert mine[-1].read_up_to is not None
    nobody = run(store.events_after(start, private=[]))
    assert [e.recipient for e in nobody] == [None]
    assert run(store.count_events_after(start, private=[], person="carol", limit=10)) == 2
    # The hub's reader (the relay) reads everything.
    assert len(run(store.events_after(start, person=EVERYONE))) == 4
    # Reading every private channel (an admin) is not reading everyone's events.
    assert [e.recipient for e in run(store.events_after(start, person="dave"))] == [None]
    # A channel stream still gets its person's events of other channels.
    other = run(store.events_after(start, ["announcements"], private=[], person="bob"))
    assert [e.kind for e in other] == [EventKind.MENTION, EventKind.READ_POSITION]


def test_the_upgrade_from_0007_keeps_posts_and_marks_their_mentions(
    each_database_url: str,
) -> None:
    from alembic import command
    from sqlalchemy import text

    from feed import schema
    from feed.store import make_engine

    engine = make_engine(each_database_url)
    with engine.begin() as connection:
        command.upgrade(schema._config(connection), "0007")
        connection.execute(
            text(
                "INSERT INTO channels (name, title, description, archived, "
                "private, announcement_only) VALUES ('general', 'G', '', "
                "false, false, false)"
            )
        )
        connection.execute(
            text(
                "INSERT INTO posts (channel_id, author, body, html, created_at, "
                "pinned, deleted) VALUES (1, 'alice', 'hi @bob', '<p>hi @bob</p>', "
                "CURRENT_TIMESTAMP, false, false)"
            )
        )
        connection.execute(
            text(
                "INSERT INTO events (kind, channel_id, post_id, created_at) "
                "VALUES ('post-created', 1, 1, CURRENT_TIMESTAMP)"
            )
        )
    assert schema.upgrade(engine) == ("0007", schema.head())
    engine.dispose()
    store = Store.from_url(each_database_url)
    try:
        run(store.create_schema())
        post = run(store.get_post(1))
        assert '<mark data-mention="bob">@bob</mark>' in post.html
        assert counts(store, "bob")["general"] == (1, 0)
        run(store.mark_read("bob", "general", 2**40))
        assert counts(store, "bob")["general"] == (0, 0)
    finally:
        store.close()


# -- personal events on real streams -------------------------------------------------

PERSONAL = {"mention", "read-position"}


def _stream(server: Server, name: str, fmt: str, after: int | None = None) -> SSEClient:
    params = {"format": fmt} | ({} if after is None else {"last_event_id": str(after)})
    headers = ADMIN if name == ADMIN_NAME else bearer(server.token(name))
    client = SSEClient(server.port, params=params, headers=headers)
    assert client.status == 200
    return client


def _kinds(client: SSEClient) -> list[str | None]:
    return [m.event for m in client.events() if m.id]


@pytest.mark.parametrize("fmt", ["json", "text", "html"])
def test_personal_events_reach_only_their_own_identity_live_and_in_replay(
    make_server: Callable[..., Server], fmt: str
) -> None:
    server = make_server()
    start = server.client.get("/api/me/unread").json()  # the admin's, for the record
    assert start["total"] == 0
    for name in ("bob", "carol"):
        server.token(name)
    before = server.post("warm-up", author="alice")["event_id"]
    bob, bob_too = _stream(server, "bob", fmt), _stream(server, "bob", fmt)
    carol, admin = _stream(server, "carol", fmt), _stream(server, ADMIN_NAME, fmt)
    try:
        for client in (bob, bob_too, carol, admin):
            client.wait_for(lambda c=client: any(m.id for m in c.messages) or c.comments)
        mention = server.post("hello @bob and @carolyn", author="alice")["event_id"]
        read = server.client.post(
            "/api/channels/general/read",
            json={"up_to": mention},
            headers=bearer(server.token("bob")),
        )
        assert read.status_code == 200, read.text
        assert read.json()["read_up_to"] == mention
        last = server.post("after", author="alice")["event_id"]
        for client in (bob, bob_too, carol, admin):
            client.wait_for(lambda c=client: str(last) in [m.id for m in c.messages])
        for client in (bob, bob_too):
            assert _kinds(client) == ["mention", "post-created", "read-position", "post-created"]
            said = next(m.data for m in client.events() if m.event == "read-position")
            assert str(mention) in said
        for client in (carol, admin):
            assert _kinds(client) == ["post-created", "post-created"]
            seen = " ".join(m.data for m in client.events())
            # Not a word of a read position, in any format (JSON, text, HTML).
            assert not re.search(r"up_to|up-to|read up to|read-position", seen), seen
        # The same in replay, from before the mention.
        for name, expected in (
            ("bob", ["mention", "post-created", "read-position", "post-created"]),
            ("carol", ["post-created", "post-created"]),
            (ADMIN_NAME, ["post-created", "post-created"]),
        ):
            with _stream(server, name, fmt, after=before) as replay:
                replay.wait_for(lambda r=replay: str(last) in [m.id for m in r.messages])
                assert _kinds(replay) == expected, name
    finally:
        for client in (bob, bob_too, carol, admin):
            client.close()


def test_a_resume_soon_after_another_from_the_same_place_brings_what_was_written_between(
    make_server: Callable[..., Server],
) -> None:
    """A reader's second resume from one id, within the time replays share answers,
    gets the personal events written since the first (replays.py, on personal events)."""
    server = make_server()
    headers = bearer(server.token("bob"))
    before = server.post("warm-up", author="alice")["event_id"]
    # Nothing of bob's after ``before`` yet: this resume shares everyone's replay.
    with _stream(server, "bob", "json", after=before) as first:
        assert _kinds(first) == []
    mention = server.post("hello @bob", author="alice")["event_id"]
    read = server.client.post("/api/channels/general/read", json={}, headers=headers)
    assert read.status_code == 200, read.text
    last = server.post("after", author="alice")["event_id"]
    # The same place again, well within the replays' two seconds.
    with _stream(server, "bob", "json", after=before) as again:
        again.wait_for(lambda r: str(last) in [m.id for m in r.messages])
        assert _kinds(again) == ["mention", "post-created", "read-position", "post-created"]
        ids = [int(m.id or 0) for m in again.events() if m.id]
        assert ids == sorted(set(ids)) and mention in ids and ids[-1] == last


def test_a_mentions_stream_shows_only_the_readers_mentions(
    make_server: Callable[..., Server],
) -> None:
    server = make_server()
    headers = bearer(server.token("bob"))
    first = server.post("@bob one", author="alice")["event_id"]
    server.post("not for bob", author="alice")
    with SSEClient(
        server.port,
        params={"format": "text", "only": "mentions", "last_event_id": "0"},
        headers=headers,
    ) as stream:
        assert stream.status == 200
        stream.wait_for(lambda s: any(m.event == "mention" for m in s.messages))
        server.client.post("/api/channels/general/read", json={}, headers=headers)
        last = server.post("and @bob two", author="alice")["event_id"]
        stream.wait_for(lambda s: len([m for m in s.messages if m.event == "mention"]) >= 2)
        lines = [m.data for m in stream.events() if m.id]
        assert [m.event for m in stream.events() if m.id] == ["mention", "mention"]
        assert "alice mentioned you: @bob one" in lines[0]
        assert "alice mentioned you: and @bob two" in lines[1]
        assert int(stream.events()[-1].id or 0) < last and first < last
    anonymous = SSEClient(server.port, params={"format": "text", "only": "mentions"})
    assert anonymous.status == 401
    anonymous.close()


# -- the API ----------------------------------------------------------------------------


def person(settings: Settings, name: str) -> dict[str, str]:
    return bearer(make_token(settings.database_url, name)[0])


def test_the_read_api_counts_marks_and_lists_for_the_requester(
    client: TestClient, settings: Settings
) -> None:
    bob = person(settings, "bob")
    for body in ("one", "two @bob", "three"):
        assert client.post("/api/channels/general/posts", json={"body": body}).status_code == 201
    unread = client.get("/api/me/unread", headers=bob).json()
    assert (unread["total"], unread["mentions"]) == (3, 1)
    assert unread["channels"]["general"] == {"unread": 3, "mentions": 1, "read_up_to": 0}
    mentions = client.get("/api/me/mentions", headers=bob).json()["mentions"]
    assert [(m["post"]["body"], m["unread"]) for m in mentions] == [("two @bob", True)]
    second = mentions[0]["event_id"] + 1  # the post's own event follows its mention
    marked = client.post("/api/channels/general/read", json={"up_to": second}, headers=bob)
    assert marked.status_code == 200 and marked.json()["read_up_to"] == second
    assert client.get("/api/me/unread", headers=bob).json()["total"] == 1
    # Beyond the log is clamped to its newest event for everyone.
    beyond = client.post("/api/channels/general/read", json={"up_to": 2**62}, headers=bob)
    assert beyond.json()["read_up_to"] > second
    again = client.post("/api/channels/general/read", json={"up_to": 2**62}, headers=bob)
    assert again.json()["event_id"] is None  # nothing new: nothing written
    assert client.get("/api/me/unread", headers=bob).json()["total"] == 0
    assert client.post("/api/me/read", json={}, headers=bob).status_code == 200


def test_mentions_carry_their_posts_replies_and_reactions_as_every_list(
    client: TestClient, settings: Settings
) -> None:
    bob = person(settings, "bob")
    made = client.post("/api/channels/general/posts", json={"body": "ask @bob"})
    post = made.json()["post"]["id"]
    assert client.post(f"/api/posts/{post}/replies", json={"body": "me too"}).status_code == 201
    for who in (ADMIN, bob):
        assert client.put(f"/api/posts/{post}/reactions/🎉", headers=who).status_code == 200
    (mention,) = client.get("/api/me/mentions", headers=bob).json()["mentions"]
    listed = client.get("/api/channels/general/posts", headers=bob).json()["posts"][0]
    assert mention["post"] == listed
    assert (listed["replies"], listed["repliers"], listed["mine"]) == (1, [ADMIN_NAME], ["🎉"])
    assert [(r["reaction"], r["count"]) for r in listed["reactions"]] == [("🎉", 2)]
    page = client.get("/mentions", headers=bob)
    assert page.status_code == 200, page.text
    assert 'data-replies="1"' in page.text and 'data-mine="🎉"' in page.text
    assert re.search(r'class="count"[^>]*>\s*2\s*<', page.text), page.text


@pytest.mark.parametrize(
    "body",
    [
        {"up_to": -1},
        {"up_to": "5"},
        {"up_to": True},
        {"up_to": 1.5},
        {"up_to": 2**63},
        {"until": 3},
        {"up_to": None},
    ],
)
def test_hostile_read_positions_get_a_4xx(
    client: TestClient, settings: Settings, body: dict[str, object]
) -> None:
    bob = person(settings, "bob")
    answer = client.post("/api/channels/general/read", json=body, headers=bob)
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]


def test_read_state_needs_a_person_and_a_readable_channel(
    client: TestClient, settings: Settings
) -> None:
    client.headers.pop("Authorization")
    assert client.get("/api/me/unread").status_code == 401
    assert client.post("/api/me/read", json={}).status_code == 401
    client.headers.update(ADMIN)
    scoped = bearer(make_token(settings.database_url, "bob", channels=["general"])[0])
    assert client.get("/api/me/unread", headers=scoped).status_code == 401
    bob = person(settings, "bob")
    client.post("/api/channels", json={"name": "secret", "title": "S", "private": True})
    hidden = client.post("/api/channels/secret/read", json={}, headers=bob)
    assert hidden.status_code == 404
    assert "secret" not in client.get("/api/me/unread", headers=bob).json()["channels"]


def test_feed_tail_mentions_shows_only_the_holders_mentions(server: Server) -> None:
    from tests.test_terminal import feed_process, wait_for_subscriber

    server.post("hi @bob, first", author="alice")
    server.post("nothing for bob", author="alice")
    server.post("hi @carol", author="alice")
    tail = feed_process(
        "tail",
        "--mentions",
        "--since",
        "0",
        "--count",
        "2",
        "--color",
        "never",
        "--token",
        server.token("bob"),
        "--url",
        server.url,
    )
    wait_for_subscriber(server)
    server.post("and @bob again", author="dave")
    out, err = tail.communicate(timeout=30)
    assert tail.returncode == 0, err
    assert [line.split(" ", 1)[1] for line in out.splitlines()] == [
        "#general alice mentioned you: hi @bob, first",
        "#general dave mentioned you: and @bob again",
    ]


def test_a_replay_is_shared_unless_the_reader_has_personal_events_in_it(store: Store) -> None:
    from feed.render import Renderer
    from feed.replays import Replays

    start = run(store.latest_event_id())
    run(store.create_post("general", "alice", "for @bob"))

    async def asked() -> tuple[str | None, ...]:
        replays = Replays(store, Renderer())
        return (
            await replays.personal("carol", start, run_latest),
            await replays.personal("bob", start, run_latest),
            await replays.personal(None, start, run_latest),
            await replays.personal("bob", run_latest, run_latest),
        )

    run_latest = run(store.latest_event_id())
    assert run(asked()) == (None, "bob", None, None)


def test_a_readers_answer_holds_up_to_where_the_relay_was_when_it_was_asked(
    store: Store,
) -> None:
    from feed.render import Renderer
    from feed.replays import Replays

    async def asked() -> tuple[str | None, str | None]:
        replays = Replays(store, Renderer())
        start = await store.latest_event_id()
        before = await replays.personal("bob", start, start)
        await store.create_post("general", "alice", "for @bob")
        # Asked again from the same place at once, by a stream that joined later.
        return before, await replays.personal("bob", start, await store.latest_event_id())

    assert run(asked()) == (None, "bob")


def test_a_post_tells_at_most_max_mentioned_people(store: Store) -> None:
    seen: list[Commit] = []
    store.on_commit(seen.append)
    names = [f"@p{n}" for n in range(mentions.MAX_MENTIONED + 10)]
    run(store.create_post("general", "alice", " ".join(names)))
    told = [e.recipient for c in seen for e in c.events if e.kind is EventKind.MENTION]
    assert told == [f"p{n}" for n in range(mentions.MAX_MENTIONED)]


def test_the_hub_addresses_a_personal_event_to_its_person_only_where_they_may_read() -> None:
    from feed.events import Hub, Outgoing
    from feed.sse import Format
    from feed.subscribers import Subscriber

    hub = Hub(heartbeat=60)

    def joined(
        person: str | None, private: frozenset[str] | None, only: str | None = None
    ) -> Subscriber:
        sub = Subscriber(Format.JSON, frozenset({"general"}), last_id=0, limit=1 << 20)
        sub.person, sub.private, sub.only = person, private, only
        hub.subscribe(sub)
        return sub

    bob, bob_in_secret = joined("bob", frozenset()), joined("bob", frozenset({"secret"}))
    bobs_mentions, carol = joined("bob", None, "mention"), joined("carol", None)
    frames = {Format.JSON: b"data: x\n\n"}
    hub.publish_many(
        [
            Outgoing(1, "random", frames, False, "bob", "read-position"),
            Outgoing(2, "secret", frames, True, "bob", "mention"),
            Outgoing(3, "general", frames, False, None, "post-created"),
        ]
    )
    for sub in (bob, bob_in_secret, bobs_mentions, carol):
        sub.take()
    # bob: his read position (of a channel his stream does not follow) and the post,
    # not the mention in #secret, which he may not read; carol: only the post.
    assert (bob.sent, bob_in_secret.sent, bobs_mentions.sent, carol.sent) == (2, 3, 1, 1)
    assert (bob.last_id, bobs_mentions.last_id, carol.last_id) == (3, 2, 3)


def test_a_read_through_one_process_reaches_only_its_person_on_another(
    make_server: Callable[..., Server], postgres: Postgres
) -> None:
    url = postgres.new_database()
    a = make_server(database=url, broker_url=url, poll_interval=60.0)
    b = make_server(database=url, broker_url=url, poll_interval=60.0)
    bob = bearer(a.token("bob"))
    with (
        SSEClient(b.port, params={"format": "json"}, headers=bob) as bobs,
        SSEClient(b.port, params={"format": "json"}, headers=bearer(a.token("carol"))) as hers,
    ):
        for stream in (bobs, hers):
            stream.wait_for(lambda s: any(m.id for m in s.messages))
        post = a.post("for @bob", author="alice")["event_id"]
        read = a.client.post("/api/channels/general/read", json={"up_to": post}, headers=bob)
        assert read.status_code == 200
        last = a.post("after", author="alice")["event_id"]
        for stream in (bobs, hers):
            stream.wait_for(lambda s: str(last) in [m.id for m in s.messages])
        assert _kinds(bobs) == ["mention", "post-created", "read-position", "post-created"]
        assert _kinds(hers) == ["post-created", "post-created"]


def test_the_mentions_page_lists_the_readers_mentions_and_needs_someone(
    client: TestClient, settings: Settings
) -> None:
    bob = person(settings, "bob")
    client.post("/api/channels/general/posts", json={"body": "ping @bob <b>x</b>"})
    client.post("/api/channels/general/posts", json={"body": "ping @carol"})
    page = client.get("/mentions", headers=bob)
    assert page.status_code == 200
    assert page.text.count('class="mention-item unread"') == 1
    assert '<mark data-mention="bob">@bob</mark> &lt;b&gt;x&lt;/b&gt;' in page.text
    assert "@carol" not in page.text
    client.headers.pop("Authorization")
    away = client.get("/mentions", follow_redirects=False)
    assert away.status_code == 303 and away.headers["location"].startswith("/signin")


def test_the_dashboard_carries_its_readers_counts_and_each_posts_event_id(
    client: TestClient, settings: Settings
) -> None:
    made = client.post("/api/channels/general/posts", json={"body": "hi @bob"}).json()
    page = client.get("/channels/announcements", headers=person(settings, "bob")).text
    assert f'data-event-id="{made["event_id"]}"' not in page  # not on this page
    assert re.search(r"<title>\(1\) Announcements · feed</title>", page)
    home = client.get("/", headers=person(settings, "bob")).text
    assert f'id="post-{made["post"]["id"]}" class="post" data-channel="general" ' in home
    assert f'data-event-id="{made["event_id"]}"' in home
    # Nobody signed in: no read state at all.
    client.headers.pop("Authorization")
    assert "read-state" not in client.get("/").text


def test_counts_stop_at_the_cap_and_say_so_on_every_surface(
    client: TestClient, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from feed import reading
    from feed.storage import reading as stored

    monkeypatch.setattr(stored, "COUNT_CAP", 3)
    monkeypatch.setattr(reading, "COUNT_CAP", 3)
    bob = person(settings, "bob")
    for body in ("one @bob", "two @bob", "three @bob", "four @bob", "five @bob"):
        assert client.post("/api/channels/general/posts", json={"body": body}).status_code == 201
    assert client.post("/api/channels/announcements/posts", json={"body": "a"}).status_code == 201
    unread = client.get("/api/me/unread", headers=bob).json()
    assert unread["cap"] == 3
    assert unread["channels"]["general"] == {"unread": 3, "mentions": 3, "read_up_to": 0}
    assert unread["channels"]["announcements"]["unread"] == 1
    assert (unread["total"], unread["mentions"]) == (4, 3)
    page = client.get("/channels/announcements", headers=bob).text
    assert re.search(r"<title>\(4\+\) Announcements · feed</title>", page)
    badge = page[page.index('data-unread-channel="general"') :]
    assert badge[: badge.index("</span>")].endswith('<span class="count">3+')
    badge = page[page.index('data-unread-channel="announcements"') :]
    assert badge[: badge.index("</span>")].endswith('<span class="count">1')
    mentioned = page[page.index("data-unread-mentions") :]
    assert mentioned[: mentioned.index("</span></span>")].endswith('<span class="count">3+')
    # Below the cap, counts are exact again.
    events = [m["event_id"] for m in client.get("/api/me/mentions", headers=bob).json()["mentions"]]
    marked = client.post("/api/channels/general/read", json={"up_to": events[1] + 1}, headers=bob)
    assert marked.status_code == 200
    assert client.get("/api/me/unread", headers=bob).json()["channels"]["general"] == {
        "unread": 1,
        "mentions": 1,
        "read_up_to": events[1] + 1,
    }


def test_replies_after_the_read_position_are_unread_on_every_surface(
    client: TestClient, settings: Settings
) -> None:
    """A reply by someone else, after the reader's position in its channel, is
    something they have not read: the API, the store and the page's badge say so, and
    the card it went under carries its event, for the page to report it read."""
    bob = person(settings, "bob")
    parent = client.post("/api/channels/general/posts", json={"body": "a thread"}).json()
    assert client.post("/api/me/read", json={}, headers=bob).status_code == 200
    reply_url = f"/api/posts/{parent['post']['id']}/replies"
    replies = [client.post(reply_url, json={"body": f"reply {n}"}).json() for n in range(2)]
    own = client.post(reply_url, json={"body": "bob's own"}, headers=bob)
    assert own.status_code == 201
    unread = client.get("/api/me/unread", headers=bob).json()
    assert unread["channels"]["general"]["unread"] == 2 and unread["total"] == 2
    home = client.get("/", headers=bob).text
    assert re.search(r"<title>\(2\) ", home)
    badge = home[home.index('data-unread-channel="general"') :]
    assert badge[: badge.index("</span>")].endswith('<span class="count">2')
    card = re.search(rf'<article id="post-{parent["post"]["id"]}"[^>]*>', home)
    assert card is not None
    assert f'data-event-id="{parent["event_id"]}"' in card.group(0)
    assert f'data-reply-event-id="{own.json()["event_id"]}"' in card.group(0)
    # Deleted, a reply is no longer there to read.
    gone = client.delete(f"/api/posts/{replies[1]['post']['id']}")
    assert gone.status_code in (200, 204)
    assert client.get("/api/me/unread", headers=bob).json()["total"] == 1
    # Read up to the first reply: nothing is left.
    up_to = {"up_to": replies[0]["event_id"]}
    assert client.post("/api/channels/general/read", json=up_to, headers=bob).status_code == 200
    assert client.get("/api/me/unread", headers=bob).json()["total"] == 0


def test_the_store_counts_replies_and_knows_each_posts_newest_reply(store: Store) -> None:
    first = run(store.create_post("general", "alice", "one"))
    second = run(store.create_post("general", "alice", "two"))
    run(store.mark_read("bob", "general", second.event_id or 0))
    replies = [run(store.create_reply("general", first.post.id, "carol", f"r{n}")) for n in (1, 2)]
    own = run(store.create_reply("general", second.post.id, "bob", "mine"))
    assert counts(store, "bob")["general"] == (2, 0)
    assert counts(store, "carol")["general"] == (3, 0)  # the posts and bob's reply
    page = run(store.front_page(["general"], 10, events=True))
    assert page.replied == {first.post.id: replies[1].event_id, second.post.id: own.event_id}
    assert page.created == {first.post.id: first.event_id, second.post.id: second.event_id}
    run(store.delete_post(replies[1].post.id))
    assert counts(store, "bob")["general"] == (1, 0)
    older = run(store.older_posts(["general"], second.post.id, 10))
    assert older.replied == {first.post.id: replies[0].event_id}
