"""Replies: posts that answer a top-level post, in its channel, one level deep; their
events, their threads' summaries, and a thread deleted with its post."""

from __future__ import annotations

import asyncio
import json

import pytest
from alembic import command
from sqlalchemy import inspect, text
from starlette.testclient import TestClient

from feed import schema
from feed.models import EventKind
from feed.settings import Settings
from feed.store import NotAThread, PostDeleted, PostNotFound, ReplyNotPinned, Store, make_engine
from feed.values import Commit
from tests.auth import bearer, make_token
from tests.conftest import Server


@pytest.fixture
def database_url(each_database_url: str) -> str:
    return each_database_url


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def test_a_reply_is_a_post_of_its_parents_channel_with_its_own_events(store: Store) -> None:
    async def main() -> tuple[list[Commit], int, int]:
        told: list[Commit] = []
        store.on_commit(told.append)
        parent = (await store.create_post("general", "ann", "the plan")).post.id
        reply = await store.create_reply("general", parent, "bo", "*agreed*")
        assert reply.post.parent == parent
        assert reply.post.html == "<p><em>agreed</em></p>\n"
        await store.edit_post(reply.post.id, "agreed, mostly")
        await store.create_reply("general", parent, "cy", "me too")
        await store.delete_post(reply.post.id)
        return told, parent, reply.post.id

    told, parent, reply = run(main())
    events = [e for commit in told for e in commit.events]
    assert [(e.kind, e.post and e.post.id) for e in events] == [
        (EventKind.POST_CREATED, parent),
        (EventKind.REPLY_CREATED, reply),
        (EventKind.REPLY_UPDATED, reply),
        (EventKind.REPLY_CREATED, reply + 1),
        (EventKind.REPLY_DELETED, reply),
    ]
    # Each reply event carries its parent's summary as that transaction left it.
    summaries = [(e.thread.replies, e.thread.repliers) for e in events[1:] if e.thread]
    assert summaries == [(1, ("bo",)), (1, ("bo",)), (2, ("cy", "bo")), (1, ("cy",))]
    # A replay shows the same as now: the current state of each, summary included.
    replayed = run(store.events_after(0))
    assert [e.id for e in replayed] == [e.id for e in events]
    assert {e.thread for e in replayed if e.thread} == {events[-1].thread}
    assert [e.post.replies for e in replayed if e.post and e.post.id == parent] == [1]


def test_lists_show_top_level_posts_with_their_summary_and_replies_are_read_by_thread(
    store: Store,
) -> None:
    async def main() -> None:
        first = (await store.create_post("general", "ann", "one")).post.id
        second = (await store.create_post("general", "ann", "two")).post.id
        for n, name in enumerate(["bo", "cy", "bo", "di", "ed"]):
            await store.create_reply("general", first, name, f"reply {n}")
        listed = await store.list_posts(["general"])
        assert [(p.id, p.replies, p.repliers) for p in listed] == [
            (second, 0, ()),
            (first, 5, ("ed", "di", "bo")),
        ]
        page = await store.front_page(None, 10)
        assert [p.id for p in page.posts] == [second, first]
        replies = await store.list_replies(first, limit=3)
        assert [p.body for p in replies] == ["reply 4", "reply 3", "reply 2"]
        older = await store.list_replies(first, before=replies[-1].id, limit=3)
        assert [p.body for p in older] == ["reply 1", "reply 0"]
        thread = await store.thread_page(first, 4)
        assert thread.post.replies == 5
        assert [p.body for p in thread.replies] == [f"reply {n}" for n in (1, 2, 3, 4)]
        assert thread.last_event_id == await store.latest_event_id()
        # Only the thread's own events, replayed in order.
        mine = await store.events_after(0, thread=first)
        assert [e.kind for e in mine] == [EventKind.POST_CREATED] + [EventKind.REPLY_CREATED] * 5
        assert await store.count_events_after(0, thread=first, limit=100) == 6
        assert await store.count_events_after(0, thread=second, limit=100) == 1

    run(main())


