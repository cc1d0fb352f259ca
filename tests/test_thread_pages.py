"""Threads on pages (in-process): a card's reply summary, the region that opens under
it, a thread's own page, and the reply form. The live part is in test_browser_replies."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import pytest
from playwright.sync_api import BrowserContext, Page, expect
from starlette.testclient import TestClient

from tests.browser import (
    RESTART_MS,
    Problems,
    browser,
    context,
    ok,
    open_live,
    problems,
    wait_applied,
)
from tests.conftest import Server
from tests.test_browser_tabs import WITHOUT_SHARING
from tests.test_pages import article_ids, post

__all__ = ["browser", "context", "problems"]  # fixtures for the browser test


def reply(client: TestClient, parent: int, body: str) -> int:
    answer = client.post(f"/api/posts/{parent}/replies", json={"body": body})
    assert answer.status_code == 201, answer.text
    found: int = answer.json()["post"]["id"]
    return found


def test_a_card_shows_its_reply_count_and_repliers_and_lists_show_no_replies(
    client: TestClient,
) -> None:
    parent = post(client, "the plan")
    replies = [reply(client, parent, f"reply {n}") for n in range(2)]
    for url in ("/", "/channels/general", "/kiosk", "/partials/posts"):
        page = client.get(url).text
        assert article_ids(page) == [parent], url
        assert not set(replies) & set(map(int, re.findall(r'id="post-(\d+)"', page))), url
        assert re.search(rf'<span id="replies-{parent}"[^>]*>2 replies · tester</span>', page)
    # A kiosk still holds no control: the card's are added by feed-threads.js where wanted.
    kiosk = client.get("/kiosk").text
    for control in ("<form", "<button", "<textarea"):
        assert control not in kiosk


def test_a_threads_page_shows_the_post_and_its_replies_from_one_snapshot(
    client: TestClient,
) -> None:
    parent = post(client, "the plan")
    first, second = reply(client, parent, "*first*"), reply(client, parent, "second")
    page = client.get(f"/posts/{parent}")
    assert page.status_code == 200
    ids = [int(x) for x in re.findall(r'<article id="post-(\d+)"', page.text)]
    assert ids == [parent, first, second]  # the post, then its replies oldest first
    assert "<em>first</em>" in page.text
    last = client.get("/api/posts/0/replies")  # none such: 404, and no event
    assert last.status_code == 404
    newest = client.get(f"/api/posts/{parent}/replies").json()["replies"][0]
    assert newest["id"] == second
    snapshot = re.search(r'data-last-event-id="(\d+)"', page.text)
    assert snapshot is not None
    url = f"/events?format=html&amp;thread={parent}&amp;last_event_id={snapshot.group(1)}"
    assert f'sse-connect="{url}"' in page.text
    assert f'hx-post="/posts/{parent}/replies"' in page.text
    # The region under a card: the same replies, with the snapshot they reflect.
    region = client.get(f"/partials/thread/{parent}")
    assert region.headers["x-feed-last-event-id"] == snapshot.group(1)
    assert [int(x) for x in re.findall(r'<article id="post-(\d+)"', region.text)] == [
        first,
        second,
    ]
    # A reply is no thread, nor is a post that never was.
    assert client.get(f"/posts/{first}").status_code == 404
    assert client.get("/posts/999999").status_code == 404


def test_the_reply_form_replies_and_shows_errors_inline(client: TestClient) -> None:
    parent = post(client, "the plan")
    sent = client.post(f"/posts/{parent}/replies", data={"body": "from the form"})
    assert sent.status_code == 200
    assert "Replying as <strong>tester</strong>" in sent.text
    assert "from the form" not in sent.text  # cleared
    listed = client.get(f"/api/posts/{parent}/replies").json()["replies"]
    assert [(r["author"], r["body"], r["parent"]) for r in listed] == [
        ("tester", "from the form", parent)
    ]
    empty = client.post(f"/posts/{parent}/replies", data={"body": "   "})
    assert empty.status_code == 422 and 'role="alert"' in empty.text
    to_reply = client.post(f"/posts/{listed[0]['id']}/replies", data={"body": "nested kept"})
    assert to_reply.status_code == 422
    assert f"reply to post {parent} instead" in to_reply.text and "nested kept" in to_reply.text


def test_a_threads_page_and_every_other_page_open_to_anyone_offer_a_sign_in(
    client: TestClient,
) -> None:
    parent = post(client, "open to anyone")
    client.headers.pop("authorization")  # from here on, a reader who is not signed in
    for path in (f"/posts/{parent}", "/", "/channels/general", "/search?q=open", "/kiosk"):
        page = client.get(path)
        assert page.status_code == 200, (path, page.text)
        if path != "/kiosk":  # a kiosk cannot sign in
            assert f'href="/signin?next={quote(path.split("?")[0])}"' in page.text, path
    assert f'<article id="post-{parent}"' in client.get(f"/posts/{parent}").text


# -- a thread that is gone --------------------------------------------------------------

THREAD_OUTAGE = (
    "htmx:sseError",
    "[object Event]",
    "ERR_CONNECTION_REFUSED",
    "ERR_EMPTY_RESPONSE",
    "404",
)
GONE = "This post was deleted, or you may no longer read it."


@pytest.mark.parametrize("how", ["deleted", "made private"])
def test_a_thread_gone_while_its_page_was_away_says_so_once_after_a_resync(
    make_server: Callable[..., Server], context: BrowserContext, problems: Problems, how: str
) -> None:
    """The resync's re-fetch of the card finds nothing (deleted) or a 404 (no longer
    readable): the page says so once and fetches no more, instead of showing an
    empty page as live or retrying the 404 with backoff for ever."""
    problems.allow(*THREAD_OUTAGE)
    settings: dict[str, Any] = {"heartbeat": 0.5, "retry_ms": 300, "replay_limit": 3}
    first = make_server(**settings)
    parent = first.post("soon gone")["post"]["id"]
    page = open_live(context, f"{first.url}/posts/{parent}")
    fetched: list[str] = []
    page.on("request", lambda r: fetched.append(r.url) if "/partials/post/" in r.url else None)
    first.stop()

    other = make_server(database=first.database)
    for i in range(4):  # more than the replay limit: the page is told to resync
        other.post(f"elsewhere {i}", channel="announcements")
    if how == "deleted":
        gone = other.client.delete(f"/api/posts/{parent}")
    else:
        gone = other.client.patch("/api/channels/general", json={"private": True})
    assert gone.status_code == 200, gone.text
    other.stop()
    make_server(database=first.database, port=first.port, **settings)

    note = page.locator("#posts .gone")
    expect(note).to_have_text(GONE, timeout=RESTART_MS)
    expect(page.locator("#live")).to_have_attribute("data-state", "gone")
    assert page.locator("#posts > *").count() == 1
    assert fetched == [f"{first.url}/partials/post/{parent}"]


# Every EventSource a page makes, to tell whether it still asks for anything.
TRACK_SOURCES = """(() => {
  const Real = window.EventSource;
  window.__sources = [];
  window.EventSource = class extends Real {
    constructor(url, options) { super(url, options); window.__sources.push(this); }
  };
})();"""
ASKING = "() => window.__sources.filter(s => s.readyState !== EventSource.CLOSED).length"
MADE = "() => window.__sources.length"
# Longer than every wait of the page's own before it asks again: two heartbeat
# intervals, and the longest backoff of a refused stream (feed-source.js).
QUIET_MS = 120_000
AWAY: dict[str, Any] = {"heartbeat": 0.5, "retry_ms": 300}


def asks_no_more(page: Page) -> None:
    """The page's own stream is closed, and stays closed however long it waits."""
    assert page.evaluate(ASKING) == 0
    made = page.evaluate(MADE)
    page.clock.run_for(QUIET_MS)
    assert page.evaluate(MADE) == made
    assert page.evaluate(ASKING) == 0


