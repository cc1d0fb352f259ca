"""Identity and permissions against a real server: tokens, sessions, the trusted
header, private and announcement-only channels, kiosk links, and revocation of open
streams. Browser sign-in is in test_signin_browser."""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import httpx
import pytest
from starlette.testclient import TestClient

from feed.access import Access
from feed.app import create_app
from feed.identity import ANONYMOUS
from feed.runtime import runtime_of
from feed.settings import Settings
from feed.store import Store
from feed.values import ChannelView
from tests.auth import ADMIN, ADMIN_TOKEN, bearer, ensure_admin, make_token
from tests.conftest import Server
from tests.services import Postgres
from tests.sse import Message, SSEClient
from tests.test_cli import run_feed
from tests.waiting import until

T = TypeVar("T")
FAST = {"access_recheck": 0.2, "heartbeat": 0.5}


def eventually(ask: Callable[[], T], ok: Callable[[T], bool], timeout: float = 5) -> T:
    """``ask()`` until its answer is ``ok``, within ``timeout`` seconds."""
    return until(ask, ok, timeout=timeout)


def bodies(messages: list[Message]) -> list[str]:
    return [json.loads(m.data)["post"]["body"] for m in messages if m.event == "post-created"]


def stream(server: Server, token: str | None = None, **params: str) -> SSEClient:
    headers = {} if token is None else bearer(token)
    return SSEClient(server.port, params={"format": "json", **params}, headers=headers)


def told(client: SSEClient, kind: str) -> list[Message]:
    """The ``resync`` or ``ended`` messages a stream got (sse.py, on messages that tell)."""
    return [m for m in client.messages if m.event == kind]


def wait_told(client: SSEClient, kind: str, timeout: float = 10) -> Message:
    client.wait_for(lambda s: told(s, kind), timeout)
    return told(client, kind)[0]


def wait_for_body(client: SSEClient, body: str, timeout: float = 10) -> list[str]:
    client.wait_for(lambda s: body in bodies(s.events()), timeout)
    return bodies(client.events())


@pytest.fixture
def board(make_server: Callable[..., Server]) -> Server:
    """A server with a private channel #board whose only member is ``ann``."""
    server = make_server(**FAST)
    made = server.client.post(
        "/api/channels", json={"name": "board", "title": "Board", "private": True}
    )
    assert made.status_code == 201, made.text
    assert made.json()["channel"]["private"] is True
    member = server.client.put("/api/channels/board/members/ann", json={})
    assert member.json() == {"channel": "board", "name": "ann", "may_post": False}
    return server


# -- tokens ------------------------------------------------------------------------------


def test_tokens_are_made_listed_and_revoked_from_the_cli_and_kept_only_as_digests(
    tmp_path: Path, make_server: Callable[..., Server]
) -> None:
    database = tmp_path / "feed.db"
    env = {"FEED_DATABASE_URL": f"sqlite:///{database}"}
    assert run_feed("db", "upgrade", **env).returncode == 0
    made = run_feed("token", "create", "ada", "--role", "writer", **env)
    assert made.returncode == 0, made.stderr
    token = made.stdout.splitlines()[0]
    assert re.fullmatch(r"feed_[A-Za-z0-9_-]{43}", token)
    assert "token 1 for 'ada' (writer)" in made.stdout
    # Only a digest is stored, never the token.
    rows = sqlite3.connect(database).execute("SELECT name, role, digest FROM tokens").fetchall()
    assert rows[0][:2] == ("ada", "writer") and token not in repr(rows)
    listed = run_feed("token", "list", **env)
    assert listed.stdout.startswith("1\tada\twriter\t*\t") and "active" in listed.stdout
    assert token not in listed.stdout

    server = make_server(database=database)
    posted = server.client.post(
        "/api/channels/general/posts", json={"body": "hi"}, headers=bearer(token)
    )
    assert posted.status_code == 201 and posted.json()["post"]["author"] == "ada"

    revoked = run_feed("token", "revoke", "1", **env)
    assert revoked.returncode == 0, revoked.stderr
    # Refused within a second (access.py, on recent answers).
    again = eventually(
        lambda: server.client.get("/api/channels", headers=bearer(token)),
        lambda answer: answer.status_code == 401,
    )
    assert again.json()["error"] == "The token has been revoked; ask an admin for a new one."
    assert again.headers["www-authenticate"].startswith("Bearer")
    assert "revoked" in run_feed("token", "list", **env).stdout
    assert run_feed("token", "create", "x", "--channel", "nope", **env).returncode == 3
    assert run_feed("token", "revoke", "99", **env).returncode == 2


