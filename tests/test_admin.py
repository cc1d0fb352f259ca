"""The admin page: its forms in-process, its stream against a real server, and the
whole page live in Chromium."""

from __future__ import annotations

import re
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import anyio
import pytest
from playwright.sync_api import Browser, BrowserContext, expect
from starlette.requests import Request
from starlette.testclient import TestClient

from feed import security
from feed.admin import SIGNED_OUT, TICK
from feed.admin import admin_stream as admin_stream_endpoint
from feed.app import create_app
from feed.panels import RECENT_ROWS, AdminFeed, age_text, size_text
from feed.runtime import runtime_of
from feed.security import Security
from feed.settings import Settings
from tests.auth import ADMIN, ADMIN_TOKEN, bearer
from tests.browser import (
    LAPTOP,
    Problems,
    assert_not_reloaded,
    browser,
    context,
    open_live,
    problems,
    seed_sample_feed,
    sign_in,
)
from tests.conftest import Server
from tests.sse import Message, SSEClient
from tests.test_cli import run_feed
from tests.waiting import until

__all__ = ["browser", "context", "problems"]  # fixtures, shared with test_browser

ADMIN_MS = 3_000  # the admin stream looks every second: a change shows within two looks
ROW = re.compile(r'<li id="admin-event-(\d+)" class="admin-event"')
DROPPED = re.compile(r'<li id="admin-event-(\d+)" hx-swap-oob="delete">')


def channel_row(html: str, name: str) -> str:
    """The channels table's row for ``name``."""
    match = re.search(rf'<tr id="channel-{name}".*?</tr>', html, re.S)
    assert match is not None, f"no row for #{name}"
    return match.group(0)


def row_ids(html: str) -> list[int]:
    return [int(x) for x in ROW.findall(html)]


def channels(client: TestClient) -> dict[str, dict[str, object]]:
    return {c["name"]: c for c in client.get("/api/channels").json()["channels"]}


# -- units -------------------------------------------------------------------------


def test_ages_and_sizes_are_coarse_so_panels_change_rarely() -> None:
    assert [age_text(s) for s in (0, 59.9, 60, 3599, 3600, 90061)] == [
        "under a minute",
        "under a minute",
        "1 min",
        "59 min",
        "1 h 0 min",
        "1 d 1 h",
    ]
    assert [size_text(n) for n in (0, 1023, 1536, 3 * 1024 * 1024)] == [
        "0 B",
        "1023 B",
        "1.5 KiB",
        "3.0 MiB",
    ]


# -- the page and its forms, in-process ---------------------------------------------


def test_admin_page_shows_every_panel_newest_events_first_and_is_not_indexed(
    client: TestClient,
) -> None:
    ids = [
        client.post("/api/channels/general/posts", json={"body": f"post <{n}>"}).json()["event_id"]
        for n in range(3)
    ]
    page = client.get("/admin")
    assert page.status_code == 200
    assert page.headers["x-robots-tag"] == "noindex"
    html = page.text
    assert '<meta name="robots" content="noindex">' in html
    assert 'hx-ext="sse" sse-connect="/admin/stream"' in html
    assert list(re.findall(r'<tr id="channel-([a-z]+)"', html)) == ["announcements", "general"]
    assert row_ids(html) == list(reversed(ids))
    assert "#general tester: post &lt;2&gt;" in html and "<2>" not in html
    assert 'data-figure="subscribers">0<' in html and "No open streams." in html
    assert 'data-figure="broker">memory<' in html and 'data-figure="database">sqlite<' in html
    assert f'data-figure="delivered">{ids[-1]}<' in html
    # A CSP without inline script is coming: scripts are files, and no on* handlers.
    # The page's glue in its order: feed-page.js first, feed-stream.js before the sse
    # extension (base.html).
    glue = ("page", "times", "focus", "announcer", "reactions", "lists", "refetch", "threads")
    scripts = (
        "htmx-2.0.11.min.js",
        "feed-source.js",
        "feed-tabs.js",
        *(f"feed-{part}.js" for part in glue),
        "feed-stream.js",
        "htmx-ext-sse-2.2.4.min.js",
    )
    assert re.findall(r"<script[^>]*>", html) == [
        f'<script src="/static/{name}">' for name in ("feed-admin.js", *scripts, "feed-tooltips.js")
    ]
    assert not re.search(r"\son[a-z]+=", html)


