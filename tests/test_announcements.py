"""Every committed change reaches the other processes by its announcement, whichever
surface made it.

Two servers share one PostgreSQL database, and its LISTEN/NOTIFY broker (or Redis, for
changes of access). Both poll the log only once a minute and recheck open streams'
access only once a minute, so a change that shows on the second process within
``WITHIN`` seconds was announced to it: neither the poll nor the recheck could stand in
for the announcement.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from feed.access import SESSION_COOKIE
from tests.auth import ADMIN, ADMIN_TOKEN, bearer
from tests.conftest import Server
from tests.services import Postgres
from tests.sse import SSEClient, subscribed
from tests.test_access import csrf_of
from tests.test_cli import run_feed

WITHIN = 2.0
SLOW = 60


def two_servers(
    make_server: Callable[..., Server], url: str, broker_url: str
) -> tuple[Server, Server]:
    """Two servers on one database: changes are made through the first, watched on
    the second."""
    both: dict[str, Any] = {
        "broker_url": broker_url,
        "poll_interval": SLOW,
        "access_recheck": SLOW,
        "heartbeat": 0.5,
    }
    return make_server(url, **both), make_server(url, **both)


@pytest.fixture
def pair(make_server: Callable[..., Server], postgres: Postgres) -> tuple[Server, Server]:
    url = postgres.new_database()
    return two_servers(make_server, url, url)


@pytest.fixture(params=["postgresql", "redis"])
def each_pair(
    request: pytest.FixtureRequest, make_server: Callable[..., Server], postgres: Postgres
) -> tuple[Server, Server]:
    """``pair``, with each broker that reaches other processes."""
    url = postgres.new_database()
    broker: str = url if request.param == "postgresql" else request.getfixturevalue("valkey").url
    return two_servers(make_server, url, broker)


def payloads(stream: SSEClient) -> list[dict[str, Any]]:
    return [json.loads(m.data) for m in stream.events() if m.event is not None]


def open_stream(server: Server, headers: dict[str, str], **params: str) -> SSEClient:
    return subscribed(server.port, {"format": "json", **params}, headers)


def arrives(stream: SSEClient, what: str, found: Callable[[dict[str, Any]], bool]) -> None:
    """Wait until ``stream`` has received an event ``found`` accepts, within WITHIN
    seconds of now: the change was acknowledged just before."""
    try:
        stream.wait_for(lambda s: any(found(p) for p in payloads(s)), timeout=WITHIN)
    except TimeoutError:
        raise AssertionError(f"{what} did not reach the other process within {WITHIN} s") from None


def ends(stream: SSEClient, what: str) -> None:
    try:
        stream.wait_closed(timeout=WITHIN)
    except TimeoutError:
        raise AssertionError(f"{what} did not end its stream on the other process") from None


def event(event_id: int) -> Callable[[dict[str, Any]], bool]:
    return lambda p: p["id"] == event_id


def post_body(body: str, kind: str = "post-created") -> Callable[[dict[str, Any]], bool]:
    return lambda p: p["type"] == kind and p["post"]["body"] == body


def channel_change(name: str, kind: str) -> Callable[[dict[str, Any]], bool]:
    return lambda p: p["type"] == kind and p.get("channel", {}).get("name") == name


def feed(server: Server, command: str, *args: str) -> str:
    """``feed`` against the running server, as its admin."""
    done = run_feed(command, "--url", server.url, "--token", ADMIN_TOKEN, *args)
    assert done.returncode == 0, done.stderr
    return done.stdout


def feed_database(server: Server, *args: str) -> str:
    """``feed token``/``feed kiosk``, straight on the database both servers use, with
    their broker."""
    broker = server.env["FEED_BROKER_URL"]
    done = run_feed(*args, FEED_DATABASE_URL=server.database, FEED_BROKER_URL=broker)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_every_change_through_every_surface_reaches_a_stream_of_another_process(
    pair: tuple[Server, Server],
) -> None:
    a, b = pair
    with open_stream(b, ADMIN) as watched:
        api = a.client
        # The API: posts, with and without an idempotency key, and what is done to them.
        made = a.post("by the api")
        arrives(watched, "a post made through the API", event(made["event_id"]))
        keyed = api.post(
            "/api/channels/general/posts", json={"body": "keyed"}, headers={"Idempotency-Key": "k"}
        )
        assert keyed.status_code == 201, keyed.text
        arrives(watched, "a post made with an Idempotency-Key", event(keyed.json()["event_id"]))
        post = f"/api/posts/{made['post']['id']}"
        for what, answer in (
            ("an edit", api.patch(post, json={"body": "edited"})),
            ("a pin", api.post(f"{post}/pin")),
            ("an unpin", api.post(f"{post}/unpin")),
            ("a delete", api.delete(post)),
        ):
            assert answer.status_code == 200, answer.text
            arrives(watched, f"{what} through the API", event(answer.json()["event_id"]))
        # The API: channels.
        for what, answer in (
            ("a channel made", api.post("/api/channels", json={"name": "ops", "title": "Ops"})),
            (
                "a channel made with a key",
                api.post(
                    "/api/channels",
                    json={"name": "dev", "title": "Dev"},
                    headers={"Idempotency-Key": "c"},
                ),
            ),
            ("a channel changed", api.patch("/api/channels/ops", json={"title": "Operations"})),
            ("a channel archived", api.post("/api/channels/ops/archive")),
            ("a channel restored", api.post("/api/channels/ops/restore")),
        ):
            assert answer.status_code in (200, 201), answer.text
            arrives(watched, f"{what} through the API", event(answer.json()["event_id"]))

        # The compose form.
        composed = api.post("/compose", data={"channel": "general", "body": "by the form"})
        assert composed.status_code == 200, composed.text
        arrives(watched, "a post made with the compose form", post_body("by the form"))

        # The admin page's forms.
        for what, path, form, kind in (
            ("made", "/admin/channels", {"name": "lab", "title": "Lab"}, "channel-created"),
            ("retitled", "/admin/channels/lab/title", {"title": "Labs"}, "channel-updated"),
            ("archived", "/admin/channels/lab/archive", {}, "channel-archived"),
            ("restored", "/admin/channels/lab/restore", {}, "channel-restored"),
        ):
            answer = api.post(path, data=form)
            assert answer.status_code == 200, answer.text
            arrives(watched, f"a channel {what} with the admin page", channel_change("lab", kind))

        # The command line, against the server.
        feed(a, "post", "general", "by the cli")
        arrives(watched, "a post made with `feed post`", post_body("by the cli"))
        for verb, args, kind in (
            ("create", ("cli", "CLI"), "channel-created"),
            ("rename", ("cli", "Command line"), "channel-updated"),
            ("archive", ("cli",), "channel-archived"),
            ("restore", ("cli",), "channel-restored"),
        ):
            feed(a, "channels", verb, *args)
            arrives(watched, f"`feed channels {verb}`", channel_change("cli", kind))


@pytest.fixture
def board(each_pair: tuple[Server, Server]) -> Iterator[tuple[Server, Server]]:
    """Two servers, with a private channel #board nobody is a member of yet."""
    a, _ = each_pair
    made = a.client.post("/api/channels", json={"name": "board", "title": "B", "private": True})
    assert made.status_code == 201, made.text
    yield each_pair