def card_requests(page: Page) -> list[str]:
    fetched: list[str] = []
    page.on("request", lambda r: fetched.append(r.url) if "/partials/post/" in r.url else None)
    return fetched


@dataclass(frozen=True)
class Away:
    """A thread's page left open while its server was down."""

    page: Page
    url: str  # its server's, the same when it is back
    parent: int  # the thread's post
    elsewhere: Server  # another server on the same database, up while the page's is down
    card_requests: list[str]  # the page's requests for its card since its server stopped


# Given "own" or "shared": the page's stream.
ThreadPageAway = Callable[[str], AbstractContextManager[Away]]


def open_thread_page(
    make_server: Callable[..., Server], context: BrowserContext, stream: str
) -> tuple[Server, int, Page]:
    """A server, a thread's post on it, and its page open live on a clock the test
    moves, its stream "own" or "shared" (the tab that leads it)."""
    if stream == "own":
        context.add_init_script(WITHOUT_SHARING)
    context.add_init_script(TRACK_SOURCES)
    context.clock.install()
    server = make_server(**AWAY)
    parent = server.post("soon gone")["post"]["id"]
    page = open_live(context, f"{server.url}/posts/{parent}")
    assert page.evaluate("window.feedStream.mode") == ("own" if stream == "own" else "leader")
    return server, parent, page