def test_roles_decide_who_posts_and_who_changes_a_post(board: Server) -> None:
    url = "/api/channels/general/posts"
    anonymous = httpx.post(f"{board.url}{url}", json={"body": "x"})
    assert anonymous.status_code == 401
    assert anonymous.json()["error"] == "Posting needs a writer's token or a signed-in session."
    reader = board.client.post(
        url, json={"body": "x"}, headers=bearer(board.token("rita", "reader"))
    )
    assert reader.status_code == 403 and "may read but not post" in reader.json()["error"]
    wrong = httpx.get(f"{board.url}/api/channels", headers=bearer("feed_made-up"))
    assert wrong.status_code == 401, "a bad token is refused, never read as anonymous"

    ann = bearer(board.token("ann"))
    post = board.client.post(url, json={"body": "mine"}, headers=ann).json()["post"]
    assert post["author"] == "ann"
    other = bearer(board.token("ben"))
    path = f"/api/posts/{post['id']}"
    for method, target in (("PATCH", path), ("DELETE", path), ("POST", f"{path}/pin")):
        body = {"body": "his"} if method == "PATCH" else None
        refused = board.client.request(method, target, json=body, headers=other)
        assert refused.status_code == 403, (method, refused.text)
        assert refused.json()["error"] == "Only the post's author or an admin may change it."
        assert httpx.request(method, f"{board.url}{target}", json=body).status_code == 401
    assert board.client.patch(path, json={"body": "edited"}, headers=ann).status_code == 200
    assert board.client.post(f"{path}/pin").status_code == 200  # the admin
    now = board.client.get(path).json()["post"]
    assert (now["author"], now["body"], now["pinned"]) == ("ann", "edited", True)
    # Channels are managed by admins only.
    refused = board.client.post("/api/channels", json={"name": "x", "title": "X"}, headers=ann)
    assert refused.status_code == 403


def test_announcement_only_channels_take_posts_from_granted_members_and_admins(
    make_server: Callable[..., Server],
) -> None:
    server = make_server()
    changed = server.client.patch("/api/channels/announcements", json={"announcement_only": True})
    assert changed.json()["channel"]["announcement_only"] is True
    url = "/api/channels/announcements/posts"
    writer = bearer(server.token("wes"))
    refused = server.client.post(url, json={"body": "x"}, headers=writer)
    assert refused.status_code == 403 and "announcement-only" in refused.json()["error"]
    server.client.put("/api/channels/announcements/members/wes", json={"may_post": True})
    assert server.client.post(url, json={"body": "news"}, headers=writer).status_code == 201
    assert server.client.post(url, json={"body": "from the admin"}).status_code == 201
    # Still readable by anyone: announcement-only is about posting.
    listed = httpx.get(f"{server.url}{url}").json()["posts"]
    assert [p["body"] for p in listed] == ["from the admin", "news"]


def test_a_token_limited_to_channels_reads_and_posts_only_there(
    make_server: Callable[..., Server],
) -> None:
    server = make_server()
    limited = run_feed(
        "token", "create", "scoped", "--channel", "general", FEED_DATABASE_URL=server.database
    ).stdout.splitlines()[0]
    headers = bearer(limited)
    names = [
        c["name"] for c in server.client.get("/api/channels", headers=headers).json()["channels"]
    ]
    assert names == ["general"]
    assert (
        server.client.get("/api/channels/announcements/posts", headers=headers).status_code == 404
    )
    denied = server.client.post(
        "/api/channels/announcements/posts", json={"body": "x"}, headers=headers
    )
    assert denied.status_code == 404
    with stream(server, limited) as events:
        assert events.status == 200
        server.post("elsewhere", channel="announcements", author="bot")
        server.post("here", author="bot")
        assert wait_for_body(events, "here") == ["here"]


# -- private channels -------------------------------------------------------------------


def test_a_private_channel_does_not_exist_for_non_members(board: Server) -> None:
    secret = board.post("salaries", channel="board")["post"]["id"]
    ben = bearer(board.token("ben"))
    for headers in (ben, {}):
        names = [
            c["name"]
            for c in httpx.get(f"{board.url}/api/channels", headers=headers).json()["channels"]
        ]
        assert names == ["announcements", "general"]
        for method, path in (
            ("GET", "/api/channels/board/posts"),
            ("GET", f"/api/posts/{secret}"),
            ("GET", "/events?channel=board"),
            ("GET", "/channels/board"),
            ("GET", "/partials/posts?channel=board"),
            ("GET", "/kiosk?channel=board"),
        ):
            answer = httpx.request(method, f"{board.url}{path}", headers=headers)
            assert answer.status_code == 404, (path, headers, answer.text[:200])
            assert "salaries" not in answer.text
        page = httpx.get(f"{board.url}/", headers=headers).text
        assert "salaries" not in page and "#board" not in page
        presence = httpx.get(f"{board.url}/api/presence", headers=headers).json()
        assert "board" not in presence["watching"]
    unknown = httpx.get(f"{board.url}/api/channels/nope/posts", headers=ben).json()["error"]
    hidden = httpx.get(f"{board.url}/api/channels/board/posts", headers=ben).json()["error"]
    assert (unknown, hidden) == (
        "There is no channel named 'nope'.",
        "There is no channel named 'board'.",
    )
    posted = board.client.post("/api/channels/board/posts", json={"body": "x"}, headers=ben)
    assert posted.status_code == 404
    ann = bearer(board.token("ann"))
    listed = board.client.get("/api/channels/board/posts", headers=ann).json()["posts"]
    assert [p["body"] for p in listed] == ["salaries"]
    assert "salaries" in board.client.get("/channels/board", headers=ann).text


