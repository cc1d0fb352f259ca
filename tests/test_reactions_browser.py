"""Reactions in a real Chromium: two people see each other's reactions live, a chip
toggles from the keyboard, the "mine" mark stays on its own reader's pages (other
tabs of that reader included), and a dashboard and a kiosk converge to the database's
counts across a server restart."""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Locator, Page, expect

from tests.browser import (
    LIVE_MS,
    OPEN_MS,
    Problems,
    browser,
    context,
    new_context,
    open_live,
    problems,
    sign_in,
)
from tests.conftest import Server
from tests.test_kiosk import OUTAGE

pytestmark = pytest.mark.browser
__all__ = ["browser", "context", "problems"]

PARTY, THUMBS, HEART = "\U0001f389", "\U0001f44d", "\u2764\ufe0f"
WINDOW = 0.2
# A toggle reaches other screens within a second, plus the reaction window.
REACH_MS = LIVE_MS + int(WINDOW * 1000) + 1000


def chip(page: Page, post_id: int, reaction: str) -> Locator:
    return page.locator(f'#reactions-{post_id} .chip[data-reaction="{reaction}"]')


def counts_of(server: Server, post_id: int) -> dict[str, int]:
    post = server.client.get(f"/api/posts/{post_id}").json()["post"]
    return {r["reaction"]: r["count"] for r in post["reactions"]}


def test_two_people_react_and_each_sees_the_other_live_with_only_their_own_marked(
    make_server: Callable[..., Server], browser: Browser, problems: Problems
) -> None:
    server = make_server(reaction_window=WINDOW)
    post_id = server.post("react to me")["post"]["id"]
    ada_context = new_context(browser, problems)
    bo_context = new_context(browser, problems)
    sign_in(ada_context, server, server.token("ada")).close()
    sign_in(bo_context, server, server.token("bo", "reader")).close()
    ada, bo = open_live(ada_context, server.url), open_live(bo_context, server.url)

    # Ada clicks: hers at once, and Bo sees the count, not marked as his.
    chip(ada, post_id, PARTY).click()
    expect(chip(ada, post_id, PARTY)).to_have_attribute("aria-pressed", "true")
    expect(chip(bo, post_id, PARTY)).to_have_attribute("data-count", "1", timeout=REACH_MS)
    expect(chip(bo, post_id, PARTY)).to_have_attribute("aria-pressed", "false")
    expect(chip(ada, post_id, PARTY)).to_have_attribute("data-count", "1", timeout=REACH_MS)
    # Who reacted shows on keyboard focus too.
    chip(bo, post_id, PARTY).focus()
    tip = bo.locator(f"#{chip(bo, post_id, PARTY).get_attribute('aria-describedby')}")
    expect(tip).to_be_visible()
    expect(tip).to_have_text("ada")

    # Bo, by keyboard only: Tab from the post's channel link to the first chip, Enter;
    # Tab to the next, Space. Each chip is a button on a page whose reader may react.
    assert chip(bo, post_id, THUMBS).evaluate("el => el.tagName") == "BUTTON"
    bo.locator(f"#post-{post_id} a.channel").focus()
    bo.keyboard.press("Tab")
    expect(chip(bo, post_id, THUMBS)).to_be_focused()
    bo.keyboard.press("Enter")
    expect(chip(bo, post_id, THUMBS)).to_have_attribute("aria-pressed", "true")
    bo.keyboard.press("Tab")  # the tooltip between takes no focus
    expect(chip(bo, post_id, HEART)).to_be_focused()
    bo.keyboard.press(" ")
    expect(chip(bo, post_id, HEART)).to_have_attribute("aria-pressed", "true")
    for reaction in (THUMBS, HEART):
        expect(chip(ada, post_id, reaction)).to_have_attribute("data-count", "1", timeout=REACH_MS)
        expect(chip(ada, post_id, reaction)).to_have_attribute("aria-pressed", "false")
    # The focus stayed on Bo's chip through the swaps that came back.
    expect(chip(bo, post_id, HEART)).to_be_focused()

    # Ada takes hers back in another tab: her first tab unmarks it too.
    other_tab = open_live(ada_context, server.url)
    expect(chip(other_tab, post_id, PARTY)).to_have_attribute("aria-pressed", "true")
    chip(other_tab, post_id, PARTY).click()
    expect(chip(ada, post_id, PARTY)).to_have_attribute("data-count", "0", timeout=REACH_MS)
    expect(chip(ada, post_id, PARTY)).to_have_attribute("aria-pressed", "false")
    expect(chip(bo, post_id, PARTY)).to_have_attribute("data-count", "0", timeout=REACH_MS)

    assert counts_of(server, post_id) == {THUMBS: 1, HEART: 1}
    for page in (ada, other_tab):
        assert page.locator('.chip[aria-pressed="true"]').count() == 0
    assert bo.locator('.chip[aria-pressed="true"]').count() == 2
    problems.assert_none()
    ada_context.close()
    bo_context.close()