def test_create_channel_form_adds_it_and_answers_with_the_panel(client: TestClient) -> None:
    answer = client.post(
        "/admin/channels",
        data={"name": " releases ", "title": "  Releases ", "description": " What shipped "},
    )
    assert answer.status_code == 200
    assert answer.text.startswith('<section id="admin-channels"')
    row = channel_row(answer.text, "releases")
    assert 'value="Releases"' in row and "What shipped</td>" in row and "active" in row
    assert 'class="error"' not in answer.text
    # The form comes back empty, ready for the next one, and the page's status line says
    # what it did.
    assert 'name="name" value=""' in answer.text
    assert '<p id="admin-said" hx-swap-oob="innerHTML">Created #releases.</p>' in answer.text
    assert channels(client)["releases"] == {
        "name": "releases",
        "title": "Releases",
        "description": "What shipped",
        "archived": False,
        "private": False,
        "announcement_only": False,
        "replies": True,
    }
    assert "#releases was created: Releases" in client.get("/admin").text


@pytest.mark.parametrize(
    ("fields", "status", "message", "invalid"),
    [
        (
            {"name": "Big News", "title": "Big news"},
            422,
            "A channel name is 1 to 64 lower-case letters, digits, &#39;-&#39; or &#39;_&#39;",
            "name",
        ),
        (
            {"name": "x" * 65, "title": "Long"},
            422,
            "The field &#39;name&#39; is longer than 64",
            "name",
        ),
        (
            {"name": "", "title": "Nameless"},
            422,
            "The field &#39;name&#39; must not be empty.",
            "name",
        ),
        ({"name": "news", "title": "   "}, 422, "The title must not be empty.", "title"),
        ({"name": "news", "title": "t" * 201}, 422, "is longer than 200 characters.", "title"),
        (
            {"name": "news", "title": "News", "description": "d" * 2001},
            422,
            "The description is longer than 2000 characters.",
            "description",
        ),
        (
            {"name": "general", "title": "Again"},
            409,
            "A channel named &#39;general&#39; already exists.",
            "name",
        ),
    ],
)
def test_create_channel_form_shows_each_error_inline_and_keeps_the_input(
    client: TestClient, fields: dict[str, str], status: int, message: str, invalid: str
) -> None:
    answer = client.post("/admin/channels", data=fields)
    assert answer.status_code == status
    form = answer.text.split('<div id="admin-channel-table"')[0]
    error = re.search(r'<p class="error" id="admin-create-error" role="alert">(.*?)</p>', form)
    assert error is not None and message in error.group(1)
    if len(fields["title"]) < 100:
        assert f'name="title" value="{fields["title"]}"' in form
    # The field the error is about says so, and takes the focus (admin.py, rationale 7).
    marked = re.findall(r'<input name="(\w+)"[^>]* aria-invalid="true"', form)
    assert marked == [invalid]
    assert 'aria-describedby="admin-create-error" autofocus' in form
    assert set(channels(client)) == {"general", "announcements"}
    assert channels(client)["general"]["title"] == "General"


def test_create_channel_form_refuses_a_body_over_the_limit(client: TestClient) -> None:
    answer = client.post("/admin/channels", data={"name": "big", "title": "x" * 70_000})
    assert answer.status_code == 413
    assert "The request body is larger than 65536 bytes." in answer.text
    assert "big" not in channels(client)


def test_rename_changes_the_title_and_keeps_the_name(client: TestClient) -> None:
    answer = client.post("/admin/channels/general/title", data={"title": " Everything "})
    assert answer.status_code == 200
    row = channel_row(answer.text, "general")
    assert 'value="Everything"' in row and 'href="/channels/general"' in row
    assert ">#general is now titled “Everything”.</p>" in answer.text
    assert channels(client)["general"]["title"] == "Everything"
    assert "#general is now titled: Everything" in client.get("/admin").text


def test_rename_errors_show_in_the_channels_row(client: TestClient) -> None:
    answer = client.post("/admin/channels/general/title", data={"title": "  "})
    assert answer.status_code == 422
    row = channel_row(answer.text, "general")
    assert "The title must not be empty." in row
    assert 'aria-describedby="channel-general-error" autofocus' in row
    assert 'name="title" value="  "' in row  # what was typed stays, to be fixed
    assert 'class="error"' not in channel_row(answer.text, "announcements")
    assert channels(client)["general"]["title"] == "General"

    missing = client.post("/admin/channels/nope/title", data={"title": "Nope"})
    assert missing.status_code == 404
    assert_gone(missing.text, "nope")