def test_streams_carry_private_events_only_to_members_live_and_in_replay(board: Server) -> None:
    ann, ben = board.token("ann"), board.token("ben")
    with (
        stream(board, ann) as member,
        stream(board, ben) as outsider,
        stream(board) as anonymous,
        stream(board, ADMIN_TOKEN) as admin,
    ):
        board.post("secret 1", channel="board")
        board.post("public 1")
        for client in (outsider, anonymous):
            assert wait_for_body(client, "public 1") == ["public 1"]
        for client in (member, admin):
            assert wait_for_body(client, "public 1") == ["secret 1", "public 1"]
    # Replay after a reconnect follows the same rule.
    with (
        stream(board, ben, last_event_id="0") as outsider,
        stream(board, ann, last_event_id="0") as member,
    ):
        board.post("public 2")
        assert wait_for_body(outsider, "public 2") == ["public 1", "public 2"]
        assert wait_for_body(member, "public 2") == ["secret 1", "public 1", "public 2"]


def test_a_membership_taken_away_stops_private_events_at_once(board: Server) -> None:
    ann = board.token("ann")
    with stream(board, ann, channel="board") as named, stream(board, ann) as everything:
        board.post("before", channel="board")
        wait_for_body(named, "before")
        wait_for_body(everything, "before")
        assert board.client.delete("/api/channels/board/members/ann").status_code == 200
        # A stream that named the channel ends, saying why; one of every channel stays
        # but stops carrying it, and is told to re-fetch what it shows.
        named.wait_closed()
        assert json.loads(told(named, "ended")[0].data)["reason"] == (
            "'ann' may no longer read a channel"
        )
        resync = wait_told(everything, "resync")
        assert resync.id is None and json.loads(resync.data)["type"] == "resync"
        board.post("after", channel="board")
        board.post("public")
        assert wait_for_body(everything, "public") == ["before", "public"]
        refused = stream(board, ann, channel="board")
        assert refused.status == 404
        # Granted again: the same.
        everything.messages.clear()
        assert board.client.put("/api/channels/board/members/ann", json={}).status_code == 200
        wait_told(everything, "resync")


def test_a_channel_made_private_stops_reaching_outsiders_from_the_next_event(
    make_server: Callable[..., Server],
) -> None:
    server = make_server(**FAST)
    ann = server.token("ann")
    assert server.client.put("/api/channels/general/members/ann", json={}).status_code == 200
    opened = server.post("open")["post"]["id"]
    with (
        stream(server) as anonymous,
        stream(server, channel="announcements") as elsewhere,
        stream(server, channel="general") as named,
        stream(server, thread=str(opened)) as thread,
        stream(server, ann) as member,
    ):
        server.client.patch("/api/channels/general", json={"private": True})
        # What it shows lost a channel's posts, which no event brings: it is told.
        assert wait_told(anonymous, "resync").id is None
        # One that named the channel, or a thread of it, may no longer read it: it ends,
        # saying why.
        for ending in (named, thread):
            ending.wait_closed()
            assert json.loads(told(ending, "ended")[0].data)["reason"] == (
                "a channel this stream follows was made private"
            )
        server.post("closed")
        server.post("elsewhere", channel="announcements")
        assert wait_for_body(anonymous, "elsewhere") == ["elsewhere"]
        # Made public again: its posts come back to the page the same way.
        anonymous.messages.clear()
        server.client.patch("/api/channels/general", json={"private": False})
        wait_told(anonymous, "resync")
        # A stream of another channel is not concerned, nor a member's, which reads the
        # channel either way: an event after both changes came, and no resync before it.
        server.post("later", channel="announcements")
        wait_for_body(elsewhere, "later")
        wait_for_body(member, "later")
        assert told(elsewhere, "resync") == [] and told(member, "resync") == []


def test_a_stream_resuming_past_a_channel_made_private_or_public_is_told_to_reload(
    make_server: Callable[..., Server],
) -> None:
    server = make_server(**FAST)
    ann = server.token("ann")
    assert server.client.put("/api/channels/general/members/ann", json={}).status_code == 200
    left = server.post("shown before it went")["event_id"]
    assert server.client.patch("/api/channels/general", json={"private": True}).status_code == 200
    server.post("elsewhere", channel="announcements")

    def resumed(token: str | None = None, **params: str) -> SSEClient:
        client = stream(server, token, last_event_id=str(left), **params)
        assert client.status == 200
        return client

    with (
        resumed() as anonymous,
        resumed(ann) as member,
        resumed(channel="announcements") as elsewhere,
    ):
        for client in (anonymous, member, elsewhere):
            assert wait_for_body(client, "elsewhere") == ["elsewhere"]
        # The page still shows what the channel's posts were: the replay leaves the
        # channel out, so it is told, with no id, before the replay.
        events = [m for m in anonymous.messages if m.event is not None]
        assert [m.event for m in events][:1] == ["resync"]
        assert events[0].id is None
        assert "changed" in json.loads(events[0].data)["reason"]
        # A member reads the channel either way; a stream of another channel is not
        # concerned.
        assert told(member, "resync") == [] and told(elsewhere, "resync") == []
    # Made public again while away: its older posts are missing from the page.
    back = server.post("meanwhile", channel="announcements")["event_id"]
    assert server.client.patch("/api/channels/general", json={"private": False}).status_code == 200
    server.post("after", channel="announcements")
    with stream(server, last_event_id=str(back)) as anonymous:
        wait_for_body(anonymous, "after")
        assert told(anonymous, "resync")[0].id is None