def test_a_reply_to_a_reply_or_to_a_gone_post_is_refused(store: Store) -> None:
    async def main() -> None:
        parent = (await store.create_post("general", "ann", "one")).post.id
        reply = (await store.create_reply("general", parent, "bo", "two")).post.id
        with pytest.raises(NotAThread, match=f"reply to post {parent} instead"):
            await store.create_reply("general", reply, "cy", "three")
        with pytest.raises(PostNotFound):
            await store.create_reply("general", 999_999, "cy", "three")
        # A parent of another channel is as good as not there.
        with pytest.raises(PostNotFound):
            await store.create_reply("announcements", parent, "cy", "three")
        with pytest.raises(ReplyNotPinned):
            await store.set_pinned(reply, True)
        with pytest.raises(NotAThread):
            await store.thread_page(reply, 10)
        await store.delete_post(parent)
        with pytest.raises(PostDeleted):
            await store.create_reply("general", parent, "cy", "three")

    run(main())


def test_deleting_a_post_deletes_its_replies_under_its_one_tombstone(store: Store) -> None:
    async def main() -> tuple[int, list[int]]:
        parent = (await store.create_post("general", "ann", "one")).post.id
        replies = [
            (await store.create_reply("general", parent, "bo", f"r{n}")).post.id for n in range(3)
        ]
        before = await store.latest_event_id()
        await store.delete_post(parent)
        deleted = await store.events_after(before)
        assert [(e.kind, e.post and e.post.id) for e in deleted] == [
            (EventKind.POST_DELETED, parent)
        ]
        return parent, replies

    parent, replies = run(main())
    with pytest.raises(PostDeleted):
        run(store.list_replies(parent))
    # Every reply is a tombstone now: a replay of its creation removes it from pages.
    replayed = [e for e in run(store.events_after(0)) if e.post and e.post.id in replies]
    assert [(e.kind, e.post.deleted, e.post.body) for e in replayed if e.post] == [
        (EventKind.REPLY_CREATED, True, "")
    ] * 3


