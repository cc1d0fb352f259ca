"""Search in a real Chromium: typing shows highlighted results and a click opens the
post; a search box past the searches-at-once limit says so and gets its results by
itself; a kiosk watching a search shows a matching new post live and not another, and
one whose live search is refused says why, in the server's words, and comes back by
itself."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import BrowserContext, Request, expect

from feed.errors import RETRY_AFTER_SECONDS
from feed.live_searches import LiveSearchesFull, TooManyLiveSearches
from tests.browser import (
    LIVE_MS,
    OPEN_MS,
    Problems,
    browser,
    context,
    open_live,
    post_el,
    problems,
    render_ids,
    shown_ids,
    wait_applied,
    wait_true,
)
from tests.conftest import Server
from tests.held_search import HELD
from tests.sse import subscribed
from tests.waiting import until

pytestmark = pytest.mark.browser
__all__ = ["browser", "context", "problems"]  # fixtures


def test_typing_a_search_shows_highlighted_results_and_a_click_opens_the_post(
    server: Server, context: BrowserContext, problems: Problems
) -> None:
    lift = server.post("The <b>lift</b> is out of order again")["post"]["id"]
    server.post("Stairs are fine")
    page = context.new_page()
    page.goto(f"{server.url}/search")
    page.get_by_label("Search posts").press_sequentially("lif*", delay=30)
    hit = page.locator(f"#hit-{lift}")
    expect(hit).to_be_visible(timeout=OPEN_MS)
    expect(page.locator("#results .hit")).to_have_count(1)
    expect(hit.locator("mark")).to_have_text("lift")
    # The body's own markup is shown as text, never as markup.
    expect(hit.locator(".snippet")).to_have_text("The <b>lift</b> is out of order again")
    # The address is the search, shareable.
    expect(page).to_have_url(f"{server.url}/search?q=lif%2A")
    hit.locator("a.open").click()
    expect(page).to_have_url(f"{server.url}/channels/general#post-{lift}")
    expect(post_el(page, lift)).to_be_visible(timeout=OPEN_MS)


def test_a_malformed_search_typed_in_the_box_says_why_where_results_would_be(
    server: Server, context: BrowserContext, problems: Problems
) -> None:
    lift = server.post("The lift is out of order again")["post"]["id"]
    problems.allow("400 from GET")  # the sentence is the answer
    page = context.new_page()
    page.goto(f"{server.url}/search")
    box = page.get_by_label("Search posts")
    box.press_sequentially("-lift", delay=30)
    said = page.locator("#results .error")
    expect(said).to_have_text(
        "A search needs at least one word to look for, not only words to leave out."
    )
    expect(said).to_have_attribute("role", "alert")
    # Mended, the same box shows the results.
    box.press("Home")
    box.press("Delete")
    expect(page.locator(f"#hit-{lift}")).to_be_visible(timeout=OPEN_MS)
    expect(said).to_have_count(0)


def one_search_at_once(
    make_server: Callable[..., Server], gate: Path, problems: Problems, **settings: object
) -> Server:
    """A server that lets one search at a time run (a 429 beyond, which the test is
    about), and whose searches for ``HELD`` wait until ``gate / "go"`` exists."""
    gate.mkdir()
    problems.allow("429 from GET")
    return make_server(
        command=("-m", "tests.held_search", str(gate)), max_searches_per_client=1, **settings
    )


@contextmanager
def one_search_in_flight(server: Server, gate: Path) -> Iterator[Callable[[], None]]:
    """This address's search for ``HELD`` in flight (signed out, searches count by
    address) until the block calls what it is given, which lets it end and checks it
    was answered."""
    with ThreadPoolExecutor(1) as pool:
        held = pool.submit(httpx.get, f"{server.url}/api/search?q={HELD}", timeout=30)
        until(lambda: (gate / "inside").exists(), timeout=OPEN_MS / 1000)

        def release() -> None:
            (gate / "go").touch()
            assert held.result(timeout=30).status_code == 200

        yield release


def test_a_search_box_past_the_limit_says_so_and_then_shows_the_typed_searchs_results(
    make_server: Callable[..., Server],
    context: BrowserContext,
    problems: Problems,
    tmp_path: Path,
) -> None:
    gate = tmp_path / "gate"
    server = one_search_at_once(make_server, gate, problems)
    lift = server.post("The lift is out of order again")["post"]["id"]
    server.post("Stairs are fine")
    page = context.new_page()
    page.goto(f"{server.url}/search")
    box = page.get_by_label("Search posts")
    results = page.locator("#results")
    # Screen readers hear a count, not every result again at each key.
    count = page.locator("#results-count")
    expect(count).to_have_attribute("role", "status")
    assert results.get_attribute("aria-live") is None
    with one_search_in_flight(server, gate) as release:
        box.press_sequentially("lif", delay=30)
        busy = results.locator(".busy")
        expect(busy).to_contain_text("Too many searches at once", timeout=OPEN_MS)
        expect(busy).to_contain_text("searching again in")
        # Typing on while refused: the box keeps the focus, and it is what is searched.
        box.press_sequentially("t", delay=30)
        expect(box).to_be_focused()
        release()
    # Nobody touches anything: the page searches again and shows what is typed.
    hit = page.locator(f"#hit-{lift}")
    expect(hit).to_be_visible(timeout=OPEN_MS)
    expect(results.locator(".hit")).to_have_count(1)
    expect(count).to_have_text("1 result.")
    expect(busy).to_have_count(0)
    expect(page).to_have_url(f"{server.url}/search?q=lift")
    expect(box).to_be_focused()


def test_more_results_past_the_limit_says_so_beside_its_button_and_then_loads_them(
    make_server: Callable[..., Server],
    context: BrowserContext,
    problems: Problems,
    tmp_path: Path,
) -> None:
    gate = tmp_path / "gate"
    server = one_search_at_once(make_server, gate, problems, page_size=2)
    ids = [server.post(f"The lift is out, note {n}")["post"]["id"] for n in range(3)]
    page = context.new_page()
    page.goto(f"{server.url}/search?q=lift")
    results = page.locator("#results")
    hits = results.locator(".hit")
    expect(hits).to_have_count(2)
    more = results.get_by_role("button", name="More results")
    with one_search_in_flight(server, gate) as release:
        more.focus()
        page.keyboard.press("Enter")
        busy = results.locator(".more .busy")
        expect(busy).to_contain_text("Too many searches at once", timeout=OPEN_MS)
        expect(busy).to_have_attribute("role", "status")
        # What was found stays, and so does the button, with the focus.
        expect(hits).to_have_count(2)
        expect(more).to_be_focused()
        release()
    # Nobody touches anything: the button asks again and the last page comes.
    expect(hits).to_have_count(3, timeout=OPEN_MS)
    assert [h.get_attribute("id") for h in hits.all()] == [f"hit-{n}" for n in ids[::-1]]
    expect(busy).to_have_count(0)
    expect(more).to_have_count(0)
    # The focus is on the first of them, where reading goes on, and the count says so.
    expect(page.locator(f"#hit-{ids[0]} .open")).to_be_focused()
    expect(page.locator("#results-count")).to_have_text("1 more result.")


def test_a_kiosk_watching_a_search_shows_a_matching_post_live_and_not_another(
    server: Server, context: BrowserContext, problems: Problems
) -> None:
    old = server.post("deploy of the old build")["post"]["id"]
    server.post("lunch is served")
    kiosk = open_live(context, f"{server.url}/kiosk?q=deploy")
    assert shown_ids(kiosk) == [old]
    other = server.post("coffee machine fixed")
    match = server.post("deploy finished at noon")
    expect(post_el(kiosk, match["post"]["id"])).to_be_visible(timeout=LIVE_MS)
    wait_applied(kiosk, match["event_id"])
    assert shown_ids(kiosk) == [match["post"]["id"], old]
    expect(post_el(kiosk, other["post"]["id"])).to_have_count(0)
    # An edit that stops the old post matching takes it off the screen.
    answer = server.client.patch(f"/api/posts/{old}", json={"body": "rollback of the build"})
    assert answer.status_code == 200
    expect(post_el(kiosk, old)).to_have_count(0, timeout=LIVE_MS)
    assert shown_ids(kiosk) == [match["post"]["id"]]


def test_a_kiosk_past_the_limit_says_so_and_then_shows_its_search_live(
    make_server: Callable[..., Server],
    context: BrowserContext,
    problems: Problems,
    tmp_path: Path,
) -> None:
    gate = tmp_path / "gate"
    server = one_search_at_once(make_server, gate, problems)
    old = server.post("deploy of the old build")["post"]["id"]
    server.post("lunch is served")
    kiosk = context.new_page()
    with one_search_in_flight(server, gate) as release:
        kiosk.goto(f"{server.url}/kiosk?q=deploy")
        busy = kiosk.locator("#posts .busy")
        expect(busy).to_contain_text("Too many searches at once")
        expect(busy).to_have_attribute("role", "status")
        # Live meanwhile: what is posted while it waits is not lost.
        expect(kiosk.locator("#live")).to_have_attribute("data-state", "live", timeout=OPEN_MS)
        meanwhile = server.post("deploy started")
        release()
    # Nobody touches a kiosk: it searches again by itself, and stays live.
    wait_applied(kiosk, meanwhile["event_id"])
    expect(busy).to_have_count(0)
    assert shown_ids(kiosk) == [meanwhile["post"]["id"], old]
    late = server.post("deploy finished")
    expect(post_el(kiosk, late["post"]["id"])).to_be_visible(timeout=LIVE_MS)
    assert shown_ids(kiosk) == render_ids(server, "/partials/kiosk?q=deploy")


def test_a_kiosk_watching_a_search_shows_what_a_fresh_render_shows_with_replies_about(
    server: Server, context: BrowserContext, problems: Problems
) -> None:
    parent = server.post("deploy plan for friday")["post"]["id"]
    reply = server.client.post(f"/api/posts/{parent}/replies", json={"body": "deploy early?"})
    assert reply.status_code == 201, reply.text
    kiosk = open_live(context, f"{server.url}/kiosk?q=deploy")
    assert shown_ids(kiosk) == render_ids(server, "/partials/kiosk?q=deploy")
    # A matching reply, a matching post, and an edit of the first reply, live.
    late = server.client.post(f"/api/posts/{parent}/replies", json={"body": "deploy at nine"})
    assert late.status_code == 201, late.text
    new = server.post("deploy done")["post"]["id"]
    edited = server.client.patch(
        f"/api/posts/{reply.json()['post']['id']}", json={"body": "deploy at eight?"}
    )
    assert edited.status_code == 200, edited.text
    wait_applied(kiosk, edited.json()["event_id"])
    # Live, the screen shows what it would show had it just been loaded.
    assert shown_ids(kiosk) == render_ids(server, "/partials/kiosk?q=deploy")
    assert shown_ids(kiosk)[0] == new
    expect(kiosk.locator("#posts > :not(.post)")).to_have_count(0)


def test_a_kiosk_watching_a_search_counts_every_reply_to_a_matching_post(
    server: Server, context: BrowserContext, problems: Problems
) -> None:
    parent = server.post("deploy plan for friday")["post"]["id"]
    kiosk = open_live(context, f"{server.url}/kiosk?q=deploy")
    count = kiosk.locator(f"#replies-{parent}")
    expect(count).to_have_attribute("data-replies", "0")
    # Replies that do not say "deploy" still belong to the thread of a post that does.
    for n, body in enumerate(["sounds good", "ok by me"], start=1):
        answer = server.client.post(f"/api/posts/{parent}/replies", json={"body": body})
        assert answer.status_code == 201, answer.text
        wait_applied(kiosk, answer.json()["event_id"])
        expect(count).to_have_attribute("data-replies", str(n))
    expect(count).to_contain_text("2 replies")
    assert shown_ids(kiosk) == render_ids(server, "/partials/kiosk?q=deploy")


def refusals_allowed(problems: Problems, status: int) -> None:
    """The stream's refusal is what the test is about: the EventSource's failed load,
    htmx's report of it, and the page's own requests that ask why (a HEAD, then a GET
    for the sentence: feed-source.js, on why a stream was refused)."""
    problems.allow(
        f"{status} from GET",
        f"{status} from HEAD",
        "htmx:sseError",
        "[object Event]",
        "EventSource",
    )


def test_a_kiosk_whose_search_the_server_cannot_follow_says_why_and_comes_back_by_itself(
    make_server: Callable[..., Server], context: BrowserContext, problems: Problems
) -> None:
    refusals_allowed(problems, 503)
    server = make_server(max_live_searches=1)
    old = server.post("deploy of the old build")["post"]["id"]
    kiosk = context.new_page()
    streams: list[Request] = []  # each time the page opened its stream
    kiosk.on("request", lambda r: streams.append(r) if r.resource_type == "eventsource" else None)
    # Another screen's search is the one the server follows.
    with subscribed(server.port, {"format": "json", "q": "lunch"}):
        kiosk.goto(f"{server.url}/kiosk?q=deploy")
        refused = kiosk.locator("#refused")
        # In the server's own words, said as the badge says it: politely.
        expect(refused).to_contain_text(LiveSearchesFull(1).message, timeout=OPEN_MS)
        expect(refused).to_contain_text("Trying again automatically.")
        expect(refused).to_have_attribute("role", "status")
        expect(refused).to_have_attribute("aria-live", "polite")
        expect(refused).to_be_visible()
        assert shown_ids(kiosk) == [old]
        meanwhile = server.post("deploy started")
    # The other search closed: the kiosk gets in by itself, with what it missed, once.
    wait_applied(kiosk, meanwhile["event_id"], timeout=3 * RETRY_AFTER_SECONDS * 1000)
    expect(refused).to_be_empty()
    expect(kiosk.locator("#live")).to_have_attribute("data-state", "live")
    assert shown_ids(kiosk) == [meanwhile["post"]["id"], old]
    late = server.post("deploy finished")
    expect(post_el(kiosk, late["post"]["id"])).to_be_visible(timeout=LIVE_MS)
    assert shown_ids(kiosk) == render_ids(server, "/partials/kiosk?q=deploy")
    # Politely: each attempt after a refusal waited at least the Retry-After (the
    # browser's own clock says when each began).
    began = [r.timing["startTime"] for r in streams]
    gaps = [later - sooner for sooner, later in itertools.pairwise(began)]
    assert len(gaps) >= 1 and min(gaps) >= RETRY_AFTER_SECONDS * 1000, gaps


# Each EventSource the page makes: when it was made, and when it was refused for good,
# on the page's clock.
ATTEMPTS = """(() => {
  const Real = window.EventSource;
  window.__attempts = [];
  window.EventSource = class extends Real {
    constructor(url, options) {
      super(url, options);
      const attempt = { made: Date.now(), closed: null };
      window.__attempts.push(attempt);
      this.addEventListener("error", () => {
        if (this.readyState === Real.CLOSED && attempt.closed === null) {
          attempt.closed = Date.now();
        }
      });
    }
  };
})();"""
REFUSED = "n => window.__attempts.length === n + 1 && window.__attempts[n].closed !== null"


def test_a_kiosk_refused_again_and_again_asks_less_and_less_often(
    make_server: Callable[..., Server], context: BrowserContext, problems: Problems
) -> None:
    """A refusal's Retry-After (2 s for most) is the least a page waits, not the wait: a
    page refused on and on backs off all the same, by up to half as much again at random
    so that a wall of screens does not come back in step, and asks why only once, a
    HEAD and a GET (feed-source.js, on why a stream was refused). It once asked every 2-3 s, twice,
    for as long as the refusals lasted."""
    refusals_allowed(problems, 503)
    # A heartbeat long enough that the page's watchdog opens nothing within the waits
    # measured here: each attempt is one the page made after a refusal.
    server = make_server(max_live_searches=1, heartbeat=60)
    context.add_init_script(ATTEMPTS)
    context.clock.install()
    kiosk = context.new_page()
    asked: list[Request] = []  # the page's own requests for why: a HEAD, then a GET
    kiosk.on(
        "request",
        lambda r: asked.append(r) if r.resource_type == "fetch" and "/events" in r.url else None,
    )
    floor = RETRY_AFTER_SECONDS * 1000
    waits = [min(30000, max(floor, 500 * 2**n)) for n in range(6)]
    with subscribed(server.port, {"format": "json", "q": "lunch"}):
        kiosk.goto(f"{server.url}/kiosk?q=deploy")
        expect(kiosk.locator("#refused")).to_contain_text(LiveSearchesFull(1).message)
        # From here the page's time moves only when the test says, by the longest wait
        # each attempt may take, once the page has been refused.
        now = kiosk.evaluate("Date.now()") / 1000
        kiosk.clock.pause_at(datetime.fromtimestamp(now + 0.2, UTC))
        for n, wait in enumerate(waits):
            wait_true(kiosk, REFUSED, n)
            kiosk.clock.run_for(int(1.5 * wait) + 1)
        wait_true(kiosk, REFUSED, len(waits))
        attempts = kiosk.evaluate("window.__attempts")
    gaps = [later["made"] - sooner["closed"] for sooner, later in itertools.pairwise(attempts)]
    assert len(gaps) == len(waits)
    # The first wait began once the page had its answer, in the page's own time.
    assert gaps[0] >= waits[0], gaps
    for gap, wait in list(zip(gaps, waits, strict=True))[1:]:
        assert wait <= gap <= 1.5 * wait, (gaps, waits)
    assert gaps[-1] >= 8 * floor, gaps  # backed off well past the Retry-After
    assert [r.method for r in asked] == ["HEAD", "GET"], [r.url for r in asked]


def test_a_kiosk_past_its_own_live_searches_says_why_in_the_servers_words(
    make_server: Callable[..., Server], context: BrowserContext, problems: Problems
) -> None:
    refusals_allowed(problems, 429)
    server = make_server(max_live_searches_per_client=1)
    # This address already follows a search: the kiosk's, signed out, is one too many.
    with subscribed(server.port, {"format": "json", "q": "lunch"}):
        kiosk = context.new_page()
        kiosk.goto(f"{server.url}/kiosk?q=deploy")
        refused = kiosk.locator("#refused")
        said = TooManyLiveSearches(1, "this address").message
        expect(refused).to_contain_text(said, timeout=OPEN_MS)
        expect(kiosk.locator("#live")).not_to_have_attribute("data-state", "live")