def test_a_resume_told_to_reload_is_told_once_though_nothing_of_its_came_since(
    make_server: Callable[..., Server],
) -> None:
    # A stream told to reload on resuming, with nothing of its own to replay, is given
    # the position its replay reached: resuming from there, it is not told again (a
    # terminal that carries on would print it at every reconnect).
    server = make_server(**FAST)
    left = server.post("shown before it went")["event_id"]
    changed = server.client.patch("/api/channels/general", json={"private": True})
    assert changed.status_code == 200
    newest = server.client.get("/api/channels/general/posts").json()
    assert newest  # the admin still reads it

    def positions(client: SSEClient) -> list[int]:
        return [int(m.id) for m in client.messages if m.id and m.event is None]

    with stream(server, last_event_id=str(left)) as anonymous:
        anonymous.wait_for(lambda s: positions(s))
        assert [m.event for m in anonymous.messages if m.event] == ["resync"]
        (reached,) = positions(anonymous)
    assert reached > left
    with stream(server, last_event_id=str(reached)) as again:
        later = server.post("later", channel="announcements")["event_id"]
        assert wait_for_body(again, "later") == ["later"]
        assert told(again, "resync") == []
        assert [int(m.id) for m in again.messages if m.event] == [later]
    # A page's stream gets no position: a page learns ids from its EventSource's last id
    # moving, which an id-only message would move unseen, and it re-fetches its list.
    server.post("members only")  # in #general, now private: newest, and not the page's
    with stream(server, last_event_id=str(left), format="html") as page:
        wait_told(page, "resync")
        marker = server.post("seen by the page", channel="announcements")["event_id"]
        page.wait_for(lambda s: any(m.id == str(marker) for m in s.messages))
        assert [int(m.id) for m in page.messages if m.id] == [later, marker]
        assert all(m.event for m in page.messages if m.id)


def test_a_stream_resuming_past_a_membership_given_or_taken_is_told_to_reload(
    board: Server,
) -> None:
    ann, bob = board.token("ann"), board.token("bob")
    shown = board.post("on the board", channel="board")["event_id"]

    def resumed(token: str, after: int) -> SSEClient:
        client = stream(board, token, last_event_id=str(after))
        assert client.status == 200
        return client

    assert board.client.delete("/api/channels/board/members/ann").status_code == 200
    assert board.client.put("/api/channels/board/members/bob", json={}).status_code == 200
    board.post("elsewhere")
    with resumed(ann, shown) as taken, resumed(bob, shown) as given:
        for client in (taken, given):
            wait_for_body(client, "elsewhere")
            events = [m for m in client.messages if m.event is not None]
            assert [m.event for m in events][:1] == ["resync"]
            assert (
                events[0].id is None and "may read changed" in json.loads(events[0].data)["reason"]
            )
    # From after the change, nothing is told; another reader's change is not theirs.
    later = board.post("later")["event_id"]
    assert board.client.put("/api/channels/board/members/cy", json={}).status_code == 200
    board.post("last")
    with resumed(bob, later) as after:
        wait_for_body(after, "last")
        assert told(after, "resync") == []


def test_the_log_tells_which_channel_changes_a_replay_cannot_show(store: Store) -> None:
    def changed(after: int, channels: list[str] | None, private: list[str] | None) -> bool:
        return asyncio.run(store.channels_changed_after(after, channels, private=private))

    asyncio.run(store.create_channel("board", "Board", "", private=True))
    start = asyncio.run(store.create_post("general", "ann", "one")).event_id or 0
    # A title changes nothing a page lists, private channel or public.
    asyncio.run(store.update_channel("board", title="The board"))
    asyncio.run(store.update_channel("general", title="General matters"))
    assert not changed(start, None, []) and not changed(start, None, ["board"])
    made = asyncio.run(store.update_channel("general", private=True)).event_id or 0
    # Private now: what it showed is gone for whoever may not read it.
    assert changed(start, None, []) and changed(start, ["general"], [])
    assert not changed(start, ["announcements"], [])
    assert not changed(start, None, ["general"]) and not changed(start, None, None)
    assert not changed(made, None, [])
    asyncio.run(store.update_channel("general", private=False))
    # Public now: whoever reads it may lack its older posts; an admin had them all.
    assert changed(made, None, ["general"]) and changed(made, None, [])
    assert not changed(made, None, None)


def test_a_new_private_channel_tells_no_open_stream_to_reload(
    make_server: Callable[..., Server],
) -> None:
    server = make_server(**FAST)
    made = run_feed("token", "create", "tmp", FEED_DATABASE_URL=server.database)
    token_id = re.search(r"token (\d+)", made.stdout)
    assert token_id is not None
    with stream(server) as anonymous, stream(server, made.stdout.splitlines()[0]) as revoked:
        created = server.client.post(
            "/api/channels", json={"name": "secret", "title": "Secret", "private": True}
        )
        assert created.status_code == 201, created.text
        # A recheck has run once the revoked token's stream ends.
        run_feed("token", "revoke", token_id.group(1), FEED_DATABASE_URL=server.database)
        revoked.wait_closed()
        server.post("after")
        wait_for_body(anonymous, "after")
        # The channel never showed anything to anyone: there is nothing to re-fetch.
        assert told(anonymous, "resync") == []


def test_revoking_a_token_ends_its_open_streams(board: Server) -> None:
    made = run_feed("token", "create", "tmp", FEED_DATABASE_URL=board.database)
    token = made.stdout.splitlines()[0]
    token_id = re.search(r"token (\d+)", made.stdout)
    assert token_id is not None
    with stream(board, token) as events:
        board.post("first")
        wait_for_body(events, "first")
        run_feed("token", "revoke", token_id.group(1), FEED_DATABASE_URL=board.database)
        events.wait_closed()
        (ended,) = told(events, "ended")
        assert json.loads(ended.data) == {"type": "ended", "reason": "token of 'tmp' revoked"}
    assert stream(board, token).status == 401