def assert_gone(panel: str, name: str) -> None:
    """The panel says, above the create form, that the channel is gone, and the focus goes
    to that: there is no row left to say it in (admin.py, rationale 7)."""
    said = (
        '<p class="error" id="admin-channels-error" role="alert" tabindex="-1" autofocus>'
        f"There is no channel named &#39;{name}&#39;.</p>"
    )
    assert said in panel.split('<form id="admin-create"')[0]
    assert panel.count("autofocus") == 1 and 'class="error"' not in panel.split(said)[1]
    assert '<p id="admin-said" hx-swap-oob="innerHTML"></p>' in panel


def test_archive_and_restore_mark_the_row_and_log_events(client: TestClient) -> None:
    archived = client.post("/admin/channels/announcements/archive")
    assert archived.status_code == 200
    row = channel_row(archived.text, "announcements")
    assert 'class="archived"' in row and ">archived</span>" in row
    assert 'hx-post="/admin/channels/announcements/restore"' in row and ">Restore</button>" in row
    assert channels(client)["announcements"]["archived"] is True
    refused = client.post("/api/channels/announcements/posts", json={"body": "hello"})
    assert refused.status_code == 409

    restored = client.post("/admin/channels/announcements/restore")
    row = channel_row(restored.text, "announcements")
    assert 'class="archived"' not in row and ">active</span>" in row and ">Archive</button>" in row
    assert channels(client)["announcements"]["archived"] is False
    page = client.get("/admin").text
    assert page.index("#announcements was restored") < page.index("#announcements was archived")
    gone = client.post("/admin/channels/nope/archive")
    assert gone.status_code == 404
    assert_gone(gone.text, "nope")


def test_a_form_sent_once_signed_out_is_told_so_not_sent_to_sign_in(
    settings: Settings,
) -> None:
    # The sign-in page a redirect leads to would be swapped in place of the panel.
    with TestClient(create_app(settings)) as anonymous:
        for path in ("/admin/channels", "/admin/channels/general/title"):
            answer = anonymous.post(path, data={"title": "x"}, follow_redirects=False)
            assert answer.status_code == 401, path
            assert answer.json()["error"] == SIGNED_OUT
        page = anonymous.get("/admin", follow_redirects=False)
        assert page.status_code == 303 and page.headers["location"] == "/signin?next=%2Fadmin"


def parse(frames: list[bytes]) -> list[Message]:
    """SSE frames as the messages a client would see."""
    messages = []
    for block in b"".join(frames).decode().split("\n\n"):
        fields = [line.partition(": ") for line in block.splitlines()]
        event = next((v for k, _, v in fields if k == "event"), None)
        data = "\n".join(v for k, _, v in fields if k == "data")
        if event:
            messages.append(Message(event=event, data=data))
    return messages


def recent(messages: list[Message]) -> list[Message]:
    return [m for m in messages if m.event in ("recent", "recent-all")]


def test_the_list_stays_bounded_whether_events_trickle_or_burst(client: TestClient) -> None:
    rt = runtime_of(client.app_state)
    portal = client.portal
    assert portal is not None
    feed = AdminFeed(rt)
    post = partial(client.post, "/api/channels/general/posts")
    first = [post(json={"body": f"first {n}"}).json()["event_id"] for n in (1, 2)]
    seen = parse(portal.call(feed.snapshot))
    assert [m.event for m in recent(seen)] == ["recent-all"]
    assert shown_rows(seen) == first[::-1]

    # A trickle: one row per look, and the oldest leave once the list is full.
    trickle = []
    for n in range(RECENT_ROWS + 3):
        trickle.append(post(json={"body": f"t{n}"}).json()["event_id"])
        sent = recent(parse(portal.call(feed.tick)))
        assert [(m.event, row_ids(m.data)) for m in sent] == [("recent", [trickle[-1]])]
        seen += sent
        dropped = [int(x) for x in DROPPED.findall(sent[0].data)]
        assert dropped == ([] if n + len(first) < RECENT_ROWS else [(first + trickle)[-31]])
    assert shown_rows(seen) == trickle[::-1][:RECENT_ROWS]

    # A burst of more than the list holds, in one look: the list is sent whole.
    burst = [post(json={"body": f"b{n}"}).json()["event_id"] for n in range(31)]
    sent = recent(parse(portal.call(feed.tick)))
    assert [m.event for m in sent] == ["recent-all"]
    assert shown_rows(seen + sent) == burst[::-1][:RECENT_ROWS]

    # Nothing new, nothing sent (once the relay has caught up, so the broker panel is still).
    until(
        lambda: rt.relay.delivered >= burst[-1],
        timeout=5,
        failure=lambda _: AssertionError("the relay did not catch up"),
        pause=0.01,
    )
    portal.call(feed.tick)
    assert portal.call(feed.tick) == []


