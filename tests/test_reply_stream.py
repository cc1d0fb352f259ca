"""Replies on the stream, against a real server: their events in three formats, a
thread's own stream with resume, and private threads kept from those who may not read
them."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from tests.auth import ADMIN_NAME, bearer, make_token
from tests.conftest import Server
from tests.sse import SSEClient
from tests.test_stream import open_stream


@pytest.fixture
def database_url(each_database_url: str) -> str:
    return each_database_url


def reply(server: Server, parent: int, body: str) -> dict[str, object]:
    answer = server.client.post(f"/api/posts/{parent}/replies", json={"body": body})
    assert answer.status_code == 201, answer.text
    found: dict[str, object] = answer.json()
    return found


def test_a_reply_is_an_event_in_every_format_carrying_its_parent(server: Server) -> None:
    parent = server.post("the plan")["post"]["id"]
    with (
        open_stream(server, format="json") as as_json,
        open_stream(server, format="text") as as_text,
        open_stream(server, format="html") as as_html,
    ):
        made = reply(server, parent, "*agreed*")
        (created,) = as_json.wait_events(1)
        (line,) = as_text.wait_events(1)
        _hello, markup = as_html.wait_events(2)
    reply_id = made["post"]["id"]  # type: ignore[index]
    payload = json.loads(created.data)
    assert created.event == "reply-created" and created.id == str(made["event_id"])
    assert payload["post"]["parent"] == parent and payload["post"]["id"] == reply_id
    assert payload["thread"] == {"post": parent, "replies": 1, "repliers": ["tester"]}
    assert line.event == "reply-created"
    assert line.data.endswith(f"#general ↳ tester replied to post {parent}: *agreed*")
    assert markup.event == "reply-created"
    assert markup.data.startswith(f'<article id="post-{reply_id}" class="reply"')
    assert f'data-parent="{parent}"' in markup.data and "<em>agreed</em>" in markup.data
    # The parent's card summary, out of band, after the reply.
    summary = markup.data[markup.data.index(f'<span id="replies-{parent}"') :]
    assert 'hx-swap-oob="outerHTML"' in summary and "1 reply · tester" in summary


def test_a_threads_stream_carries_that_thread_alone_and_resumes(server: Server) -> None:
    parent = server.post("the plan")["post"]["id"]
    other = server.post("another post")["post"]["id"]
    first = reply(server, parent, "one")
    with open_stream(server, format="json", thread=str(parent)) as stream:
        server.post("a new post elsewhere")
        reply(server, other, "to the other post")
        second = reply(server, parent, "two")
        server.client.patch(f"/api/posts/{parent}", json={"body": "the plan, revised"})
        server.client.delete(f"/api/posts/{second['post']['id']}")  # type: ignore[index]
        events = stream.wait_events(3)
    assert [e.event for e in events] == ["reply-created", "post-updated", "reply-deleted"]
    assert json.loads(events[0].data)["post"]["body"] == "two"
    # Resumed from the first reply: the thread's events since, and nothing else.
    params = {"format": "json", "thread": str(parent), "last_event_id": str(first["event_id"])}
    with SSEClient(server.port, params=params) as resumed:
        replayed = resumed.wait_events(3)
    assert [e.id for e in replayed] == [e.id for e in events]
    # A reply, a deleted post and a post that never was are no threads.
    for missing in (first["post"]["id"], 999_999):  # type: ignore[index]
        with SSEClient(server.port, params={"thread": str(missing)}) as refused:
            assert refused.status == 404
    server.client.delete(f"/api/posts/{other}")
    with SSEClient(server.port, params={"thread": str(other)}) as refused:
        assert refused.status == 404
    with SSEClient(server.port, params={"thread": str(parent), "channel": "general"}) as both:
        assert both.status == 400


def test_a_readers_thread_stream_carries_the_thread_alone_live_as_in_replay(
    server: Server,
) -> None:
    """A signed-in reader's own events (mentions, read positions) are about other
    posts: a thread's stream carries none of them, live or resumed."""
    made = server.post("the plan")
    parent, start = made["post"]["id"], made["event_id"]
    headers = bearer(server.token("bob", role="reader"))
    params = {"format": "json", "thread": str(parent)}
    with SSEClient(server.port, params=params, headers=headers) as live:
        assert live.status == 200
        live.wait_for(lambda s: any(m.retry for m in s.messages))
        server.post("hello @bob, elsewhere")
        read = server.client.post("/api/channels/general/read", json={}, headers=headers)
        assert read.status_code == 200, read.text
        last = reply(server, parent, "one")["event_id"]
        live.wait_for(lambda s: str(last) in [m.id for m in s.events()])
        got = [(m.id, m.event) for m in live.events() if m.id]
    assert got == [(str(last), "reply-created")]
    with SSEClient(
        server.port, params=params | {"last_event_id": str(start)}, headers=headers
    ) as again:
        again.wait_for(lambda s: str(last) in [m.id for m in s.events()])
        assert [(m.id, m.event) for m in again.events() if m.id] == got