# -- kiosk links -------------------------------------------------------------------------


def test_a_kiosk_link_shows_its_private_channel_read_only_until_revoked(board: Server) -> None:
    board.post("for the lobby", channel="board")
    made = run_feed(
        "kiosk", "create", "--channel", "board", "--name", "lobby", FEED_DATABASE_URL=board.database
    )
    assert made.returncode == 0, made.stderr
    link = made.stdout.splitlines()[0]
    assert link.startswith("/kiosk?channel=board&key=")
    key = link.rsplit("key=", 1)[1]
    page = httpx.get(f"{board.url}{link}")
    assert page.status_code == 200 and "for the lobby" in page.text
    # The page's stream and partials carry the key too: a kiosk cannot sign in.
    stream_url = re.search(r'sse-connect="([^"]+)"', page.text)
    assert stream_url is not None and f"key={key}" in stream_url.group(1).replace("&amp;", "&")
    assert httpx.get(f"{board.url}/partials/kiosk?channel=board&key={key}").status_code == 200
    # Read-only, and only what it names.
    post = httpx.post(f"{board.url}/api/channels/board/posts?key={key}", json={"body": "x"})
    assert post.status_code == 403
    assert httpx.get(f"{board.url}/api/channels/general/posts?key={key}").status_code == 404
    forged = key[:-2] + ("AA" if not key.endswith("AA") else "BB")
    assert httpx.get(f"{board.url}/kiosk?channel=board&key={forged}").status_code == 401

    with SSEClient(board.port, params={"format": "html", "channel": "board", "key": key}) as live:
        assert live.status == 200
        board.post("live for the lobby", channel="board")
        live.wait_for(lambda s: any("live for the lobby" in m.data for m in s.events()))
        link_id = re.search(r"kiosk link (\d+)", made.stdout)
        assert link_id is not None
        run_feed("kiosk", "revoke", link_id.group(1), FEED_DATABASE_URL=board.database)
        live.wait_closed()
    # The stream's end came from the recheck, which also makes the link refused at once.
    assert httpx.get(f"{board.url}{link}").status_code == 401


# -- sessions, CSRF and the trusted header -------------------------------------------------


def sign_in(server: Server, token: str, **headers: str) -> httpx.Client:
    browser = httpx.Client(base_url=server.url, headers=headers)
    answer = browser.post("/signin", data={"token": token, "next": "/channels/general"})
    assert answer.status_code == 303 and answer.headers["location"] == "/channels/general"
    return browser


def csrf_of(page: str) -> str:
    found = re.search(r'hx-headers=\'\{"X-CSRF-Token": "([^"]+)"\}\'', page)
    assert found is not None, "the page carries no CSRF token"
    return found.group(1)


def test_signing_in_with_a_token_gives_a_session_that_needs_csrf_for_writes(
    board: Server,
) -> None:
    browser = sign_in(board, board.token("ann"))
    cookie = browser.cookies.jar
    (session,) = [c for c in cookie if c.name == "feed_session"]
    assert session.has_nonstandard_attr("HttpOnly")
    assert session.get_nonstandard_attr("SameSite") == "lax" and not session.secure
    page = browser.get("/").text
    assert "Posting as <strong>ann</strong>" in page and "#board" in page
    token = csrf_of(page)
    refused = browser.post("/compose", data={"channel": "general", "body": "forged"})
    assert refused.status_code == 403 and "CSRF" in refused.json()["error"]
    wrong = browser.post(
        "/compose", data={"channel": "general", "body": "x"}, headers={"X-CSRF-Token": "x" * 32}
    )
    assert wrong.status_code == 403
    api = browser.post(
        "/api/channels/general/posts", json={"body": "no token"}, headers={"X-CSRF-Token": ""}
    )
    assert api.status_code == 403
    done = browser.post(
        "/compose", data={"channel": "general", "body": "real"}, headers={"X-CSRF-Token": token}
    )
    assert done.status_code == 200
    posts = board.client.get("/api/channels/general/posts").json()["posts"]
    assert [(p["author"], p["body"]) for p in posts] == [("ann", "real")]
    # Signing out needs the token too, and ends the session.
    assert browser.post("/signout").status_code == 403
    out = browser.post("/signout", data={"csrf_token": token})
    assert out.status_code == 303
    assert "Sign in" in browser.get("/").text


def test_a_csrf_token_that_is_not_ascii_is_refused_as_a_wrong_one(board: Server) -> None:
    """The page's token is ASCII; one that is not is a wrong token (403), whether it
    comes in the header or the form, not a failure of the server (it was a 500)."""
    browser = sign_in(board, board.token("ann"))
    header = browser.post(
        "/compose",
        data={"channel": "general", "body": "x"},
        headers={"X-CSRF-Token": "\u00e9t\u00e9".encode()},  # the bytes as sent
    )
    assert header.status_code == 403 and "CSRF" in header.json()["error"]
    form = browser.post("/signout", data={"csrf_token": "\u00e9t\u00e9"})
    assert form.status_code == 403 and "CSRF" in form.json()["error"]
    assert "Posting as <strong>ann</strong>" in browser.get("/").text  # still signed in