def test_stream_ends_as_soon_as_the_client_goes_away(client: TestClient) -> None:
    portal = client.portal
    assert portal is not None
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/admin/stream",
        "headers": [],
        "query_string": b"",
        "state": client.app_state,
        # What the app's middleware puts in every scope: the stream limit is counted.
        security.SCOPE_KEY: Security(runtime_of(client.app_state).settings),
    }
    sent: list[Message] = []

    async def run() -> float:
        opened = anyio.Event()

        async def send(message: dict[str, object]) -> None:
            if message["type"] == "http.response.body" and message.get("body"):
                sent.extend(parse([message["body"]]))  # type: ignore[list-item]
                if any(m.event == "broker" for m in sent):
                    opened.set()

        async def receive() -> dict[str, object]:
            await opened.wait()  # the client leaves once it has the snapshot
            return {"type": "http.disconnect"}

        response = await admin_stream_endpoint(Request(scope))
        started = time.monotonic()
        with anyio.fail_after(5):
            await response(scope, receive, send)
        return time.monotonic() - started

    took = portal.call(run)
    assert [m.event for m in sent][-1] == "broker"
    assert took < TICK  # it did not even wait for the next look


# -- the stream, against a real server ----------------------------------------------


def named(stream: SSEClient, event: str) -> list[Message]:
    return [m for m in stream.messages if m.event == event]


def wait_named(
    stream: SSEClient,
    event: str,
    where: Callable[[str], bool],
    after: Message | None = None,
    timeout: float = 5,
) -> Message:
    """The first ``event`` message (after ``after``) whose data satisfies ``where``."""
    start = 0 if after is None else stream.messages.index(after) + 1

    def found() -> list[Message]:
        return [m for m in stream.messages[start:] if m.event == event and where(m.data)]

    stream.wait_for(lambda _: bool(found()), timeout)
    return found()[0]


@contextmanager
def admin_stream(server: Server) -> Iterator[SSEClient]:
    """An admin stream that has sent its opening snapshot."""
    with SSEClient(server.port, "/admin/stream", headers=ADMIN) as stream:
        assert stream.status == 200
        stream.wait_for(lambda s: bool(named(s, "broker")))
        yield stream


def shown_rows(messages: list[Message]) -> list[int]:
    """Row ids a page would show after applying these messages, as htmx applies them."""
    rows: list[int] = []
    for message in messages:
        if message.event == "recent-all":
            rows = row_ids(message.data)
        elif message.event == "recent":
            dropped = {int(x) for x in DROPPED.findall(message.data)}
            rows = row_ids(message.data) + [r for r in rows if r not in dropped]
    return rows


def test_an_admin_stream_whose_token_is_revoked_ends_saying_so(
    make_server: Callable[..., Server],
) -> None:
    server = make_server(access_recheck=0.2)
    made = run_feed("token", "create", "boss", "--role", "admin", FEED_DATABASE_URL=server.database)
    token, number = made.stdout.split()[0], re.search(r"token (\d+)", made.stdout)
    assert number is not None
    with SSEClient(server.port, "/admin/stream", headers=bearer(token)) as stream:
        assert stream.status == 200
        stream.wait_for(lambda s: bool(named(s, "broker")))
        run_feed("token", "revoke", number.group(1), FEED_DATABASE_URL=server.database)
        stream.wait_closed()
        # The page reloads on it, rather than retry for ever, refused (feed-stream.js, on
        # access ended elsewhere).
        assert [m.data for m in stream.messages if m.event == "ended"] == [
            "token of 'boss' revoked"
        ]