def _replies(stream: SSEClient) -> list[str]:
    """The bodies of the replies ``stream`` has received, in order."""
    events = stream.events()
    return [json.loads(e.data)["post"]["body"] for e in events if e.event == "reply-created"]


def test_a_private_thread_reaches_nobody_who_may_not_read_its_channel(server: Server) -> None:
    created = server.client.post(
        "/api/channels", json={"name": "hush", "title": "Hush", "private": True}
    )
    assert created.status_code == 201
    member, _ = make_token(server.database, "mel", "writer")
    outsider, _ = make_token(server.database, "otto", "writer")
    assert server.client.put("/api/channels/hush/members/mel", json={}).status_code == 200
    parent = server.client.post("/api/channels/hush/posts", json={"body": "secret"}).json()
    parent_id = parent["post"]["id"]
    public = server.post("public")["post"]["id"]
    outside = SSEClient(server.port, params={"format": "json"}, headers=bearer(outsider))
    inside = SSEClient(server.port, params={"format": "json"}, headers=bearer(member))
    with outside, inside:
        outside.wait_for(lambda s: any(m.retry for m in s.messages))
        inside.wait_for(lambda s: any(m.retry for m in s.messages))
        reply(server, parent_id, "quiet reply")
        reply(server, public, "loud reply")
        # Replies only: the post "public" may still reach a stream live, if the relay
        # had not handed it to the hub when the stream took its position.
        inside.wait_for(lambda s: len(_replies(s)) >= 2)
        outside.wait_for(lambda s: len(_replies(s)) >= 1)
        # The quiet reply came first: had it reached the outsider, it would be first.
        assert _replies(inside) == ["quiet reply", "loud reply"]
        assert _replies(outside) == ["loud reply"]
    # Nor in a thread's stream, a listing, or a reply of one's own.
    with SSEClient(server.port, params={"thread": str(parent_id)}, headers=bearer(outsider)) as s:
        assert s.status == 404
    for path in (f"/api/posts/{parent_id}/replies", f"/api/posts/{parent_id}"):
        assert server.client.get(path, headers=bearer(outsider)).status_code == 404
    sent = server.client.post(
        f"/api/posts/{parent_id}/replies", json={"body": "hi"}, headers=bearer(outsider)
    )
    assert sent.status_code == 404
    listed = server.client.get(f"/api/posts/{parent_id}/replies", headers=bearer(member))
    assert [r["body"] for r in listed.json()["replies"]] == ["quiet reply"]


def test_a_replys_reactions_mention_and_search_drop_read_as_such_in_text(server: Server) -> None:
    from feed.terminal import line

    parent = server.post("the plan")["post"]["id"]
    made = reply(server, parent, "first")
    reply_id = made["post"]["id"]  # type: ignore[index]
    bo = bearer(server.token("bo"))
    with (
        open_stream(server, format="text") as as_text,
        open_stream(server, format="text", q="first") as searched,
    ):
        party = server.client.put(f"/api/posts/{reply_id}/reactions/🎉")
        assert party.status_code == 200, party.text
        mention = server.client.post(f"/api/posts/{parent}/replies", json={"body": "ask @bo"})
        assert mention.status_code == 201, mention.text
        edited = server.client.patch(f"/api/posts/{reply_id}", json={"body": "second"})
        assert edited.status_code == 200, edited.text
        reacted, mentioned, changed = (e.data for e in as_text.wait_events(3))
        (dropped,) = (e.data for e in searched.wait_events(1) if e.event == "post-unmatched")
    mentions = {"only": "mentions", "last_event_id": "0"}
    with SSEClient(server.port, params={"format": "json", **mentions}, headers=bo) as bos:
        (told,) = bos.wait_events(1)
    with SSEClient(server.port, params={"format": "text", **mentions}, headers=bo) as bos:
        (as_line,) = bos.wait_events(1)
    assert as_line.data.endswith(f"{ADMIN_NAME} mentioned you in a reply to post {parent}: ask @bo")
    assert reacted.endswith(f"reacted 🎉 to reply {reply_id} to post {parent} (now 🎉 1)"), reacted
    assert mentioned.endswith(f"↳ {ADMIN_NAME} replied to post {parent}: ask @bo"), mentioned
    assert changed.endswith(f"edited reply {reply_id} to post {parent}: second"), changed
    assert (
        dropped == f"#general reply {reply_id} by {ADMIN_NAME} to post {parent} no longer matches"
    )
    # The mention, as the dashboard's notice and feed tail show it.
    assert told.event == "mention"
    shown = line("mention", told.data, colour=False)
    assert shown.endswith(f"{ADMIN_NAME} mentioned you in a reply to post {parent}: ask @bo"), shown