def test_signing_out_ends_the_session_everywhere_not_only_in_this_browser(
    board: Server,
) -> None:
    browser = sign_in(board, board.token("ann"))
    other = sign_in(board, board.token("ann"))  # the same person, another sign-in
    (cookie,) = [c.value for c in browser.cookies.jar if c.name == "feed_session"]
    copied = httpx.Client(base_url=board.url, cookies={"feed_session": cookie or ""})
    assert "Posting as <strong>ann</strong>" in copied.get("/").text
    # A private channel's stream, open with the session: it must end with it.
    as_cookie = {"Cookie": f"feed_session={cookie}"}
    with SSEClient(
        board.port, params={"format": "json", "channel": "board"}, headers=as_cookie
    ) as live:
        assert live.status == 200
        board.post("while signed in", channel="board")
        wait_for_body(live, "while signed in")
        token = csrf_of(browser.get("/").text)
        assert browser.post("/signout", data={"csrf_token": token}).status_code == 303
        live.wait_closed()
        assert json.loads(told(live, "ended")[0].data)["reason"] == "'ann' signed out"
    # The copy of the cookie is refused from now on: it is nobody, and may not read #board.
    page = copied.get("/").text
    assert "Posting as" not in page and "Sign in" in page
    assert copied.get("/channels/board").status_code == 404
    refused = copied.post(
        "/compose", data={"channel": "general", "body": "x"}, headers={"X-CSRF-Token": token}
    )
    assert refused.status_code == 401
    # Only that session ended: the other sign-in goes on.
    assert "Posting as <strong>ann</strong>" in other.get("/").text


def test_a_bad_token_does_not_sign_in_and_next_stays_on_this_site(board: Server) -> None:
    browser = httpx.Client(base_url=board.url)
    bad = browser.post("/signin", data={"token": "feed_wrong", "next": "/"})
    assert bad.status_code == 401 and "The token is not valid" in bad.text
    assert "feed_session" not in browser.cookies
    away = browser.post("/signin", data={"token": ADMIN_TOKEN, "next": "//evil.example/x"})
    assert away.headers["location"] == "/"


def test_a_session_behind_tls_is_secure_and_ends_with_its_token(board: Server) -> None:
    made = run_feed("token", "create", "tina", FEED_DATABASE_URL=board.database)
    token = made.stdout.splitlines()[0]
    browser = sign_in(board, token, **{"X-Forwarded-Proto": "https"})
    (session,) = [c for c in browser.cookies.jar if c.name == "feed_session"]
    assert session.secure
    browser.cookies.jar.clear()
    browser.cookies.set("feed_session", session.value or "")
    assert "Posting as <strong>tina</strong>" in browser.get("/").text
    token_id = re.search(r"token (\d+)", made.stdout)
    assert token_id is not None
    run_feed("token", "revoke", token_id.group(1), FEED_DATABASE_URL=board.database)
    eventually(lambda: browser.get("/").text, lambda page: "Posting as" not in page)


def test_the_trusted_header_signs_people_in_only_when_configured(
    make_server: Callable[..., Server],
) -> None:
    plain = make_server()
    ignored = httpx.get(f"{plain.url}/", headers={"X-Remote-User": "mallory"})
    assert "mallory" not in ignored.text and "Sign in" in ignored.text
    server = make_server(trusted_user_header="X-Remote-User", trusted_admins="boss")
    page = httpx.get(f"{server.url}/", headers={"X-Remote-User": "eve"})
    assert "Posting as <strong>eve</strong>" in page.text
    assert "feed_session" in page.cookies
    # Writers by default; the configured names are admins.
    assert httpx.get(f"{server.url}/admin", headers={"X-Remote-User": "eve"}).status_code == 403
    boss = httpx.get(f"{server.url}/admin", headers={"X-Remote-User": "boss"})
    assert boss.status_code == 200
    # The header alone is ambient, like a cookie: writes need the page's CSRF token.
    forged = httpx.post(
        f"{server.url}/api/channels/general/posts",
        json={"body": "x"},
        headers={"X-Remote-User": "eve"},
    )
    assert forged.status_code == 403


def _signed_in_by_header(server: Server, name: str) -> tuple[httpx.Client, str, str]:
    """A browser behind the proxy as ``name``: its client, session cookie and CSRF token."""
    browser = httpx.Client(base_url=server.url, headers={"X-Remote-User": name})
    page = browser.get("/").text
    assert f"Posting as <strong>{name}</strong>" in page
    return browser, browser.cookies["feed_session"], csrf_of(page)


def test_a_page_seen_with_another_persons_header_gets_a_session_for_that_person(
    make_server: Callable[..., Server],
) -> None:
    server = make_server(trusted_user_header="X-Remote-User")
    alice, alices_cookie, alices_csrf = _signed_in_by_header(server, "alice")
    # Someone else signs in at the proxy; the browser still holds alice's session.
    bob = httpx.Client(
        base_url=server.url,
        headers={"X-Remote-User": "bob"},
        cookies={"feed_session": alices_cookie},
    )
    page = bob.get("/")
    assert "Posting as <strong>bob</strong>" in page.text and "alice" not in page.text
    assert page.cookies["feed_session"] != alices_cookie
    bobs_csrf = csrf_of(page.text)
    assert bobs_csrf != alices_csrf
    done = bob.post(
        "/compose",
        data={"channel": "general", "body": "as bob"},
        headers={"X-CSRF-Token": bobs_csrf},
    )
    assert done.status_code == 200, done.text
    posts = server.client.get("/api/channels/general/posts").json()["posts"]
    assert [(p["author"], p["body"]) for p in posts] == [("bob", "as bob")]
    # The same person at the proxy keeps the session their page was given.
    again = alice.get("/")
    assert csrf_of(again.text) == alices_csrf and "feed_session" not in again.cookies