def test_stream_opens_with_hello_and_every_panel_in_full(server: Server) -> None:
    first = server.post("already there")["event_id"]
    with admin_stream(server) as stream:
        events = [m.event for m in stream.events()]
        assert events == ["hello", "recent-all", "channels", "connections", "broker"]
        assert stream.headers["content-type"].startswith("text/event-stream")
        assert stream.headers["cache-control"] == "private, no-store"
        assert '"release":' in stream.events()[0].data
        assert row_ids(named(stream, "recent-all")[0].data) == [first]
        assert 'id="channel-general"' in named(stream, "channels")[0].data
        assert 'data-figure="subscribers">0<' in named(stream, "connections")[0].data


def test_stream_counts_a_new_event_stream_by_channel_and_format(server: Server) -> None:
    with admin_stream(server) as stream:
        with SSEClient(server.port, params=[("format", "text"), ("channel", "general")]):
            opened = wait_named(stream, "connections", lambda d: 'subscribers">1<' in d)
            assert re.search(
                r'<tr data-channel="general"><th scope="row">#general</th>'
                r'<td class="num" data-format="html">0</td>'
                r'<td class="num" data-format="json">0</td>'
                r'<td class="num" data-format="text">1</td></tr>',
                opened.data,
            )
            assert 'data-figure="oldest">under a minute<' in opened.data
        closed = wait_named(stream, "connections", lambda d: 'subscribers">0<' in d, opened)
        assert "No open streams." in closed.data


def test_stream_sends_new_events_as_rows_in_order(server: Server) -> None:
    with admin_stream(server) as stream:
        ids = [server.post(f"update {n}")["event_id"] for n in range(3)]
        stream.wait_for(lambda s: len(named(s, "recent")) == 3)
        rows = named(stream, "recent")
        assert [row_ids(m.data) for m in rows] == [[i] for i in ids]
        assert [m.data.count("update ") for m in rows] == [1, 1, 1]
        assert "#general tester: update 2" in rows[-1].data
        assert shown_rows(stream.messages) == list(reversed(ids))
        broker = wait_named(stream, "broker", lambda d: f'delivered">{ids[-1]}<' in d)
        assert 'data-figure="connected"><span class="badge on">connected' in broker.data


def test_a_channel_created_through_the_api_shows_up_live(server: Server) -> None:
    with admin_stream(server) as stream:
        answer = server.client.post("/api/channels", json={"name": "releases", "title": "Releases"})
        assert answer.status_code == 201
        table = wait_named(stream, "channels", lambda d: 'id="channel-releases"' in d)
        assert 'value="Releases"' in channel_row(table.data, "releases")
        row = wait_named(stream, "recent", lambda d: "channel-created" in d)
        assert "#releases was created: Releases" in row.data


def test_stream_ends_with_its_final_chunk_when_the_server_shuts_down(
    make_server: Callable[..., Server],
) -> None:
    server = make_server(shutdown_timeout=3)
    with admin_stream(server) as stream, SSEClient(server.port, params={"format": "json"}):
        wait_named(stream, "connections", lambda d: 'subscribers">1<' in d)
        took = server.stop(signal.SIGTERM)
        assert took < 3
        stream.wait_closed(timeout=3)
        assert stream.graceful
        assert "stream closed; reconnect to resume" in stream.comments


def test_stream_ends_at_the_maximum_age_like_every_stream_and_comes_back_promptly(
    make_server: Callable[..., Server],
) -> None:
    # An admin tab is a long-lived stream too: a replaced or added worker gets its share
    # of them back only if they end (reconnects.py, on the maximum age).
    server = make_server(max_stream_seconds=1)
    opened = time.monotonic()
    with admin_stream(server) as stream:
        stream.wait_closed(timeout=1.25 + 5)
    assert 1 <= time.monotonic() - opened < 1.25 + 1
    assert stream.graceful
    assert stream.messages[-1].retry == 250
    assert stream.comments[-1] == "stream reached its maximum age; reconnect to resume"


# -- in Chromium ---------------------------------------------------------------------