# -- a thread's stream past its post's deletion ---------------------------------------


def _position(stream: SSEClient) -> str:
    """Where a stream that did not resume starts: its opening's bare ``id:``."""
    stream.wait_for(lambda s: any(m.id for m in s.messages))
    found = next(m.id for m in stream.messages if m.id)
    assert found is not None
    return found


def _ended(stream: SSEClient) -> None:
    """Wait for the end of the response: its final chunk, not a cut."""
    stream.wait_closed(timeout=10)
    assert stream.graceful


def _kinds_and_ids(stream: SSEClient) -> list[tuple[str | None, str | None]]:
    return [(e.event, e.id) for e in stream.events()]


def test_a_threads_stream_resumes_past_its_posts_deletion_and_ends_with_the_tombstone(
    make_server: Callable[..., Server],
) -> None:
    """A client away while its thread's post was deleted gets what it missed, the
    tombstone last, and then the stream ends, as one that saw the deletion live does;
    a resume from the tombstone on has nothing left to get, as a fresh open."""
    server = make_server(heartbeat=0.3)
    parent = server.post("soon gone")["post"]["id"]
    thread = {"format": "json", "thread": str(parent)}
    with open_stream(server, **thread) as first:
        position = _position(first)
    with open_stream(server, **thread) as live:
        server.post("elsewhere")
        answered = reply(server, parent, "while away")
        deleted = server.client.delete(f"/api/posts/{parent}")
        assert deleted.status_code == 200, deleted.text
        tombstone = str(deleted.json()["event_id"])
        missed = [("reply-created", str(answered["event_id"])), ("post-deleted", tombstone)]
        _ended(live)  # after the deletion: nothing more to come
        assert _kinds_and_ids(live) == missed
    header = {"Last-Event-ID": position}
    as_query = {**thread, "last_event_id": position}
    for resumed in (
        SSEClient(server.port, params=thread, headers=header),
        SSEClient(server.port, params=as_query),
    ):
        with resumed:
            assert resumed.status == 200, resumed.read_body()
            _ended(resumed)  # as the live one
            assert _kinds_and_ids(resumed) == missed
            created, gone = (json.loads(e.data)["post"] for e in resumed.events())
            assert created["parent"] == parent and created["deleted"] is True
            assert gone["id"] == parent and gone["deleted"] is True
    # From the tombstone on, and without a resume id: nothing more to get.
    after = server.post("after the deletion")["event_id"]
    for since in (tombstone, str(after), None):
        headers = None if since is None else {"Last-Event-ID": since}
        with SSEClient(server.port, params=thread, headers=headers) as refused:
            assert refused.status == 404, since
            assert json.loads(refused.read_body())["error"] == f"There is no post with id {parent}."
    # A reply's id is no thread, whatever the resume id.
    with SSEClient(
        server.port,
        params={"thread": str(answered["post"]["id"])},  # type: ignore[index]
        headers=header,
    ) as refused:
        assert refused.status == 404


def test_a_deleted_private_thread_resumes_for_its_members_alone(server: Server) -> None:
    created = server.client.post(
        "/api/channels", json={"name": "hush", "title": "Hush", "private": True}
    )
    assert created.status_code == 201, created.text
    member, _ = make_token(server.database, "mel", "writer")
    outsider, _ = make_token(server.database, "otto", "writer")
    assert server.client.put("/api/channels/hush/members/mel", json={}).status_code == 200
    made = server.client.post("/api/channels/hush/posts", json={"body": "secret"}).json()
    parent, start = made["post"]["id"], str(made["event_id"])
    deleted = server.client.delete(f"/api/posts/{parent}")
    assert deleted.status_code == 200, deleted.text
    params = {"format": "json", "thread": str(parent)}
    resume = {"Last-Event-ID": start}
    with SSEClient(server.port, params=params, headers=bearer(outsider) | resume) as refused:
        assert refused.status == 404
        assert json.loads(refused.read_body())["error"] == f"There is no post with id {parent}."
    with SSEClient(server.port, params=params | {"last_event_id": start}) as anonymous:
        assert anonymous.status == 404
    with SSEClient(server.port, params=params, headers=bearer(member) | resume) as resumed:
        assert resumed.status == 200
        _ended(resumed)  # after the tombstone
        (gone,) = resumed.events()
    assert (gone.event, gone.id) == ("post-deleted", str(deleted.json()["event_id"]))
