"""Replies in a real Chromium against a real ``feed serve``: two people answering each
other live, a reply written with the keyboard alone, and a dashboard with an open
thread that converges to the database through a server restart.

As in test_browser, every page's stream is open (``open_live``) before anything is
published, and every wait has a deadline.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from tests.browser import (
    LIVE_MS,
    OPEN_MS,
    Problems,
    browser,
    context,
    database,
    new_context,
    ok,
    open_live,
    post_el,
    problems,
    shown_ids,
    sign_in,
    wait_applied,
    wait_true,
)
from tests.conftest import Server
from tests.test_soak import OUTAGE

pytestmark = pytest.mark.browser
__all__ = ["browser", "context", "database", "problems"]

HEARTBEAT = 0.5
RETRY_MS = 1000


def summary(page: Page, parent: int) -> Any:
    return page.locator(f"#replies-{parent}")


def thread_replies(page: Page, parent: int) -> list[tuple[str, str]]:
    """The replies shown in the open thread of ``parent``, in order: (author, text)."""
    found: list[tuple[str, str]] = page.eval_on_selector_all(
        f"#replies-list-{parent} > .reply",
        "els => els.map(el => [el.querySelector('.author').textContent,"
        " el.querySelector('.body').textContent.trim()])",
    )
    return [tuple(pair) for pair in found]  # type: ignore[misc]


def open_thread(page: Page, parent: int) -> None:
    page.locator(f"#post-{parent} .thread-toggle").click()
    expect(page.locator(f"#thread-{parent}")).to_be_visible(timeout=OPEN_MS)
    expect(page.locator(f"#reply-form-{parent}")).to_be_visible()


def send_reply(page: Page, parent: int, text: str) -> None:
    form = page.locator(f"#reply-form-{parent}")
    form.get_by_label("Reply").fill(text)
    form.get_by_role("button", name="Reply").click()
    expect(page.locator(f"#reply-form-{parent}").get_by_label("Reply")).to_have_value("")


def test_two_people_reply_and_each_sees_the_others_reply_live(
    server: Server, context: BrowserContext, browser: Browser, problems: Problems
) -> None:
    parent = server.post("Lunch on Friday?")["post"]["id"]
    other = server.post("Unrelated news")["post"]["id"]
    sign_in(context, server, server.token("Ada", "writer")).close()
    ada = open_live(context, server.url)
    bo_context = new_context(browser, problems)
    sign_in(bo_context, server, server.token("Bo", "writer")).close()
    bo = open_live(bo_context, server.url)
    for page in (ada, bo):
        expect(summary(page, parent)).to_have_text("No replies yet")
    open_thread(ada, parent)
    open_thread(bo, parent)

    send_reply(ada, parent, "Yes, **count me in**")
    for page in (ada, bo):
        expect(summary(page, parent)).to_have_text("1 reply · Ada", timeout=LIVE_MS)
        expect(page.locator(f"#replies-list-{parent} > .reply")).to_have_count(1, timeout=LIVE_MS)
    assert thread_replies(bo, parent) == [("Ada", "Yes, count me in")]
    # Told to screen readers where the thread is open, as new posts are.
    expect(bo.locator("#announcer")).to_have_text(
        "New reply by Ada to tester: Yes, count me in", timeout=LIVE_MS
    )
    expect(bo.locator(f"#replies-list-{parent} strong")).to_have_text("count me in")

    send_reply(bo, parent, "Me too")
    for page in (ada, bo):
        expect(summary(page, parent)).to_have_text("2 replies · Bo, Ada", timeout=LIVE_MS)
        expect(page.locator(f"#replies-list-{parent} > .reply")).to_have_count(2, timeout=LIVE_MS)
        assert thread_replies(page, parent) == [("Ada", "Yes, count me in"), ("Bo", "Me too")]
        # The list shows cards, not replies; the other card is untouched.
        assert shown_ids(page) == [other, parent]
        expect(summary(page, other)).to_have_text("No replies yet")

    # An edit of the parent replaces its card and keeps the open thread.
    ok(server.client.patch(f"/api/posts/{parent}", json={"body": "Lunch on Friday? 12:30"}))
    for page in (ada, bo):
        expect(post_el(page, parent).locator(":scope > .body")).to_have_text(
            "Lunch on Friday? 12:30", timeout=LIVE_MS
        )
        assert thread_replies(page, parent) == [("Ada", "Yes, count me in"), ("Bo", "Me too")]
    # Deleting the post takes the thread with it, everywhere.
    ok(server.client.delete(f"/api/posts/{parent}"))
    for page in (ada, bo):
        expect(post_el(page, parent)).to_have_count(0, timeout=LIVE_MS)
        expect(page.locator(".reply")).to_have_count(0)
    bo_context.close()


def test_a_thread_is_opened_written_in_and_sent_with_the_keyboard_alone(
    server: Server, context: BrowserContext
) -> None:
    parent = server.post("Keyboard thread")["post"]["id"]
    sign_in(context, server, server.token("Kay", "writer")).close()
    page = open_live(context, server.url)
    toggle = page.locator(f"#post-{parent} .thread-toggle")
    for _ in range(60):  # Tab through the page to the toggle, as a person would
        if toggle.evaluate("el => el === document.activeElement"):
            break
        page.keyboard.press("Tab")
    else:
        raise AssertionError("Tab never reached the thread's toggle")
    expect(toggle).to_have_attribute("aria-expanded", "false")
    page.keyboard.press("Enter")
    expect(toggle).to_have_attribute("aria-expanded", "true", timeout=OPEN_MS)
    expect(toggle).to_be_focused()
    box = page.locator(f"#reply-form-{parent} textarea")
    for _ in range(5):
        if box.evaluate("el => el === document.activeElement"):
            break
        page.keyboard.press("Tab")
    expect(box).to_be_focused()
    page.keyboard.type("Typed, *not* clicked")
    page.keyboard.press("Tab")
    expect(page.locator(f"#reply-form-{parent} button")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator(f"#replies-list-{parent} > .reply")).to_have_count(1, timeout=LIVE_MS)
    assert thread_replies(page, parent) == [("Kay", "Typed, not clicked")]
    expect(summary(page, parent)).to_have_text("1 reply · Kay")
    # The form is back, empty, with the focus in it for the next reply.
    expect(page.locator(f"#reply-form-{parent} textarea")).to_have_value("")
    expect(page.locator(f"#reply-form-{parent} textarea")).to_be_focused()


def test_a_dashboard_with_an_open_thread_converges_through_a_server_restart(
    make_server: Callable[..., Server], context: BrowserContext, problems: Problems
) -> None:
    problems.allow(*OUTAGE)
    first = make_server(heartbeat=HEARTBEAT, retry_ms=RETRY_MS)
    parent = first.post("Before the restart")["post"]["id"]
    kept = first.client.post(f"/api/posts/{parent}/replies", json={"body": "kept"})
    gone = first.client.post(f"/api/posts/{parent}/replies", json={"body": "to be deleted"})
    edited = first.client.post(f"/api/posts/{parent}/replies", json={"body": "to be edited"})
    sign_in(context, first, first.token("Ada", "writer")).close()
    page = open_live(context, first.url)
    open_thread(page, parent)
    assert [text for _, text in thread_replies(page, parent)] == [
        "kept",
        "to be deleted",
        "to be edited",
    ]

    first.stop(signal.SIGKILL)
    # Another process writes while this page's server is down.
    other = make_server(database=first.database)
    ok(other.client.delete(f"/api/posts/{gone.json()['post']['id']}"))
    ok(other.client.patch(f"/api/posts/{edited.json()['post']['id']}", json={"body": "edited"}))
    new = other.client.post(f"/api/posts/{parent}/replies", json={"body": "while down"}).json()
    elsewhere = other.post("A new post")["post"]["id"]
    last = other.client.get("/readyz").json()["last_event_delivered"]
    other.stop()

    restarted = make_server(
        database=first.database, port=first.port, heartbeat=HEARTBEAT, retry_ms=RETRY_MS
    )
    wait_applied(page, max(last, new["event_id"]), timeout=4 * RETRY_MS + OPEN_MS)
    truth = restarted.client.get(f"/api/posts/{parent}/replies").json()["replies"]
    assert [text for _, text in thread_replies(page, parent)] == [
        r["body"] for r in reversed(truth)
    ]
    assert [text for _, text in thread_replies(page, parent)] == ["kept", "edited", "while down"]
    expect(summary(page, parent)).to_have_text("3 replies · tester")
    assert shown_ids(page) == [elsewhere, parent]
    wait_true(page, "() => document.getElementById('live').dataset.state === 'live'")
    assert kept.status_code == 201


def test_a_threads_own_page_is_live_keeps_its_replies_through_an_edit_and_ends_with_its_post(
    server: Server, context: BrowserContext
) -> None:
    parent = server.post("Thread page")["post"]["id"]
    server.client.post(f"/api/posts/{parent}/replies", json={"body": "first"})
    elsewhere = server.post("Not in this thread")["post"]["id"]
    sign_in(context, server, server.token("Ada", "writer")).close()
    page = open_live(context, f"{server.url}/posts/{parent}")
    assert thread_replies(page, parent) == [("tester", "first")]
    send_reply(page, parent, "second")
    expect(page.locator(f"#replies-list-{parent} > .reply")).to_have_count(2, timeout=LIVE_MS)
    expect(summary(page, parent)).to_have_text("2 replies · Ada, tester")
    ok(server.client.patch(f"/api/posts/{parent}", json={"body": "Thread page, edited"}))
    expect(post_el(page, parent).locator(":scope > .body")).to_have_text(
        "Thread page, edited", timeout=LIVE_MS
    )
    assert thread_replies(page, parent) == [("tester", "first"), ("Ada", "second")]
    # Its stream is the thread's alone: another post's change never reaches it.
    ok(server.client.patch(f"/api/posts/{elsewhere}", json={"body": "changed"}))
    last = ok(server.client.delete(f"/api/posts/{parent}"))["event_id"]
    wait_applied(page, last)
    expect(post_el(page, parent)).to_have_count(0)
    expect(page.locator(".reply")).to_have_count(0)
    assert page.locator(f"#post-{elsewhere}").count() == 0
    # It says so, rather than show an empty page as live.
    expect(page.locator("#posts .gone")).to_have_text(
        "This post was deleted, or you may no longer read it."
    )
    expect(page.locator("#live")).to_have_attribute("data-state", "gone")


def reply_to(server: Server, parent: int, body: str) -> dict[str, Any]:
    answer = server.client.post(f"/api/posts/{parent}/replies", json={"body": body})
    assert answer.status_code == 201, answer.text
    made: dict[str, Any] = answer.json()
    return made


def test_an_edit_of_a_reply_a_thread_does_not_show_leaves_it_out(
    make_server: Callable[..., Server], context: BrowserContext
) -> None:
    server = make_server(page_size=3)
    parent = server.post("A long thread")["post"]["id"]
    replies = [reply_to(server, parent, f"reply {n}")["post"]["id"] for n in range(4)]
    page = open_live(context, f"{server.url}/posts/{parent}")
    shown = f"#replies-list-{parent} > .reply"
    newest = [f"post-{r}" for r in replies[1:]]
    assert page.eval_on_selector_all(shown, "els => els.map(el => el.id)") == newest
    # The oldest reply is one of the earlier ones the page leaves out: its edit changes
    # nothing here, as a fresh render would not show it either.
    edited = ok(server.client.patch(f"/api/posts/{replies[0]}", json={"body": "edited"}))
    wait_applied(page, edited["event_id"])
    assert page.eval_on_selector_all(shown, "els => els.map(el => el.id)") == newest
    # A shown one's edit, and a new reply, still come in.
    ok(server.client.patch(f"/api/posts/{replies[1]}", json={"body": "edited too"}))
    new = reply_to(server, parent, "the newest")
    wait_applied(page, new["event_id"])
    assert page.eval_on_selector_all(shown, "els => els.map(el => el.id)") == [
        *newest,
        f"post-{new['post']['id']}",
    ]
    assert thread_replies(page, parent)[0] == ("tester", "edited too")


def test_a_list_refetched_after_a_resync_keeps_an_open_thread_and_what_is_typed(
    make_server: Callable[..., Server], context: BrowserContext, problems: Problems
) -> None:
    server = make_server(access_recheck=0.2, heartbeat=1)
    parent = server.post("Lunch on Friday?")["post"]["id"]
    server.post("Opening hours", channel="announcements")
    page = sign_in(context, server, server.token("bo"))
    open_thread(page, parent)
    box = page.locator(f"#reply-form-{parent}").get_by_label("Reply")
    box.fill("A long reply I am half way thro")
    box.focus()
    # A channel bo does not belong to is made private: the list is re-fetched.
    ok(server.client.patch("/api/channels/announcements", json={"private": True}))
    wait_true(
        page, "() => !document.querySelector('#posts .post .channel[href$=\"/announcements\"]')"
    )
    expect(page.locator(f"#thread-{parent}")).to_be_visible()
    expect(box).to_have_value("A long reply I am half way thro")
    expect(box).to_be_focused()