def bodies(stream: SSEClient) -> list[str]:
    return [p["post"]["body"] for p in payloads(stream) if p["type"] == "post-created"]


def test_a_membership_granted_or_taken_away_on_one_process_applies_at_once_on_another(
    board: tuple[Server, Server],
) -> None:
    a, b = board
    mia, cli_grant = bearer(a.token("mia")), ("channels", "grant", "board", "mia")
    for how, grant, ungrant in (
        (
            "the API",
            lambda: a.client.put("/api/channels/board/members/mia", json={}),
            lambda: a.client.delete("/api/channels/board/members/mia"),
        ),
        (
            "the command line",
            lambda: feed(a, *cli_grant),
            lambda: feed(a, "channels", "ungrant", "board", "mia"),
        ),
    ):
        with open_stream(b, mia) as everything:
            grant()
            granted = f"for members, granted by {how}"
            a.post(granted, channel="board")
            arrives(everything, f"a grant through {how}", post_body(granted))
            ungrant()
            a.post(f"members only, after {how} took it away", channel="board")
            a.post(f"for everyone, after {how}")
            arrives(everything, "a marker", post_body(f"for everyone, after {how}"))
            assert f"members only, after {how} took it away" not in bodies(everything)


def test_revocations_and_sign_outs_on_one_process_end_streams_on_another(
    each_pair: tuple[Server, Server],
) -> None:
    a, b = each_pair
    # A token and a kiosk link made by the command line, each with a stream on B.
    token = feed_database(a, "token", "create", "temp").splitlines()
    token_id = re.search(r"token (\d+)", token[1])
    link = feed_database(a, "kiosk", "create", "--channel", "general").splitlines()
    link_id = re.search(r"kiosk link (\d+)", link[1])
    assert token_id is not None and link_id is not None
    key = link[0].rsplit("key=", 1)[1]
    # A session begun on A, with a stream on B.
    browser = httpx.Client(base_url=a.url)
    signed_in = browser.post("/signin", data={"token": a.token("sam"), "next": "/"})
    assert signed_in.status_code == 303, signed_in.text
    cookie = {"Cookie": f"{SESSION_COOKIE}={browser.cookies[SESSION_COOKIE]}"}
    with (
        open_stream(b, bearer(token[0])) as by_token,
        open_stream(b, {}, channel="general", key=key) as kiosk,
        open_stream(b, cookie) as by_session,
    ):
        posted = a.post("everyone sees this")
        for stream in (by_token, kiosk, by_session):
            arrives(stream, "a post", event(posted["event_id"]))
        feed_database(a, "token", "revoke", token_id.group(1))
        ends(by_token, "`feed token revoke`")
        feed_database(a, "kiosk", "revoke", link_id.group(1))
        ends(kiosk, "`feed kiosk revoke`")
        csrf = csrf_of(browser.get("/").text)
        assert browser.post("/signout", data={"csrf_token": csrf}).status_code == 303
        ends(by_session, "signing out")
    browser.close()
    assert httpx.get(f"{b.url}/api/channels", headers=bearer(token[0])).status_code == 401
