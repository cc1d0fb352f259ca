"""The pages in a real Chromium, driven by Playwright, against a real ``feed serve``.

Every test waits for ``#live[data-state=live]`` (set by feed-stream.js on ``htmx:sseOpen``)
before it publishes anything: an event committed before the page's EventSource is
open would only arrive through replay, which is not what these tests are about.
Synchronisation is always a Playwright wait with a deadline, never a sleep.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import pytest
from playwright.sync_api import Browser, BrowserContext, expect

from feed.lists import dashboard_window
from tests.browser import (
    FROZEN_NOW,
    LAPTOP,
    LIVE_MS,
    PHONE,
    SAMPLE_POSTS,
    Database,
    Problems,
    api_posts,
    assert_not_reloaded,
    browser,
    context,
    database,
    new_context,
    ok,
    open_live,
    post_el,
    problems,
    seed_sample_feed,
    shown_ids,
    sign_in,
    top,
    wait_applied,
)
from tests.conftest import Server

pytestmark = pytest.mark.browser
__all__ = ["browser", "context", "database", "problems"]  # fixtures, shared with test_kiosk

SCREENSHOT_VIEWER = SAMPLE_POSTS[0][1]
LOCAL_TIME = re.compile(r"^[A-Z][a-z]{2} \d{1,2}, \d{1,2}:\d{2}\s[AP]M$")  # en-US, this year


# -- compose in one tab, see it in another -------------------------------------------


def test_post_from_compose_form_appears_in_other_tab(
    server: Server, context: BrowserContext, browser: Browser, problems: Problems
) -> None:
    anonymous = new_context(browser, problems)
    reader = open_live(anonymous, server.url)
    sign_in(context, server, server.token("Ada", "writer")).close()
    writer = open_live(context, server.url)
    expect(reader.locator("#empty")).to_be_visible()

    form = writer.locator("#compose")
    # The author is whoever is signed in: there is nothing to type it into.
    expect(form.locator(".hint strong")).to_have_text("Ada")
    expect(form.locator("input[name=author]")).to_have_count(0)
    form.get_by_label("Post").fill("Deploy **finished** at noon")
    form.get_by_role("button", name="Post").click()

    arrived = reader.locator("#posts .post")
    expect(arrived).to_have_count(1, timeout=LIVE_MS)
    expect(arrived.locator(".author")).to_have_text("Ada")
    expect(arrived.locator(".body")).to_have_text("Deploy finished at noon")
    expect(arrived.locator(".body strong")).to_have_text("finished")
    expect(reader.locator("#empty")).to_be_hidden()
    assert_not_reloaded(reader)

    # The writer sees its own post through the stream too, once.
    expect(writer.locator("#posts .post")).to_have_count(1, timeout=LIVE_MS)
    # The form came back cleared, still posting as Ada, with no error.
    form = writer.locator("#compose")
    expect(form.get_by_label("Post")).to_have_value("")
    expect(form.locator(".hint strong")).to_have_text("Ada")
    expect(form.locator(".error")).to_have_count(0)
    assert_not_reloaded(writer)

    (stored,) = api_posts(server)
    assert (stored["author"], stored["body"]) == ("Ada", "Deploy **finished** at noon")
    expect(post_el(reader, stored["id"])).to_have_count(1)
    anonymous.close()


# -- API changes reach an open page ----------------------------------------------------


def test_api_create_edit_pin_delete_update_the_page_in_place(
    server: Server, context: BrowserContext
) -> None:
    page = open_live(context, server.url)
    posts = page.locator("#posts .post")

    ids = []
    for n, text in enumerate(["Oldest news", "Middle news", "Newest news"], start=1):
        ids.append(server.post(text)["post"]["id"])
        expect(posts).to_have_count(n, timeout=LIVE_MS)
    oldest, middle, newest = (post_el(page, i) for i in ids)
    expect(posts.first).to_have_id(f"post-{ids[2]}")  # new posts go on top
    assert top(newest) < top(middle) < top(oldest)

    # Edit: the text changes where the post is; nothing is added.
    oldest_y = top(oldest)
    ok(server.client.patch(f"/api/posts/{ids[0]}", json={"body": "Oldest news, *corrected*"}))
    expect(oldest.locator(".body")).to_have_text("Oldest news, corrected", timeout=LIVE_MS)
    expect(oldest.locator(".tag.edited")).to_have_text("edited")
    expect(oldest).to_have_count(1)
    expect(posts).to_have_count(3)
    expect(page.get_by_text("Oldest news", exact=True)).to_have_count(0)
    assert top(oldest) == oldest_y

    # Pin: the oldest post is shown above the newer ones, tagged.
    ok(server.client.post(f"/api/posts/{ids[0]}/pin"))
    expect(oldest).to_have_class("post pinned", timeout=LIVE_MS)
    expect(oldest.locator(".tag.pin")).to_have_text("pinned")
    expect(oldest.locator(".body")).to_have_text("Oldest news, corrected")
    expect(posts).to_have_count(3)
    assert top(oldest) < top(newest) < top(middle)
    shown = page.evaluate(
        """() => [...document.querySelectorAll('#posts .post')]
                 .sort((a, b) => a.getBoundingClientRect().top - b.getBoundingClientRect().top)
                 .map(el => el.id)"""
    )
    assert shown == [f"post-{ids[0]}", f"post-{ids[2]}", f"post-{ids[1]}"]

    # A post arriving while one is pinned goes under the pinned one.
    latest_id = server.post("Latest news")["post"]["id"]
    latest = post_el(page, latest_id)
    expect(latest).to_be_visible(timeout=LIVE_MS)
    assert top(oldest) < top(latest) < top(newest)

    # feed-times.js shows times in the reader's zone and language, also on swapped-in posts.
    for post in (latest, oldest, newest):
        expect(post.locator("time")).to_have_text(LOCAL_TIME)

    # Delete: gone from the page; the others stay.
    ok(server.client.delete(f"/api/posts/{ids[1]}"))
    expect(middle).to_have_count(0, timeout=LIVE_MS)
    expect(posts).to_have_count(3)

    # Unpin: back in its place at the bottom.
    ok(server.client.post(f"/api/posts/{ids[0]}/unpin"))
    expect(oldest.locator(".tag.pin")).to_have_count(0, timeout=LIVE_MS)
    expect(oldest).to_have_class("post")
    assert top(latest) < top(newest) < top(oldest)
    assert_not_reloaded(page)


def test_an_unpinned_post_below_the_first_page_leaves_until_older_posts_brings_it_back(
    make_server: Callable[..., Server], context: BrowserContext, database: Database
) -> None:
    server = make_server(page_size=5)
    ids = [database.post(f"post {i}").post.id for i in range(12)]
    database.pin(ids[1])
    page = open_live(context, server.url)
    newest_first = ids[::-1]
    # The first page: the pinned post, and the five newest unpinned ones.
    assert shown_ids(page) == [ids[1], *newest_first[:5]]

    # Unpinned, a post older than the first page goes back to its place in history...
    wait_applied(page, ok(server.client.post(f"/api/posts/{ids[1]}/unpin"))["event_id"])
    assert shown_ids(page) == newest_first[:5]
    # ...pinned, it comes back, first.
    wait_applied(page, ok(server.client.post(f"/api/posts/{ids[0]}/pin"))["event_id"])
    assert shown_ids(page) == [ids[0], *newest_first[:5]]

    # "Older posts", from the keyboard: the next page goes in its place, and the focus
    # moves on to the next "Older posts".
    older = page.get_by_role("button", name="Older posts")
    older.focus()
    page.keyboard.press("Enter")
    expect(post_el(page, ids[2])).to_be_visible()
    assert shown_ids(page) == [ids[0], *newest_first[:10]]
    expect(page.get_by_role("button", name="Older posts")).to_be_focused()

    # Now above the floor, an unpinned post stays where it is.
    wait_applied(page, ok(server.client.post(f"/api/posts/{ids[4]}/pin"))["event_id"])
    wait_applied(page, ok(server.client.post(f"/api/posts/{ids[4]}/unpin"))["event_id"])
    expect(post_el(page, ids[4])).to_have_class("post")
    page.keyboard.press("Enter")
    expect(page.get_by_role("button", name="Older posts")).to_have_count(0)
    # Each post once, the pinned one included.
    assert shown_ids(page) == [ids[0], *newest_first[:-1]]
    assert page.locator("[id^='post-']").count() == len(ids)
    assert_not_reloaded(page)


# One evaluation, so the applied id, the floor and the posts are read at the same moment.
LIST = """() => {
  const older = document.querySelector('#posts > .older');
  return {
    floor: older ? Number(older.dataset.floor) : 0,
    posts: [...document.querySelectorAll('#posts > .post')].map(el => [
      Number(el.id.slice('post-'.length)), el.classList.contains('pinned'),
    ]),
    elements: document.querySelectorAll('[id^="post-"]').length,
  };
}"""


def test_a_full_pinned_section_pinned_and_unpinned_live_keeps_the_dashboard_to_its_rule(
    make_server: Callable[..., Server], context: BrowserContext, database: Database
) -> None:
    size = 3
    server = make_server(page_size=size)
    channels = ("general", "announcements")  # the section is the dashboard's, across both
    ids = [database.post(f"post {i}", channels[i % 2]).post.id for i in range(10)]
    for i in (1, 3, 5, 6):
        database.pin(ids[i])
    page = open_live(context, server.url)
    refetched: list[str] = []
    page.on(
        "response",
        lambda r: "x-feed-last-event-id" in r.headers and refetched.append(r.url),
    )

    def shows(*expected: int) -> None:
        """The page shows ``expected``, and is what its rule makes of the database."""
        shown = page.evaluate(LIST)
        rule = dashboard_window(database.posts(), size, shown["floor"])
        assert shown["posts"] == [[p.id, p.pinned] for p in rule]
        assert shown["elements"] == len(rule)
        assert [n for n, _ in shown["posts"]] == [ids[i] for i in expected]

    def change(action: str, i: int) -> None:
        wait_applied(page, ok(server.client.post(f"/api/posts/{ids[i]}/{action}"))["event_id"])

    # The section (6, 5, 3); the pinned 1, older, is in the history, under the floor.
    shows(6, 5, 3, 9, 8, 7)
    # Pinned with the section full: 3 leaves it, for its place in history, under the floor.
    change("pin", 8)
    shows(8, 6, 5, 9, 7)
    page.get_by_role("button", name="Older posts").click()
    expect(post_el(page, ids[2])).to_be_visible()
    # The next page of history holds 3, still pinned, in its place.
    shows(8, 6, 5, 9, 7, 4, 3, 2)
    # 5 leaves the full section for its place in history, above the floor now.
    change("pin", 9)
    shows(9, 8, 6, 7, 5, 4, 3, 2)
    # The section loses one: the newest pinned post of the history takes its place,
    # and the page keeps its older pages.
    change("unpin", 8)
    shows(9, 6, 5, 8, 7, 4, 3, 2)
    change("unpin", 9)
    shows(6, 5, 3, 9, 8, 7, 4, 2)
    assert refetched == []
    # Now the next pinned post (1) is under the floor: only the server knows it, and
    # the list is fetched again, its first page.
    change("unpin", 6)
    shows(5, 3, 1, 9, 8, 7)
    assert len(refetched) == 1, refetched
    assert_not_reloaded(page)


# feed-announcer.js, on screen readers: the posts of a burst are gathered this long into one
# sentence, and sentences are at least TOLD_EVERY_MS apart.
GATHER_MS = 500
TOLD_EVERY_MS = 3000

# Each change of the status line, with the page's clock when it happened.
WATCH_TOLD = """() => {
  window.__told = [];
  const line = document.getElementById("announcer");
  new MutationObserver(() => window.__told.push([Date.now(), line.textContent])).observe(
    line, { childList: true, characterData: true, subtree: true });
  return Date.now();
}"""


@pytest.mark.parametrize("path", ["/", "/kiosk"])
def test_screen_readers_are_told_about_new_posts(
    server: Server, context: BrowserContext, path: str
) -> None:
    # The page's timers run on Playwright's clock, paused once the stream is open: the
    # page tells nothing until the test moves the clock, so each sentence's moment is
    # exact, and the throttle's turns take no real time.
    context.clock.install()
    page = open_live(context, f"{server.url}{path}")
    page.clock.pause_at(datetime.fromtimestamp(page.evaluate("Date.now()") / 1000 + 1, UTC))
    announcer = page.locator("#announcer")
    expect(announcer).to_have_attribute("role", "status")
    # The list itself is no live region, nor inside one: only the status line speaks.
    assert (
        page.evaluate(
            "document.getElementById('posts').closest('[aria-live], [role=log], [role=status]')"
        )
        is None
    )
    start = page.evaluate(WATCH_TOLD)
    expect(announcer).to_have_text("")

    # A post is told once its burst has had time to gather.
    first = server.post("Fire drill at **3 pm**")
    wait_applied(page, first["event_id"])
    page.clock.run_for(GATHER_MS - 1)
    assert announcer.text_content() == ""
    page.clock.run_for(1)
    expect(announcer).to_have_text("New post by tester in #general: Fire drill at 3 pm")
    # Edits are not news, however long one waits.
    edited = ok(server.client.patch(f"/api/posts/{first['post']['id']}", json={"body": "moved"}))
    wait_applied(page, edited["event_id"])
    expect(post_el(page, first["post"]["id"]).locator(".body")).to_have_text("moved")
    page.clock.run_for(TOLD_EVERY_MS)
    expect(announcer).to_have_text("New post by tester in #general: Fire drill at 3 pm")
    # A burst is one sentence, told for its latest post.
    many = [server.post(f"Burst {n}", channel="announcements")["event_id"] for n in range(3)]
    wait_applied(page, many[-1])
    page.clock.run_for(GATHER_MS)
    burst = "3 new posts, the latest by tester in #announcements: Burst 2"
    expect(announcer).to_have_text(burst)
    # A steady stream is told once a turn, not at every pause: each post here comes
    # the moment the one before was told, and waits for its turn.
    for n in range(3):
        wait_applied(page, server.post(f"Stream {n}")["event_id"])
        page.clock.run_for(TOLD_EVERY_MS - 1)
        assert f"Stream {n}" not in (announcer.text_content() or "")
        page.clock.run_for(1)
        expect(announcer).to_have_text(f"New post by tester in #general: Stream {n}")
    # Exactly then, and nothing else: the edit was never told.
    told = [(at - start, line) for at, line in page.evaluate("window.__told")]
    burst_at = GATHER_MS + TOLD_EVERY_MS + GATHER_MS
    assert told == [
        (GATHER_MS, "New post by tester in #general: Fire drill at 3 pm"),
        (burst_at, burst),
        *(
            (burst_at + TOLD_EVERY_MS * (n + 1), f"New post by tester in #general: Stream {n}")
            for n in range(3)
        ),
    ], told


# -- validation --------------------------------------------------------------------------


def test_compose_form_shows_validation_errors_inline(
    server: Server, context: BrowserContext
) -> None:
    sign_in(context, server, server.token("Grace", "writer")).close()
    page = open_live(context, server.url)
    form = page.locator("#compose")
    error = page.locator("#compose .error")

    # Empty body: an inline error, nothing posted.
    form.get_by_role("button", name="Post").click()
    expect(error).to_be_visible()
    expect(error).to_have_text("The post must not be empty.")
    # Said by the field too, not only by the alert.
    field = form.get_by_label("Post")
    expect(field).to_have_attribute("aria-invalid", "true")
    expect(field).to_have_attribute("aria-describedby", "compose-error")
    expect(form.locator(".hint strong")).to_have_text("Grace")

    # A body over the limit (the textarea's maxlength stops people, not every client):
    # the error says how long a post may be, and the typed text survives.
    limit = int(form.get_by_label("Post").get_attribute("maxlength") or 0)
    assert limit > 0
    too_long = "Lunch is served. " + "x" * limit
    form.get_by_label("Post").evaluate("el => el.removeAttribute('maxlength')")
    form.get_by_label("Post").fill(too_long)
    form.get_by_role("button", name="Post").click()
    expect(error).to_contain_text(f"longer than {limit} characters")
    expect(form.get_by_label("Post")).to_have_value(too_long)
    # The form came back whole: the limit is on the textarea again.
    expect(form.get_by_label("Post")).to_have_attribute("maxlength", str(limit))

    assert api_posts(server) == []
    expect(page.locator("#posts .post")).to_have_count(0)
    expect(page.locator("#empty")).to_be_visible()

    # Fixing the mistake posts, clears the body and removes the error.
    form.get_by_label("Post").fill("Lunch is served")
    form.get_by_role("button", name="Post").click()
    expect(page.locator("#posts .post .body")).to_have_text("Lunch is served", timeout=LIVE_MS)
    expect(page.locator("#posts .post .author")).to_have_text("Grace")
    expect(error).to_have_count(0)
    expect(form.get_by_label("Post")).to_have_value("")
    assert len(api_posts(server)) == 1
    assert_not_reloaded(page)


def test_compose_form_says_so_when_the_channel_was_archived_meanwhile(
    server: Server, context: BrowserContext
) -> None:
    sign_in(context, server, server.token("Grace", "writer")).close()
    page = open_live(context, f"{server.url}/channels/general")
    ok(server.client.post("/api/channels/general/archive"))
    form = page.locator("#compose")
    form.get_by_label("Post").fill("Is anyone still here?")
    form.get_by_role("button", name="Post").click()
    expect(form.locator(".error")).to_contain_text("archived")
    expect(form.get_by_label("Post")).to_have_value("Is anyone still here?")
    assert api_posts(server) == []
    assert_not_reloaded(page)


# -- channel pages ---------------------------------------------------------------------


def test_channel_page_receives_only_its_channel(server: Server, context: BrowserContext) -> None:
    sign_in(context, server, server.token("Lin", "writer")).close()
    channel_page = open_live(context, f"{server.url}/channels/announcements")
    dashboard = open_live(context, server.url)
    expect(channel_page.locator("h1")).to_have_text("Announcements")

    general_id = server.post("Cake in the kitchen", channel="general")["post"]["id"]
    news_id = server.post("Office closed on Friday", channel="announcements")["post"]["id"]

    # The dashboard gets both, in order: the general event was sent first.
    expect(post_el(dashboard, news_id)).to_be_visible(timeout=LIVE_MS)
    expect(post_el(dashboard, general_id)).to_be_visible()
    # One stream delivers in id order, so once the later announcement is on the
    # channel page, the earlier general post would already be there if it leaked.
    expect(post_el(channel_page, news_id)).to_be_visible(timeout=LIVE_MS)
    expect(post_el(channel_page, news_id).locator(".channel")).to_have_text("#announcements")
    expect(post_el(channel_page, general_id)).to_have_count(0)

    # An edit of a general post does not reach the channel page either.
    ok(server.client.patch(f"/api/posts/{general_id}", json={"body": "Cake is gone"}))
    ok(server.client.patch(f"/api/posts/{news_id}", json={"body": "Office open on Friday"}))
    expect(post_el(channel_page, news_id).locator(".body")).to_have_text(
        "Office open on Friday", timeout=LIVE_MS
    )
    expect(channel_page.locator("#posts .post")).to_have_count(1)
    expect(channel_page.get_by_text("Cake")).to_have_count(0)

    # The channel page's own form posts to its channel.
    form = channel_page.locator("#compose")
    expect(form.locator("select")).to_have_count(0)
    form.get_by_label("Post").fill("New badge readers")
    form.get_by_role("button", name="Post").click()
    expect(channel_page.locator("#posts .post")).to_have_count(2, timeout=LIVE_MS)
    # In the list: the screen readers' announcer may say the same words meanwhile.
    new = dashboard.locator("#posts").get_by_text("New badge readers")
    expect(new).to_be_visible(timeout=LIVE_MS)
    assert [(p["author"], p["body"]) for p in api_posts(server, "announcements")] == [
        ("Lin", "New badge readers"),
        ("tester", "Office open on Friday"),
    ]
    assert_not_reloaded(channel_page)


# -- screenshots for the docs ------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_dashboard_screenshots(
    server: Server,
    browser: Browser,
    problems: Problems,
    scheme: Literal["light", "dark"],
    screenshots: Path,
) -> None:
    seed_sample_feed(server)
    sizes = {"laptop": (LAPTOP, 1, False), "phone": (PHONE, 2, True)}
    for name, (viewport, scale, mobile) in sizes.items():
        ctx = browser.new_context(
            viewport=viewport,
            device_scale_factor=scale,
            is_mobile=mobile,
            has_touch=mobile,
            color_scheme=scheme,
            locale="en-US",
            timezone_id="UTC",
        )
        ctx.on("page", problems.watch)
        try:
            # As a writer sees it: with the compose form, and their name in the top bar.
            sign_in(ctx, server, server.token(SCREENSHOT_VIEWER, "writer")).close()
            page = open_live(ctx, server.url, frozen=FROZEN_NOW)
            expect(page.locator(".who")).to_contain_text(SCREENSHOT_VIEWER)
            # Who posts is shown on every screen size (the Markdown hint may go on phones).
            expect(page.locator("#compose").get_by_text("Posting as")).to_be_visible()
            expect(page.locator("#posts .post")).to_have_count(len(SAMPLE_POSTS))
            pinned = page.locator("#posts .post.pinned")
            expect(pinned.locator(".tag.pin")).to_be_visible()
            expect(page.locator("#posts .tag.edited")).to_have_count(1)
            assert top(pinned) == min(top(p) for p in page.locator("#posts .post").all())
            # Nothing may overflow sideways on a small screen.
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= viewport["width"], f"{name}: page is {width}px wide"
            page.screenshot(
                path=screenshots / f"dashboard-{name}-{scheme}.png", animations="disabled"
            )
        finally:
            ctx.close()
    problems.assert_none()
