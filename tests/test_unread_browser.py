"""Read state in a real Chromium: unread counts and the title on open, the "new since
you last looked" divider, posts read once seen and never past what the page has
applied, reading on one device clearing the counts on another (and on nobody else's),
"Mark all read", and desktop notifications.

Each browser context is one device; two contexts signed in with the same token are
one person's two devices. Synchronisation is a Playwright wait with a deadline.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Route, expect

from tests.auth import bearer
from tests.browser import (
    FROZEN_NOW,
    OPEN_MS,
    SAMPLE_POSTS,
    Problems,
    backdate,
    browser,
    context,
    new_context,
    open_live,
    post_el,
    problems,
    seed_sample_feed,
    sign_in,
    wait_applied,
    wait_true,
)
from tests.conftest import Server
from tests.waiting import until

pytestmark = pytest.mark.browser
__all__ = ["browser", "context", "problems"]

SYNC_MS = 2_000  # reading on one device clears the others' counts within 2 s


def badge(page: Page, channel: str) -> object:
    return page.locator(f'[data-unread-channel="{channel}"]')


def children(page: Page) -> list[str]:
    ids: list[str] = page.eval_on_selector_all("#posts > *", "els => els.map(el => el.id)")
    return ids


def test_counts_title_and_divider_show_on_open_and_clear_once_the_posts_are_seen(
    server: Server, context: BrowserContext
) -> None:
    bob = server.token("bob")
    first = server.post("read one", author="alice")
    second = server.post("read two", author="alice")
    read = server.client.post(
        "/api/channels/general/read", json={"up_to": second["event_id"]}, headers=bearer(bob)
    )
    assert read.status_code == 200
    new = [server.post("new one", author="alice"), server.post("new two @bob", author="alice")]
    # #general's posts are not on this page, so they stay unread while it is open.
    elsewhere = sign_in(context, server, bob, "/channels/announcements")
    expect(badge(elsewhere, "general")).to_have_text("2 unread")
    expect(badge(elsewhere, "announcements")).to_be_hidden()
    expect(elsewhere.locator("[data-unread-mentions]")).to_have_text("1")
    expect(elsewhere).to_have_title(re.compile(r"^\(2\) Announcements · feed$"))
    elsewhere.close()

    home = open_live(context, server.url)
    expect(home.locator("#unread-divider")).to_have_text("New since you last looked")
    post_ids = [f"post-{p['post']['id']}" for p in (*reversed(new), second, first)]
    assert [i for i in children(home) if i.startswith("post-") or i == "unread-divider"] == [
        post_ids[0],
        post_ids[1],
        "unread-divider",
        post_ids[2],
        post_ids[3],
    ]
    # Every post is on screen in a visible tab: read, on this page and on the server.
    expect(badge(home, "general")).to_be_hidden(timeout=SYNC_MS)
    expect(home).to_have_title("All channels · feed", timeout=SYNC_MS)
    assert server.client.get("/api/me/unread", headers=bearer(bob)).json()["total"] == 0
    # The divider stays where the page opened it.
    expect(home.locator("#unread-divider")).to_be_visible()


def test_reading_on_one_device_clears_the_counts_on_another_and_on_no_one_elses(
    server: Server, browser: Browser, problems: Problems
) -> None:
    bob, carol = server.token("bob"), server.token("carol")
    server.post("news for everyone", author="alice")
    phone, laptop, hers = (new_context(browser, problems) for _ in range(3))
    try:
        watching = sign_in(phone, server, bob, "/channels/announcements")
        expect(badge(watching, "general")).to_have_text("1 unread")
        carols = sign_in(hers, server, carol, "/channels/announcements")
        expect(badge(carols, "general")).to_have_text("1 unread")
        # The laptop shows the post: bob has read it there.
        reading = sign_in(laptop, server, bob, "/")
        started = time.monotonic()
        expect(badge(watching, "general")).to_be_hidden(timeout=SYNC_MS)
        expect(watching).to_have_title("Announcements · feed", timeout=SYNC_MS)
        assert time.monotonic() - started < SYNC_MS / 1000
        assert "general" in watching.evaluate("window.feedUnread.readEvents")
        # Carol's page heard nothing of it: an event after it has been applied there.
        later = server.post("later", channel="announcements", author="alice")
        wait_applied(carols, later["event_id"])
        wait_applied(reading, later["event_id"])
        # (She reads the later post herself: that read event is hers.)
        assert "general" not in carols.evaluate("window.feedUnread.readEvents")
        expect(badge(carols, "general")).to_have_text("1 unread")
        assert server.client.get("/api/me/unread", headers=bearer(carol)).json()["total"] >= 1
    finally:
        for ctx in (phone, laptop, hers):
            ctx.close()
    problems.assert_none()


def test_mark_all_read_clears_what_was_never_scrolled_to(
    server: Server, context: BrowserContext
) -> None:
    bob = server.token("bob")
    for n in range(12):
        server.post(f"general {n}", author="alice")
    page = sign_in(context, server, bob, "/")
    # The oldest unread posts are below the fold: seeing the newest does not read them.
    expect(badge(page, "general")).to_have_text("12 unread")
    expect(page).to_have_title(re.compile(r"^\(12\) "))
    page.get_by_role("button", name="Mark all read").click()
    expect(badge(page, "general")).to_be_hidden(timeout=SYNC_MS)
    expect(page).to_have_title("All channels · feed", timeout=SYNC_MS)
    assert server.client.get("/api/me/unread", headers=bearer(bob)).json()["total"] == 0


# Counts the notifications the page makes (observing the browser, not standing in for
# it), and lets the test say whether the tab is hidden: headless Chromium shows every
# page, and the Page Visibility API is what the page asks.
WATCH_NOTIFICATIONS = """
(() => {
  const Real = window.Notification;
  window.__notifications = [];
  window.Notification = class extends Real {
    constructor(title, options) {
      super(title, options);
      window.__notifications.push(options && options.body);
    }
  };
  window.__hidden = false;
  Object.defineProperty(document, "visibilityState", {
    configurable: true,
    get: () => (window.__hidden ? "hidden" : "visible"),
  });
})();
"""


def shown(tabs: list[Page]) -> int:
    return sum(int(tab.evaluate("window.__notifications.length")) for tab in tabs)


def hide(tab: Page, hidden: bool) -> None:
    tab.evaluate(
        "h => { window.__hidden = h; document.dispatchEvent(new Event('visibilitychange')); }",
        hidden,
    )


def test_notifications_are_opt_in_shown_only_in_hidden_tabs_and_once_per_post(
    server: Server, browser: Browser, problems: Problems
) -> None:
    created = server.client.post(
        "/api/channels",
        json={"name": "news", "title": "News", "announcement_only": True},
    )
    assert created.status_code == 201
    bob = server.token("bob")
    ctx = new_context(browser, problems, permissions=["notifications"])
    try:
        ctx.add_init_script(WATCH_NOTIFICATIONS)
        sign_in(ctx, server, bob, "/").close()
        tabs = [open_live(ctx, server.url) for _ in range(3)]
        # Not opted in: nothing, even hidden.
        for tab in tabs:
            hide(tab, True)
        quiet = server.post("@bob before opting in", author="alice")
        for tab in tabs:
            wait_applied(tab, quiet["event_id"])
        assert shown(tabs) == 0
        for tab in tabs:
            hide(tab, False)
        tabs[0].get_by_role("button", name="Enable notifications").click()
        expect(tabs[0].get_by_role("button", name="Disable notifications")).to_be_visible()
        # Every tab visible: the reader sees the page, no notification.
        seen = server.post("@bob while looking", author="alice")
        for tab in tabs:
            wait_applied(tab, seen["event_id"])
        assert shown(tabs) == 0
        # Every tab hidden: one notification per post, across the three tabs.
        for tab in tabs:
            hide(tab, True)
        server.post("@bob while away", author="alice")
        # By the admin, in an announcement channel.
        server.post("the news", channel="news")
        server.post("nothing for bob", author="alice")
        wait_true(tabs[0], "() => window.__notifications !== undefined")
        deadline = time.monotonic() + 2
        while shown(tabs) < 2:
            assert time.monotonic() < deadline, "the notifications never came"
            tabs[0].wait_for_timeout(50)  # polling the pages, with a deadline
        # Nothing more comes: a later event has been applied by every tab since.
        last = server.post("still nothing for bob", author="alice")
        for tab in tabs:
            wait_applied(tab, last["event_id"])
        tabs[0].wait_for_timeout(500)  # any claim in flight would have resolved by now
        bodies = [b for tab in tabs for b in tab.evaluate("window.__notifications")]
        assert len(bodies) == 2, bodies
        assert any("while away" in b for b in bodies) and any("#news" in b for b in bodies)
    finally:
        ctx.close()
    problems.assert_none()


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_unread_counts_screenshots(
    server: Server,
    browser: Browser,
    problems: Problems,
    scheme: Literal["light", "dark"],
    screenshots: Path,
) -> None:
    seed_sample_feed(server)
    viewer = server.token(SAMPLE_POSTS[0][1], "writer")
    said = server.post(
        "The lift is back. Thanks @marco for checking!", "announcements", "Facilities"
    )
    backdate(server, {said["post"]["id"]: 1})
    ctx = new_context(browser, problems, color_scheme=scheme)
    try:
        # On the announcements page, #general's posts stay unread while it is shown;
        # the announcements were read before (cards with reactions and replies are too
        # tall for all of them to be seen in one screen).
        read = server.client.post(
            "/api/channels/announcements/read", json={}, headers=bearer(viewer)
        )
        assert read.status_code == 200, read.text
        sign_in(ctx, server, viewer, "/channels/announcements").close()
        page = open_live(ctx, f"{server.url}/channels/announcements", frozen=FROZEN_NOW)
        expect(badge(page, "general")).to_have_text("3 unread")
        expect(page.locator("mark[data-mention=marco]")).to_have_text("@marco")
        expect(badge(page, "announcements")).to_be_hidden()
        page.screenshot(path=screenshots / f"unread-laptop-{scheme}.png", animations="disabled")
    finally:
        ctx.close()
    problems.assert_none()


def test_tabs_that_share_one_stream_all_hear_their_persons_read_and_mentions(
    server: Server, browser: Browser, problems: Problems
) -> None:
    bob = server.token("bob")
    server.post("news for everyone", author="alice")
    tabs, laptop = (new_context(browser, problems) for _ in range(2))
    try:
        first = sign_in(tabs, server, bob, "/channels/announcements")
        second = tabs.new_page()
        second.goto(f"{server.url}/channels/announcements")
        # One browser, one stream: one tab holds it, the other gets its messages.
        wait_true(second, "window.feedStream.mode !== null")
        modes = sorted(p.evaluate("window.feedStream.mode") for p in (first, second))
        assert modes == ["follower", "leader"], modes
        for page in (first, second):
            expect(badge(page, "general")).to_have_text("1 unread")
        # A mention reaches both tabs' counts, through the holder.
        mention = server.post("@bob have a look", author="alice")
        for page in (first, second):
            wait_applied(page, mention["event_id"])
            expect(page.locator("[data-unread-mentions] .count")).to_have_text("1", timeout=SYNC_MS)
        # Reading on another device clears the counts in both tabs.
        sign_in(laptop, server, bob, "/")
        for page in (first, second):
            expect(badge(page, "general")).to_be_hidden(timeout=SYNC_MS)
    finally:
        for ctx in (tabs, laptop):
            ctx.close()
    problems.assert_none()


def test_a_mention_edited_out_leaves_the_count_and_comes_back_when_edited_in(
    server: Server, context: BrowserContext
) -> None:
    bob = server.token("bob")
    context.add_init_script(WATCH_NOTIFICATIONS)
    page = sign_in(context, server, bob, "/")
    hide(page, True)  # in a hidden tab the post stays unread, and so does its mention
    mention = server.post("@bob have a look", author="alice")
    wait_applied(page, mention["event_id"])
    count = page.locator("[data-unread-mentions]")
    expect(count.locator(".count")).to_have_text("1", timeout=SYNC_MS)
    path = f"/api/posts/{mention['post']['id']}"
    alice = bearer(server.token("alice"))
    edited = server.client.patch(path, json={"body": "have a look"}, headers=alice)
    assert edited.status_code == 200, edited.text
    expect(count).to_be_hidden(timeout=SYNC_MS)
    again = server.client.patch(path, json={"body": "@bob, have a look"}, headers=alice)
    assert again.status_code == 200, again.text
    expect(count.locator(".count")).to_have_text("1", timeout=SYNC_MS)
    expect(count).to_be_visible()


def test_a_count_at_the_servers_cap_shows_as_that_many_or_more(
    server: Server, context: BrowserContext
) -> None:
    bob = server.token("bob")
    server.post("one", author="alice")
    page = sign_in(context, server, bob, "/channels/announcements")
    expect(badge(page, "general")).to_have_text("1 unread")
    # The server's cap is 1000 (storage/reading.py); a count there means "or more".
    capped = {
        "channels": {
            "general": {"unread": 1000, "mentions": 0, "read_up_to": 0},
            "announcements": {"unread": 2, "mentions": 0, "read_up_to": 0},
        },
        "total": 1002,
        "mentions": 0,
        "cap": 1000,
    }
    page.route("**/api/me/unread", lambda route: route.fulfill(json=capped))
    server.post("two", author="alice")  # a new post makes the page ask again
    expect(badge(page, "general")).to_have_text("1000+ unread", timeout=SYNC_MS)
    expect(badge(page, "announcements")).to_have_text("2 unread")
    expect(page).to_have_title(re.compile(r"^\(1002\+\) Announcements · feed$"))
    capped["channels"]["general"]["unread"] = 999  # type: ignore[index]
    capped["total"] = 1001
    server.post("three", author="alice")
    expect(badge(page, "general")).to_have_text("999 unread", timeout=SYNC_MS)
    expect(page).to_have_title(re.compile(r"^\(1001\) Announcements · feed$"))


def test_a_reply_is_unread_until_the_card_it_went_under_is_seen(
    server: Server, context: BrowserContext
) -> None:
    bob, alice = bearer(server.token("bob")), bearer(server.token("alice"))
    thread = server.post("a thread", author="alice")
    read = server.client.post(
        "/api/channels/general/read", json={"up_to": thread["event_id"]}, headers=bob
    )
    assert read.status_code == 200
    url = f"/api/posts/{thread['post']['id']}/replies"

    def reply(body: str) -> dict[str, Any]:
        answer = server.client.post(url, json={"body": body}, headers=alice)
        assert answer.status_code == 201, answer.text
        made: dict[str, Any] = answer.json()
        return made

    def position() -> int:
        unread = server.client.get("/api/me/unread", headers=bob).json()
        found: int = unread["channels"]["general"]["read_up_to"]
        return found

    before = reply("before the page")
    # On a page without the card, the reply stays unread, and the badge says so.
    elsewhere = sign_in(context, server, server.token("bob"), "/channels/announcements")
    expect(badge(elsewhere, "general")).to_have_text("1 unread")
    expect(elsewhere).to_have_title(re.compile(r"^\(1\) Announcements · feed$"))
    elsewhere.close()
    # The card is on screen, its reply summary with it: the reply is read.
    home = open_live(context, server.url)
    expect(badge(home, "general")).to_be_hidden(timeout=SYNC_MS)
    until(position, lambda up_to: up_to == before["event_id"], timeout=SYNC_MS / 1000)
    # One that comes while the card is on screen is read as it comes.
    live = reply("while the page is open")
    until(position, lambda up_to: up_to == live["event_id"], timeout=SYNC_MS / 1000)
    expect(badge(home, "general")).to_be_hidden(timeout=SYNC_MS)
    assert server.client.get("/api/me/unread", headers=bob).json()["total"] == 0


# Records the id of every reply message the page's stream brings, as it comes: this
# hook is the page's first (feed-unread.js adds its own after it), so once a reply is
# recorded, the page's own scripts have heard of it too.
WATCH_REPLIES = """
window.__replies = [];
window.feedSourceHooks = [function (source) {
  source.addEventListener("reply-created", function (evt) {
    window.__replies.push(Number(evt.lastEventId));
  });
}];
"""


def test_the_read_position_never_passes_what_the_page_has_applied(
    make_server: Callable[..., Server], browser: Browser, problems: Problems
) -> None:
    """While "Older posts" loads, the page holds its messages: a new post, then a reply
    under a card on screen. The card is seen with its new reply's id before the page has
    applied either; reported then, the new post it never showed would count as read."""
    server = make_server(page_size=2)
    bob, alice = server.token("bob"), bearer(server.token("alice"))
    for n in range(3):
        server.post(f"older {n}", author="alice")
    thread = server.post("a thread", author="alice")
    assert server.client.post("/api/me/read", json={}, headers=bearer(bob)).status_code == 200

    def read_up_to() -> int:
        unread = server.client.get("/api/me/unread", headers=bearer(bob)).json()
        found: int = unread["channels"]["general"]["read_up_to"]
        return found

    start = read_up_to()
    ctx = new_context(browser, problems)
    try:
        ctx.add_init_script(WATCH_NOTIFICATIONS + WATCH_REPLIES)
        page = sign_in(ctx, server, bob, "/")
        expect(post_el(page, thread["post"]["id"])).to_be_in_viewport()
        held: list[Route] = []

        def hold(route: Route) -> None:
            held.append(route)  # answered later, by the test

        def older(url: str) -> bool:
            return "/partials/posts?" in url and "before=" in url

        page.route(older, hold)
        # Clicked from the page, so that nothing scrolls.
        page.evaluate("document.querySelector('#posts > .older button').click()")
        deadline = time.monotonic() + OPEN_MS / 1000
        while not held:
            assert time.monotonic() < deadline, "the page never asked for older posts"
            page.wait_for_timeout(20)  # lets Playwright hand the request to the route
        unseen = server.post("while older posts load", author="alice")
        url = f"/api/posts/{thread['post']['id']}/replies"
        reply = server.client.post(url, json={"body": "under the card"}, headers=alice).json()
        wait_true(page, "id => window.__replies.includes(id)", reply["event_id"])
        # The tab is hidden before the page applies anything: the new post goes in unseen.
        hide(page, True)
        held[0].continue_()
        # A route sends every request of the page through this test's thread.
        page.unroute(older, hold)
        wait_applied(page, reply["event_id"])
        expect(post_el(page, unseen["post"]["id"])).to_be_attached()
        assert page.evaluate("window.feedUnread.reports") == 0
        assert read_up_to() == start
        assert server.client.get("/api/me/unread", headers=bearer(bob)).json()["total"] == 2
        # Shown again, the new post and the reply are seen: both are read.
        hide(page, False)
        until(read_up_to, lambda up_to: up_to == reply["event_id"], timeout=SYNC_MS / 1000)
        assert server.client.get("/api/me/unread", headers=bearer(bob)).json()["total"] == 0
    finally:
        ctx.close()
    problems.assert_none()