def test_a_database_at_0007_upgrades_to_replies_in_place(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        with engine.begin() as connection:
            config = schema._config(connection)
            command.upgrade(config, "0007")
            connection.execute(
                text(
                    "INSERT INTO channels (name, title, description, archived, private, "
                    "announcement_only) VALUES ('old', 'Old', '', false, false, true)"
                )
            )
            channel = connection.execute(text("SELECT id FROM channels")).scalar_one()
            connection.execute(
                text(
                    "INSERT INTO posts (channel_id, author, body, html, created_at, pinned, "
                    "deleted) VALUES (:c, 'ann', 'kept', '<p>kept</p>', '2026-11-30', "
                    "false, false)"
                ),
                {"c": channel},
            )
        assert schema.upgrade(engine) == ("0007", schema.head())
        columns = {c["name"] for c in inspect(engine).get_columns("posts")}
        assert "parent_id" in columns
        # A thread's replies are found by an index that leads with their parent.
        leading = {i["column_names"][0] for i in inspect(engine).get_indexes("posts")}
        assert "parent_id" in leading
    finally:
        engine.dispose()
    store = Store.from_url(database_url)
    try:
        channel = next(c for c in run(store.list_channels()) if c.name == "old")
        assert channel.replies is True
        (post,) = run(store.list_posts(["old"]))
        assert (post.body, post.parent, post.replies) == ("kept", None, 0)
        reply = run(store.create_reply("old", post.id, "bo", "new"))
        assert reply.post.parent == post.id
    finally:
        store.close()


def test_replies_through_the_api_are_idempotent_paged_and_edited_by_their_author(
    client: TestClient, settings: Settings
) -> None:
    made = client.post(
        "/api/channels", json={"name": "news", "title": "News", "announcement_only": True}
    )
    assert made.status_code == 201 and made.json()["channel"]["replies"] is True
    parent = client.post("/api/channels/news/posts", json={"body": "launch"})
    parent_id = parent.json()["post"]["id"]
    url = f"/api/posts/{parent_id}/replies"
    key = {"Idempotency-Key": "reply-1"}
    first = client.post(url, json={"body": "congrats"}, headers=key)
    again = client.post(url, json={"body": "congrats"}, headers=key)
    assert first.status_code == again.status_code == 201
    assert again.headers["idempotent-replayed"] == "true" and again.text == first.text
    assert first.headers["location"] == f"/api/posts/{first.json()['post']['id']}"
    reused = client.post(url, json={"body": "something else"}, headers=key)
    assert reused.status_code == 422
    # A reader of an announcement-only channel replies, and edits and deletes its reply,
    # but posts nothing and touches no one else's.
    reader, _ = make_token(settings.database_url, "rita", "reader")
    as_reader = bearer(reader)
    mine = client.post(url, json={"body": "me too"}, headers=as_reader)
    assert mine.status_code == 201, mine.text
    mine_id = mine.json()["post"]["id"]
    assert (
        client.patch(f"/api/posts/{mine_id}", json={"body": "me too!"}, headers=as_reader).json()[
            "post"
        ]["body"]
        == "me too!"
    )
    others = first.json()["post"]["id"]
    refused = client.patch(f"/api/posts/{others}", json={"body": "x"}, headers=as_reader)
    assert refused.status_code == 403
    general = client.post("/api/channels/general/posts", json={"body": "chat"}).json()
    in_general = client.post(
        f"/api/posts/{general['post']['id']}/replies", json={"body": "hi"}, headers=as_reader
    )
    assert in_general.status_code == 403 and "may reply" in in_general.json()["error"]
    anonymous = client.post(url, json={"body": "hi"}, headers={"Authorization": ""})
    assert anonymous.status_code == 401
    assert client.post(f"/api/posts/{mine_id}/pin").status_code == 422
    # Paged newest first, as a channel's posts.
    page = client.get(url, params={"limit": 1}).json()
    assert [r["id"] for r in page["replies"]] == [mine_id] and page["next_before"] == mine_id
    rest = client.get(url, params={"before": mine_id}).json()
    assert [r["id"] for r in rest["replies"]] == [others] and rest["next_before"] is None
    assert client.delete(f"/api/posts/{mine_id}", headers=as_reader).status_code == 200
    listed = client.get("/api/channels/news/posts").json()["posts"]
    assert [(p["id"], p["replies"], p["repliers"]) for p in listed] == [(parent_id, 1, ["tester"])]


def test_a_replayed_reply_of_a_deleted_thread_renders_as_the_tombstone_it_is_now(
    store: Store,
) -> None:
    from feed.render import Renderer
    from feed.sse import Format

    async def main() -> int:
        parent = (await store.create_post("general", "ann", "one")).post.id
        await store.create_reply("general", parent, "bo", "gone soon")
        await store.delete_post(parent)
        return parent

    parent = run(main())
    created = next(e for e in run(store.events_after(0)) if e.kind is EventKind.REPLY_CREATED)
    assert created.post is not None
    renderer = Renderer()
    html = renderer.event_data(created, Format.HTML)
    assert html == (
        f'<div id="post-{created.post.id}" data-parent="{parent}" hx-swap-oob="delete"></div>'
        f'<span id="replies-{parent}" class="reply-summary" data-replies="0" '
        'hx-swap-oob="outerHTML">No replies yet</span>'
    )
    assert renderer.event_data(created, Format.TEXT) == (
        f"#general reply {created.post.id} by bo to post {parent} was deleted"
    )
    body = json.loads(renderer.event_data(created, Format.JSON))
    assert body["post"]["deleted"] is True and body["post"]["parent"] == parent
    assert body["thread"] == {"post": parent, "replies": 0, "repliers": []}


def test_a_token_limited_to_other_channels_learns_nothing_of_a_thread_it_may_not_read(
    server: Server,
) -> None:
    token, _ = make_token(server.database, "lim", channels=["announcements"])
    gone = server.post("to delete")["post"]["id"]
    assert server.client.delete(f"/api/posts/{gone}").status_code == 200
    kept = server.post("kept")["post"]["id"]
    answer = server.client.post(f"/api/posts/{kept}/replies", json={"body": "a reply"})
    reply = answer.json()["post"]["id"]
    missing = 2_000_000
    for path in ("/partials/post/{}", "/partials/thread/{}", "/posts/{}", "/api/posts/{}"):
        for found in (gone, kept, reply, missing):
            seen = server.client.get(path.format(found), headers=bearer(token))
            # Deleted, live, a reply, or never there: the same answer.
            assert seen.status_code == 404, (path, found, seen.status_code, seen.text)
            assert "X-Feed-Last-Event-Id" not in seen.headers
            assert f"{found}" in seen.text and "reply" not in seen.text.lower()
    # Its own channel's deleted post and reply are still told as such.
    own = server.post("mine", channel="announcements")["post"]["id"]
    assert server.client.delete(f"/api/posts/{own}").status_code == 200
    assert server.client.get(f"/partials/thread/{own}", headers=bearer(token)).status_code == 410