def test_an_old_session_and_its_csrf_token_act_as_nobody_under_another_persons_header(
    make_server: Callable[..., Server],
) -> None:
    server = make_server(trusted_user_header="X-Remote-User")
    _alice, alices_cookie, alices_csrf = _signed_in_by_header(server, "alice")
    still_alice = httpx.Client(
        base_url=server.url,
        headers={"X-Remote-User": "bob", "X-CSRF-Token": alices_csrf},
        cookies={"feed_session": alices_cookie},
    )
    form = still_alice.post("/compose", data={"channel": "general", "body": "as alice?"})
    api = still_alice.post("/api/channels/general/posts", json={"body": "as alice, again?"})
    assert (form.status_code, api.status_code) == (403, 403), (form.text, api.text)
    assert "CSRF" in form.json()["error"] and "CSRF" in api.json()["error"]
    assert server.client.get("/api/channels/general/posts").json()["posts"] == []


def test_a_closed_feed_needs_a_credential_for_everything(
    make_server: Callable[..., Server],
) -> None:
    server = make_server(anonymous_read="false")
    for path in ("/api/channels", "/events", "/api/presence", "/partials/posts"):
        answer = httpx.get(f"{server.url}{path}")
        assert answer.status_code == 401, path
    page = httpx.get(f"{server.url}/channels/general")
    assert page.status_code == 303
    assert page.headers["location"] == "/signin?next=%2Fchannels%2Fgeneral"
    assert httpx.get(f"{server.url}/signin").status_code == 200
    assert httpx.get(f"{server.url}/api/channels", headers=ADMIN).status_code == 200
    assert httpx.get(f"{server.url}/healthz").status_code == 200


def test_admin_pages_need_an_admin(board: Server) -> None:
    anonymous = httpx.get(f"{board.url}/admin")
    assert anonymous.status_code == 303 and anonymous.headers["location"] == "/signin?next=%2Fadmin"
    writer = httpx.get(f"{board.url}/admin", headers=bearer(board.token("ann")))
    assert writer.status_code == 403
    # A form is told it was signed out (401), rather than sent to sign in (admin.py, 8).
    assert httpx.post(f"{board.url}/admin/channels", data={"name": "x"}).status_code == 401
    assert httpx.get(f"{board.url}/admin", headers=ADMIN).status_code == 200


def test_metrics_count_private_streams_without_naming_their_channel(board: Server) -> None:
    with stream(board, board.token("ann"), channel="board") as events:
        assert events.status == 200
        text = until(
            lambda: httpx.get(f"{board.url}/metrics").text,
            lambda text: 'feed_subscribers{channel="(private)",format="json"} 1.0' in text,
            timeout=10,
        )
        assert "board" not in text


def test_presence_names_a_private_channel_only_to_those_who_may_read_it(
    make_server: Callable[..., Server],
) -> None:
    server = make_server(presence_interval=0.2, **FAST)
    server.client.post("/api/channels", json={"name": "board", "title": "B", "private": True})
    server.client.put("/api/channels/board/members/ann", json={})
    html = {"format": "html"}
    with (
        SSEClient(server.port, params=html) as anonymous,
        SSEClient(server.port, params=html, headers=bearer(server.token("ann"))) as member,
        stream(server, server.token("ann"), channel="board"),
    ):

        def counted(client: SSEClient) -> dict[str, object] | None:
            found = [json.loads(m.data) for m in client.events() if m.event == "presence"]
            return next((p for p in reversed(found) if p["streams"] == 3), None)

        anonymous.wait_for(lambda s: counted(s) is not None)
        member.wait_for(lambda s: counted(s) is not None)
        assert counted(anonymous) == {"streams": 3, "everything": 2, "channels": {}}
        assert counted(member) == {"streams": 3, "everything": 2, "channels": {"board": 1}}


def test_a_session_from_the_header_follows_the_settings_of_the_day(
    tmp_path: Path, make_server: Callable[..., Server]
) -> None:
    database = tmp_path / "feed.db"
    trusting = make_server(
        database=database, trusted_user_header="X-Remote-User", trusted_admins="boss"
    )
    browser = httpx.Client(base_url=trusting.url)
    assert browser.get("/signin", headers={"X-Remote-User": "boss"}).status_code == 303
    assert browser.get("/admin").status_code == 200
    trusting.stop()
    # The same cookie, once boss is no longer listed as an admin...
    demoted = make_server(database=database, trusted_user_header="X-Remote-User")
    browser = httpx.Client(base_url=demoted.url, cookies=browser.cookies)
    assert browser.get("/admin").status_code == 403
    demoted.stop()
    # ...and once the header is no longer trusted at all.
    plain = make_server(database=database)
    browser = httpx.Client(base_url=plain.url, cookies=browser.cookies)
    assert browser.get("/admin").status_code == 303