def test_a_dashboard_and_a_kiosk_converge_to_the_database_counts_after_a_restart(
    make_server: Callable[..., Server], context: BrowserContext, problems: Problems
) -> None:
    settings: dict[str, Any] = {"reaction_window": WINDOW, "retry_ms": 300}
    # The restart cuts the streams and the browser says so; nothing else may fail.
    problems.allow(*OUTAGE)
    first = make_server(**settings)
    post_id = first.post("count us")["post"]["id"]
    dashboard = open_live(context, first.url)
    kiosk = open_live(context, f"{first.url}/kiosk")
    # Nobody signed in, and the kiosk: counts, no controls.
    assert chip(dashboard, post_id, PARTY).evaluate("el => el.tagName") == "SPAN"
    expect(kiosk.locator(f"#post-{post_id}")).to_be_visible()
    expect(chip(kiosk, post_id, PARTY)).to_be_hidden()  # none given yet

    people = [first.token(f"p{n}", "reader") for n in range(6)]
    for token in people[:3]:
        ok = first.client.put(
            f"/api/posts/{post_id}/reactions/{PARTY}", headers={"Authorization": f"Bearer {token}"}
        )
        assert ok.status_code == 200
    first.stop(signal.SIGKILL)
    again = make_server(database=first.database, port=first.port, **settings)
    for token in people[3:]:
        for reaction in (PARTY, THUMBS):
            ok = again.client.put(
                f"/api/posts/{post_id}/reactions/{reaction}",
                headers={"Authorization": f"Bearer {token}"},
            )
            assert ok.status_code == 200
    stored = counts_of(again, post_id)
    assert stored == {PARTY: 6, THUMBS: 3}
    for page in (dashboard, kiosk):
        for reaction, count in stored.items():
            expect(chip(page, post_id, reaction)).to_have_attribute(
                "data-count", str(count), timeout=OPEN_MS + REACH_MS
            )
            expect(chip(page, post_id, reaction).locator(".count")).to_have_text(str(count))
    expect(chip(kiosk, post_id, PARTY)).to_be_visible()
    expect(chip(kiosk, post_id, HEART)).to_be_hidden()
    assert kiosk.locator("button.chip").count() == 0
    problems.assert_none()


def test_a_threads_page_reacts_to_replies_live_with_only_the_readers_own_marked(
    make_server: Callable[..., Server], browser: Browser, problems: Problems
) -> None:
    server = make_server(reaction_window=WINDOW)
    post_id = server.post("the lift is out")["post"]["id"]
    reply = server.client.post(f"/api/posts/{post_id}/replies", json={"body": "fixed now"})
    reply_id = reply.json()["post"]["id"]
    ada_context = new_context(browser, problems)
    bo_context = new_context(browser, problems)
    sign_in(ada_context, server, server.token("ada")).close()
    bo_token = server.token("bo", "reader")
    sign_in(bo_context, server, bo_token).close()
    thread = f"{server.url}/posts/{post_id}"
    ada, bo = open_live(ada_context, thread), open_live(bo_context, thread)

    # Ada reacts to the reply on its thread's page: hers, and Bo sees the count live.
    expect(chip(ada, reply_id, PARTY)).to_have_attribute("aria-pressed", "false")
    chip(ada, reply_id, PARTY).click()
    expect(chip(ada, reply_id, PARTY)).to_have_attribute("aria-pressed", "true")
    expect(chip(bo, reply_id, PARTY)).to_have_attribute("data-count", "1", timeout=REACH_MS)
    expect(chip(bo, reply_id, PARTY)).to_have_attribute("aria-pressed", "false")
    # Bo reacts from elsewhere (the API): his page marks it as his, Ada's only counts it.
    answer = server.client.put(
        f"/api/posts/{reply_id}/reactions/{THUMBS}", headers={"authorization": f"Bearer {bo_token}"}
    )
    assert answer.status_code == 200, answer.text
    expect(chip(ada, reply_id, THUMBS)).to_have_attribute("data-count", "1", timeout=REACH_MS)
    expect(chip(ada, reply_id, THUMBS)).to_have_attribute("aria-pressed", "false")
    expect(chip(bo, reply_id, THUMBS)).to_have_attribute("aria-pressed", "true", timeout=REACH_MS)
    # The reply's body was never swapped away by a reactions update.
    for page in (ada, bo):
        expect(page.locator(f"#post-{reply_id} .body")).to_have_text("fixed now")
    # A reload of the thread keeps the marks: they are read from the page.
    ada.reload()
    expect(chip(ada, reply_id, PARTY)).to_have_attribute("aria-pressed", "true", timeout=OPEN_MS)
    expect(chip(ada, reply_id, THUMBS)).to_have_attribute("aria-pressed", "false")
    assert counts_of(server, reply_id) == {PARTY: 1, THUMBS: 1}
