"""Many tabs of one browser profile, in a real Chromium over plain HTTP/1.1.

A browser opens at most six connections to one host over HTTP/1.1, and every open
EventSource holds one. These tests open more tabs than that in one browser context
(one profile: its cookies, Web Locks and BroadcastChannels) and check that the tabs
share one stream (feed-tabs.js): every tab loads, stays live, applies each event once
and in order, and can still reach the API; closing or freezing the tab that holds the
stream hands it to another tab without a gap; kiosks and browsers without the APIs
keep a stream of their own.

``window.feedStream`` (feed-stream.js) says how a tab gets its events (``mode``: ``leader``
holds the shared stream, ``follower`` listens to the leader, ``own`` has its own
stream) and how many EventSources it built (``created``).
Waits are Playwright waits with deadlines, never sleeps.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from playwright.sync_api import BrowserContext, Page, expect

from tests.browser import (
    Database,
    Problems,
    browser,
    context,
    database,
    open_live,
    post_el,
    problems,
    shown_ids,
    sign_in,
    wait_applied,
    wait_true,
)
from tests.conftest import Server

pytestmark = pytest.mark.browser
__all__ = ["browser", "context", "database", "problems"]  # fixtures

TABS = 12  # twice what HTTP/1.1 allows a browser per host
HEARTBEAT = 1.0  # seconds, where a test waits on what a heartbeat interval bounds
SHOWN_MS = 2_000  # a new post is on every tab within 2 s
HAND_OVER_MS = 1_500  # another tab holds the stream about a second after its holder left

# An API call from a tab, answered or not within two seconds.
FETCH_API = """async () => {
    const answer = fetch('/api/channels').then(r => r.status);
    const late = new Promise(resolve => setTimeout(() => resolve('no answer'), 2000));
    return await Promise.race([answer, late]);
}"""

# A browser without Web Locks and BroadcastChannel, as some embedded ones are.
WITHOUT_SHARING = "delete Navigator.prototype.locks; delete window.BroadcastChannel;"


def stream_state(page: Page) -> dict[str, Any]:
    state: dict[str, Any] = page.evaluate("({...window.feedStream})")
    return state


def eventsources(pages: list[Page]) -> int:
    return sum(int(stream_state(p)["created"]) for p in pages)


def leader_of(pages: list[Page]) -> Page:
    leaders = [p for p in pages if stream_state(p).get("mode") == "leader"]
    assert len(leaders) == 1, [stream_state(p) for p in pages]
    return leaders[0]


def expected_ids(database: Database, channel: str | None = None) -> list[int]:
    return [p.id for p in database.posts() if channel is None or p.channel == channel]


def test_twelve_dashboard_tabs_load_stay_live_and_reach_the_api(
    server: Server, context: BrowserContext, database: Database
) -> None:
    pages = [open_live(context, server.url) for _ in range(TABS)]
    # One stream for the whole profile: the other tabs get its events through the browser.
    assert eventsources(pages) == 1
    assert sorted(stream_state(p)["mode"] for p in pages) == ["follower"] * (TABS - 1) + ["leader"]

    new = server.post("Twelve tabs, one stream")["post"]["id"]
    started = time.monotonic()
    for page in pages:
        remaining = max(0.0, SHOWN_MS - 1000 * (time.monotonic() - started))
        expect(post_el(page, new)).to_be_visible(timeout=remaining)
    for page in pages:
        assert shown_ids(page) == expected_ids(database)
        assert page.evaluate(FETCH_API) == 200


def test_closing_the_tab_holding_the_stream_hands_it_over_without_a_gap(
    server: Server, context: BrowserContext, database: Database
) -> None:
    first = server.post("Before anyone looked", channel="announcements")["post"]["id"]
    pages = [open_live(context, server.url) for _ in range(3)]
    pages.append(open_live(context, f"{server.url}/channels/announcements"))
    pages.append(open_live(context, f"{server.url}/channels/general"))
    assert eventsources(pages) == 1
    wait_applied(pages[-1], database.latest())

    holder = leader_of(pages)
    rest = [p for p in pages if p is not holder]
    holder.close()
    closed = time.monotonic()
    # Posts written while nobody holds the stream, in both channels.
    during = [
        database.post(f"During the hand-over {n}", channel=("general", "announcements")[n % 2])
        for n in range(4)
    ]
    last = during[-1].event_id
    deadline = closed + HAND_OVER_MS / 1000
    while not any(stream_state(p)["mode"] == "leader" for p in rest):
        assert time.monotonic() < deadline, "no tab took the stream over"
        rest[0].wait_for_timeout(20)  # polling the pages, with a deadline
    for page in rest:
        remaining = max(0.0, HAND_OVER_MS + SHOWN_MS - 1000 * (time.monotonic() - closed))
        wait_applied(page, last, timeout=remaining)
    leader_of(rest)
    assert eventsources(rest) == 1  # the new holder's stream

    # Every tab ends with the exact list its URL asks for, by ids and order, each once.
    for page in rest:
        channel = page.evaluate("document.getElementById('presence').dataset.channel") or None
        assert shown_ids(page) == expected_ids(database, channel), page.url
    assert first in shown_ids(rest[-2])
    assert first not in shown_ids(rest[-1])

    # And the new holder keeps them live.
    after = server.post("After the hand-over", channel="general")["post"]["id"]
    for page in rest:
        channel = page.evaluate("document.getElementById('presence').dataset.channel") or None
        wait_applied(page, database.latest(), timeout=SHOWN_MS)
        assert shown_ids(page) == expected_ids(database, channel), page.url
        assert (after in shown_ids(page)) == (channel != "announcements")


def test_a_frozen_holder_hands_the_stream_over_and_catches_up_when_it_thaws(
    server: Server, context: BrowserContext, database: Database
) -> None:
    pages = [open_live(context, server.url) for _ in range(3)]
    holder = leader_of(pages)
    rest = [p for p in pages if p is not holder]
    # The Page Lifecycle events as the browser sends them. (Chromium under Playwright
    # does not freeze a page on request, so the page's code keeps running here; what
    # is tested is what the page does when told.)
    holder.evaluate("document.dispatchEvent(new Event('freeze'))")
    during = server.post("While the holder is frozen")["event_id"]
    for page in rest:
        wait_applied(page, during, timeout=HAND_OVER_MS + SHOWN_MS)
    leader_of(rest)

    holder.evaluate("document.dispatchEvent(new Event('resume'))")
    wait_applied(holder, during, timeout=SHOWN_MS)
    after = server.post("After the thaw")["event_id"]
    for page in pages:
        wait_applied(page, after, timeout=SHOWN_MS)
        assert shown_ids(page) == expected_ids(database)
    assert eventsources(pages) == 2  # the frozen holder's, closed, and its successor's
    assert [stream_state(p)["mode"] for p in pages].count("leader") == 1


def test_a_kiosk_keeps_its_own_stream(
    server: Server, context: BrowserContext, database: Database
) -> None:
    dashboards = [open_live(context, server.url) for _ in range(2)]
    kiosk = open_live(context, f"{server.url}/kiosk")
    assert stream_state(kiosk)["mode"] == "own"
    assert stream_state(kiosk)["created"] == 1
    assert eventsources(dashboards) == 1
    new = server.post("On the wall and on the desk")["event_id"]
    for page in [*dashboards, kiosk]:
        wait_applied(page, new, timeout=SHOWN_MS)
        assert shown_ids(page) == expected_ids(database)


def test_without_locks_or_broadcast_channels_each_tab_has_its_own_stream(
    server: Server, context: BrowserContext, database: Database
) -> None:
    context.add_init_script(WITHOUT_SHARING)
    pages = [open_live(context, server.url) for _ in range(3)]
    for page in pages:
        assert page.evaluate("typeof BroadcastChannel") == "undefined"
        assert stream_state(page)["mode"] == "own"
    assert eventsources(pages) == 3
    new = server.post("Every tab on its own")["event_id"]
    for page in pages:
        wait_applied(page, new, timeout=SHOWN_MS)
        assert shown_ids(page) == expected_ids(database)


def test_a_new_tab_joins_the_shared_stream_from_its_own_position(
    make_server: Callable[..., Server], context: BrowserContext, database: Database
) -> None:
    server = make_server()
    first = open_live(context, server.url)
    # Written between the first tab's render and the second's: the second renders them.
    ids = [database.post(f"Early {n}").post.id for n in range(3)]
    wait_applied(first, database.latest())
    second = open_live(context, server.url)
    assert stream_state(second)["mode"] == "follower"
    more = database.post("Later").event_id
    for page in (first, second):
        wait_applied(page, more, timeout=SHOWN_MS)
        assert shown_ids(page) == expected_ids(database)
    assert set(ids) <= set(shown_ids(second))
    wait_true(second, "() => window.feedStream.created === 0")


def test_a_tab_further_behind_than_the_holder_keeps_re_fetches_its_list(
    server: Server, context: BrowserContext, database: Database
) -> None:
    holder = open_live(context, server.url)
    behind, successor = (open_live(context, server.url) for _ in range(2))
    assert stream_state(holder)["mode"] == "leader"
    # Frozen, `behind` hears nothing; it is not in the queue for the stream either.
    behind.evaluate("document.dispatchEvent(new Event('freeze'))")
    missed = [server.post(f"Missed {n}")["event_id"] for n in range(2)]
    wait_applied(successor, missed[-1])
    # The successor takes over from where it is: the new holder never had what `behind`
    # missed, so `behind` can only get it from a fresh list.
    holder.close()
    wait_true(successor, "() => window.feedStream.mode === 'leader'", timeout=HAND_OVER_MS)
    after = server.post("After the hand-over")["event_id"]
    wait_applied(successor, after, timeout=SHOWN_MS)
    with behind.expect_response(lambda r: "/partials/posts" in r.url):
        behind.evaluate("document.dispatchEvent(new Event('resume'))")
    wait_applied(behind, after, timeout=SHOWN_MS)
    for page in (behind, successor):
        assert shown_ids(page) == expected_ids(database)
    assert stream_state(behind)["mode"] == "follower"


THREAD_TABS = 8  # more than the six connections HTTP/1.1 allows a browser per host


def test_thread_pages_share_the_profiles_stream_and_show_only_their_thread(
    server: Server, context: BrowserContext
) -> None:
    parents = [server.post(f"Thread {n}")["post"]["id"] for n in range(THREAD_TABS)]
    # A page that does not load within a few seconds waits for a connection that an
    # open stream holds: no point waiting out Playwright's half a minute.
    context.set_default_navigation_timeout(5_000)
    pages = [open_live(context, f"{server.url}/posts/{parent}") for parent in parents]
    dashboard = open_live(context, server.url)
    assert eventsources([*pages, dashboard]) == 1

    first = server.client.post(f"/api/posts/{parents[0]}/replies", json={"body": "to the first"})
    last = server.client.post(f"/api/posts/{parents[-1]}/replies", json={"body": "to the last"})
    elsewhere = server.post("Not in any of these threads")["event_id"]
    replied = {parents[0]: first.json()["post"]["id"], parents[-1]: last.json()["post"]["id"]}
    for parent, page in zip(parents, pages, strict=True):
        wait_applied(page, elsewhere, timeout=SHOWN_MS)
        # A thread's page shows its post and its replies, never another post.
        assert shown_ids(page) == [parent]
        replies = page.eval_on_selector_all(".reply", "els => els.map(el => el.id)")
        assert replies == ([f"post-{replied[parent]}"] if parent in replied else [])
        assert page.evaluate(FETCH_API) == 200


def test_signing_out_in_one_tab_shows_every_other_tab_signed_out(
    server: Server, context: BrowserContext, problems: Problems
) -> None:
    problems.allow("htmx:sseError", "[object Event]")  # the stream that ended
    holder = sign_in(context, server, server.token("ann"))
    other = open_live(context, server.url)
    assert {stream_state(p)["mode"] for p in (holder, other)} == {"leader", "follower"}
    other.get_by_role("button", name="Sign out").click()
    # The server ends the session's stream with a word of why: the tab holding it
    # reloads, signed out, rather than reconnect as nobody and go on saying "Live".
    expect(holder.get_by_role("link", name="Sign in")).to_be_visible(timeout=SHOWN_MS)
    expect(holder.get_by_role("button", name="Sign out")).to_be_hidden()


@pytest.mark.parametrize("path", ["/kiosk", "/"])
def test_a_channel_made_private_or_public_leaves_or_joins_open_pages(
    make_server: Callable[..., Server], context: BrowserContext, database: Database, path: str
) -> None:
    # Told all at once, each page re-fetches within a heartbeat interval, at random.
    server = make_server(heartbeat=HEARTBEAT)
    told_ms = HEARTBEAT * 1000 + SHOWN_MS
    general = server.post("in general")["post"]["id"]
    news = server.post("in announcements", channel="announcements")["post"]["id"]
    page = open_live(context, f"{server.url}{path}")
    assert shown_ids(page) == [news, general]
    # No event of the log brings a channel's old posts in or takes them out: the
    # stream tells the page to fetch its list again.
    assert server.client.patch("/api/channels/general", json={"private": True}).is_success
    wait_true(page, "id => !document.getElementById('post-' + id)", general, told_ms)
    assert shown_ids(page) == [news]
    assert server.client.patch("/api/channels/general", json={"private": False}).is_success
    expect(post_el(page, general)).to_be_visible(timeout=told_ms)
    assert shown_ids(page) == expected_ids(database)
    assert page.evaluate("window.__notReloaded") is True