@pytest.mark.browser
def test_admin_page_follows_tabs_posts_and_its_own_forms_live(
    server: Server,
    context: BrowserContext,
    browser: Browser,
    problems: Problems,
    screenshots: Path,
) -> None:
    seed_sample_feed(server)
    # Signing in from the form leads straight back to /admin.
    admin = sign_in(context, server, ADMIN_TOKEN, "/admin")
    expect(admin.locator('[data-figure="subscribers"]')).to_have_text("0")
    expect(admin.locator("#admin-events > li")).to_have_count(7)  # 5 posts, a pin, an edit

    # A dashboard in another tab is a new connection: the count goes up in place.
    dashboard = open_live(context, server.url)
    expect(admin.locator('[data-figure="subscribers"]')).to_have_text("1", timeout=ADMIN_MS)
    expect(
        admin.locator('#admin-connections tr[data-channel="*"] [data-format="html"]')
    ).to_have_text("1")
    for scheme in ("light", "dark"):
        shoot(browser, server, problems, scheme, screenshots)

    # A post through the API: a new row on top, the same as the dashboard gets.
    event_id = server.post("Fire drill at 3 pm", channel="announcements")["event_id"]
    top = admin.locator("#admin-events > li").first
    expect(top).to_have_id(f"admin-event-{event_id}", timeout=ADMIN_MS)
    expect(top.locator(".admin-event-text")).to_contain_text("#announcements tester: Fire drill")
    expect(admin.locator("#admin-events > li")).to_have_count(8)
    expect(dashboard.get_by_text("Fire drill at 3 pm", exact=True)).to_be_visible()

    # Archive from the form: the row is marked, and the log says so.
    row = admin.locator("#channel-general")
    row.get_by_role("button", name="Archive #general").click()
    expect(row).to_have_class("archived")
    expect(row.locator(".badge")).to_have_text("archived")
    expect(row.get_by_role("button", name="Restore #general")).to_be_visible()
    expect(top.locator(".admin-kind")).to_have_text("channel-archived", timeout=ADMIN_MS)

    # A name that is taken: the 409 is shown in the form, the typing kept.
    problems.allow("409 from POST")
    form = admin.locator("#admin-create")
    form.get_by_label("Name").fill("general")
    form.get_by_label("Title").fill("Twice")
    form.get_by_role("button", name="Create channel").click()
    expect(admin.locator("#admin-create .error")).to_have_text(
        "A channel named 'general' already exists."
    )
    expect(admin.locator("#admin-create").get_by_label("Title")).to_have_value("Twice")
    assert_not_reloaded(admin)


def shoot(
    browser: Browser, server: Server, problems: Problems, scheme: str, screenshots: Path
) -> None:
    """The admin page with the sample feed and one dashboard open, for the README."""
    ctx = browser.new_context(
        viewport=LAPTOP,
        color_scheme=scheme,
        locale="en-US",
        timezone_id="UTC",  # type: ignore[arg-type]
    )
    ctx.on("page", problems.watch)
    try:
        page = sign_in(ctx, server, ADMIN_TOKEN, "/admin")
        expect(page.locator('[data-figure="subscribers"]')).to_have_text("1")
        page.screenshot(
            path=screenshots / f"admin-{scheme}.png", full_page=True, animations="disabled"
        )
    finally:
        ctx.close()


def test_the_replies_setting_is_turned_off_and_on_from_the_channel_table(
    client: TestClient,
) -> None:
    page = client.get("/admin").text
    row = channel_row(page, "announcements")
    assert 'hx-post="/admin/channels/announcements/replies"' in row
    assert 'name="replies" value="off"' in row and "Turn off" in row
    off = client.post("/admin/channels/announcements/replies", data={"replies": "off"})
    assert off.status_code == 200
    assert channels(client)["announcements"]["replies"] is False
    assert 'name="replies" value="on"' in channel_row(off.text, "announcements")
    on = client.post("/admin/channels/announcements/replies", data={"replies": "on"})
    assert on.status_code == 200 and channels(client)["announcements"]["replies"] is True
    wrong = client.post("/admin/channels/announcements/replies", data={"replies": "maybe"})
    assert wrong.status_code == 422
    # In the row; no field to fix: the button keeps the focus, described by the error
    # (admin.py, rationale 7).
    row = channel_row(wrong.text, "announcements")
    assert (
        '<p class="error" id="channel-announcements-error" role="alert">'
        "Send replies=on or replies=off.</p>"
    ) in row
    button = 'id="channel-announcements-replies" aria-describedby="channel-announcements-error"'
    assert button in row
    assert "autofocus" not in wrong.text
    unknown = client.post("/admin/channels/nope/replies", data={"replies": "on"})
    assert unknown.status_code == 404