def test_a_sign_in_posted_from_another_site_is_refused(board: Server) -> None:
    browser = httpx.Client(base_url=board.url)
    form = {"token": ADMIN_TOKEN, "next": "/"}
    elsewhere = browser.post("/signin", data=form, headers={"Origin": "https://evil.example"})
    assert elsewhere.status_code == 403 and "feed_session" not in browser.cookies
    here = browser.post("/signin", data=form, headers={"Origin": board.url})
    assert here.status_code == 303 and "feed_session" in browser.cookies


def test_a_channel_made_private_is_hidden_from_anonymous_readers_once_acknowledged(
    make_server: Callable[..., Server], postgres: Postgres
) -> None:
    """Once ``PATCH /api/channels/NAME {"private": true}`` has answered, no anonymous
    request to the same process sees the channel or its posts, while other anonymous
    requests read the channel list meanwhile: a list read just before the change, and
    finished after, must not put the old channel map back (access.py, on privacy
    learnt from the log)."""
    server = make_server(postgres.new_database())
    assert server.client.post("/api/channels", json={"name": "hr", "title": "HR"}).is_success
    server.post("SALARY-LIST", channel="hr")
    stop = time.monotonic() + 6

    def others_reading() -> None:
        with httpx.Client(base_url=server.url, timeout=10) as reader:
            while time.monotonic() < stop:
                reader.get("/api/channels")

    readers = [threading.Thread(target=others_reading) for _ in range(6)]
    for reader in readers:
        reader.start()
    trials, leaks = 0, []
    try:
        with httpx.Client(base_url=server.url, timeout=10) as anonymous:
            while time.monotonic() < stop - 1:
                made = server.client.patch("/api/channels/hr", json={"private": True})
                assert made.status_code == 200
                trials += 1
                for _ in range(5):
                    if "SALARY-LIST" in anonymous.get("/").text:
                        leaks.append(f"trial {trials}: / showed the post")
                    if '"hr"' in anonymous.get("/api/channels").text:
                        leaks.append(f"trial {trials}: /api/channels named the channel")
                server.client.patch("/api/channels/hr", json={"private": False})
    finally:
        for reader in readers:
            reader.join()
    assert trials >= 3 and leaks == [], f"{len(leaks)} leaks in {trials} trials: {leaks[:4]}"


def test_a_fresh_read_of_the_channel_list_holds_up_no_permission_check(tmp_path: Path) -> None:
    """``GET /api/channels`` reads the list afresh; while it does, other requests' checks
    use the recent list, instead of queueing behind the read."""

    class Gated(Store):
        gate: asyncio.Event | None = None
        entered = asyncio.Event()

        async def list_channels(self, *, archived: bool = True) -> list[ChannelView]:
            if self.gate is not None:
                self.entered.set()
                await self.gate.wait()
            return await super().list_channels(archived=archived)

    async def main() -> None:
        store = Gated.from_url(f"sqlite:///{tmp_path / 'feed.db'}")
        try:
            await store.create_schema()
            gate = Access(Settings(database_url="sqlite://"), store)
            await gate.start()
            store.gate = asyncio.Event()
            reading = asyncio.ensure_future(gate.channels(fresh=True))
            async with asyncio.timeout(5):
                await store.entered.wait()
                assert set(await gate.channels()) == {"announcements", "general"}
                perms = await gate.permissions(ANONYMOUS)
            assert perms.may_read("general") and not reading.done()
            store.gate.set()
            assert set(await reading) == {"announcements", "general"}
        finally:
            store.close()

    asyncio.run(main())


# -- recent answers on a post's path (access.py, on recent answers) ------------------------


def test_a_token_revoked_here_is_refused_on_the_very_next_post(settings: Settings) -> None:
    """The token was just read and kept; its revocation's announcement drops it, so
    the next post is refused without waiting for the recent answer to age."""
    token, token_id = make_token(settings.database_url, "ada")
    url = "/api/channels/general/posts"
    with TestClient(create_app(settings)) as client:
        store = runtime_of(client.app_state).store
        assert client.post(url, json={"body": "one"}, headers=bearer(token)).status_code == 201
        assert client.portal is not None
        client.portal.call(store.revoke_token, token_id)
        again = client.post(url, json={"body": "two"}, headers=bearer(token))
    assert again.status_code == 401
    assert again.json()["error"] == "The token has been revoked; ask an admin for a new one."


def test_a_grant_taken_away_here_is_seen_on_the_very_next_post(settings: Settings) -> None:
    """The memberships were just read and kept; the change's announcement drops them."""
    ensure_admin(settings.database_url)
    token, _ = make_token(settings.database_url, "wes")
    url = "/api/channels/announcements/posts"
    members = "/api/channels/announcements/members/wes"
    with TestClient(create_app(settings), headers=ADMIN) as client:
        changed = client.patch("/api/channels/announcements", json={"announcement_only": True})
        assert changed.status_code == 200
        assert client.put(members, json={"may_post": True}).status_code == 200
        assert client.post(url, json={"body": "a"}, headers=bearer(token)).status_code == 201
        assert client.delete(members).status_code == 200
        refused = client.post(url, json={"body": "b"}, headers=bearer(token))
        assert refused.status_code == 403 and "announcement-only" in refused.json()["error"]
        assert client.put(members, json={"may_post": True}).status_code == 200
        assert client.post(url, json={"body": "c"}, headers=bearer(token)).status_code == 201