@pytest.fixture
def thread_page_away(
    make_server: Callable[..., Server], context: BrowserContext, problems: Problems
) -> ThreadPageAway:
    """Open a thread's page live (its stream "own" or "shared"), on a clock the test
    runs, stop its server, and give the test another server on the same database to
    change the post on; when the test's block ends, that one stops and the page's
    server comes back on its port."""
    problems.allow(*THREAD_OUTAGE)

    @contextmanager
    def away(stream: str) -> Iterator[Away]:
        first, parent, page = open_thread_page(make_server, context, stream)
        fetched = card_requests(page)
        first.stop()
        elsewhere = make_server(database=first.database)
        yield Away(page, first.url, parent, elsewhere, fetched)
        elsewhere.stop()
        make_server(database=first.database, port=first.port, **AWAY)

    return away


@pytest.mark.parametrize("stream", ["own", "shared"])
def test_a_threads_page_away_while_its_post_was_deleted_resumes_to_the_tombstone_and_says_so(
    thread_page_away: ThreadPageAway, stream: str
) -> None:
    """Back, the page's stream replays what it missed, its post's tombstone last: the
    page says the thread is gone (not an empty page shown as live), with no re-fetch,
    and a stream of its own asks for nothing more. Its resume was once refused with a
    404, and the page, "Offline", asked again every 30 s for ever."""
    with thread_page_away(stream) as away:
        elsewhere = away.elsewhere.client
        reply = {"body": "while away"}
        answered = elsewhere.post(f"/api/posts/{away.parent}/replies", json=reply)
        assert answered.status_code == 201, answered.text
        tombstone = ok(elsewhere.delete(f"/api/posts/{away.parent}"))["event_id"]
    page = away.page

    expect(page.locator("#posts .gone")).to_have_text(GONE, timeout=RESTART_MS)
    expect(page.locator("#live")).to_have_attribute("data-state", "gone")
    expect(page.locator("#live")).to_have_text("Deleted")
    wait_applied(page, tombstone)
    assert page.locator("#posts > *").count() == 1
    assert away.card_requests == []  # the tombstone said it
    if stream == "own":
        asks_no_more(page)


@pytest.mark.parametrize("stream", ["own", "shared"])
def test_a_threads_page_whose_post_is_deleted_live_says_deleted_and_never_offline(
    make_server: Callable[..., Server], context: BrowserContext, problems: Problems, stream: str
) -> None:
    """A thread's stream ends right after its post's tombstone (thread_streams.py, on
    a deleted post's thread): the page says "Deleted", never "Offline" or
    "Reconnecting…" however long it stays, and a stream of its own asks for nothing
    more."""
    server, parent, page = open_thread_page(make_server, context, stream)
    tombstone = ok(server.client.delete(f"/api/posts/{parent}"))["event_id"]
    wait_applied(page, tombstone)
    expect(page.locator("#posts .gone")).to_have_text(GONE)
    expect(page.locator("#live")).to_have_text("Deleted")
    if stream == "own":
        asks_no_more(page)
    else:
        page.clock.run_for(QUIET_MS)
    expect(page.locator("#live")).to_have_attribute("data-state", "gone")
    expect(page.locator("#live")).to_have_text("Deleted")


@pytest.mark.parametrize("how", ["deleted", "made private"])
def test_a_threads_own_page_whose_stream_is_refused_asks_its_card_and_says_the_thread_is_gone(
    thread_page_away: ThreadPageAway, how: str
) -> None:
    """An EventSource does not say why its stream was refused. A thread's page with a
    stream of its own asks its card: nothing (deleted) or a 404 (no longer readable),
    and it says the thread is gone and asks for nothing more, instead of showing
    "Offline" and asking again every 30 s for ever."""
    with thread_page_away("own") as away:
        elsewhere = away.elsewhere.client
        if how == "deleted":
            ok(elsewhere.delete(f"/api/posts/{away.parent}"))
            # A server that refuses the thread's stream outright, as every server did
            # for a deleted post before it replayed the tombstone to those who missed it.
            away.page.route(lambda url: "/events?" in url, lambda route: route.fulfill(status=404))
        else:
            ok(elsewhere.patch("/api/channels/general", json={"private": True}))
    page, fetched = away.page, away.card_requests

    expect(page.locator("#posts .gone")).to_have_text(GONE, timeout=RESTART_MS)
    expect(page.locator("#live")).to_have_attribute("data-state", "gone")
    assert page.locator("#posts > *").count() == 1
    assert fetched and set(fetched) == {f"{away.url}/partials/post/{away.parent}"}
    asked = len(fetched)
    asks_no_more(page)
    assert len(fetched) == asked
