"""Shared helpers for the browser tests: Chromium through Playwright, a watch for
script errors and failed requests, pages whose stream is open, and fixed content
for screenshots that do not change from run to run (written where the ``screenshots``
fixture says).

Pages that post or open /admin are signed in first, through the sign-in form
(``sign_in``), exactly as a person does it: no cookie is made up by the tests.

Synchronisation is always a Playwright wait with a deadline, never a sleep.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
import time
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import urlencode

import httpx
import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Locator,
    Page,
    Response,
    ViewportSize,
    expect,
    sync_playwright,
)
from playwright.sync_api import (
    Error as PlaywrightError,
)

from feed.store import Store
from feed.values import Change, PostView
from tests.conftest import Server

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
LAPTOP: ViewportSize = {"width": 1280, "height": 800}
PHONE: ViewportSize = {"width": 390, "height": 844}
SCREEN: ViewportSize = {"width": 1280, "height": 720}  # a 16:9 wall screen, scaled down

OPEN_MS = 5_000  # page load and stream open
# A server process stopped and started again, then a page's stream open: a new process
# imports everything, and takes seconds on a busy machine.
RESTART_MS = 30_000
LIVE_MS = 1_000  # a change reaches an open page within a second (the core issue asks that)

T = TypeVar("T")

# Screenshots show this moment, and the sample posts are dated just before it.
FROZEN_NOW = datetime(2026, 3, 2, 9, 41, tzinfo=UTC)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield chromium
        chromium.close()


@dataclass
class Problems:
    """Script errors and failed requests seen by the pages of one test.

    A test that causes failures on purpose (an outage) names what it expects with
    ``allow``; everything else is a problem.
    """

    seen: list[str] = field(default_factory=list)
    allowed: list[str] = field(default_factory=list)

    def allow(self, *fragments: str) -> None:
        self.allowed.extend(fragments)

    def watch(self, page: Page) -> None:
        page.on("pageerror", lambda exc: self._add(f"page error: {exc}"))
        page.on("console", self._console)
        page.on("response", self._response)

    def assert_none(self) -> None:
        # One line: a run's short summary shows only the first line of the message.
        assert not self.seen, f"{len(self.seen)} problem(s): " + " | ".join(self.seen)

    def _add(self, problem: str) -> None:
        if not any(fragment in problem for fragment in self.allowed):
            self.seen.append(problem)

    def _console(self, message: ConsoleMessage) -> None:
        # Failed loads are reported with their URL by _response.
        if message.type == "error" and "Failed to load resource" not in message.text:
            where = message.location
            at = f"{where.get('url')}:{where.get('lineNumber')}" if where else "?"
            self._add(f"console error: {message.text} (at {at})")

    def _response(self, response: Response) -> None:
        # The compose form's validation answer is a deliberate 422.
        expected = response.status == 422 and response.url.endswith("/compose")
        if response.status >= 400 and not expected:
            self._add(f"{response.status} from {response.request.method} {response.url}")


@pytest.fixture
def problems() -> Problems:
    return Problems()


def new_context(browser: Browser, problems: Problems, **options: Any) -> BrowserContext:
    """A context (its own cookies: one person) whose pages ``problems`` watches."""
    ctx = browser.new_context(
        **{"viewport": LAPTOP, "locale": "en-US", "timezone_id": "UTC", **options}
    )
    ctx.set_default_timeout(OPEN_MS)
    ctx.on("page", problems.watch)
    return ctx


@pytest.fixture
def context(browser: Browser, problems: Problems) -> Iterator[BrowserContext]:
    ctx = new_context(browser, problems)
    yield ctx
    ctx.close()
    problems.assert_none()


def sign_in(context: BrowserContext, server: Server, token: str, next_path: str = "/") -> Page:
    """Sign ``context`` in with ``token`` through the sign-in form, as a person does.

    Returns the page the form leads back to (``next_path``, the dashboard by default),
    once its stream is open; close it if the test opens its own pages. Every later page
    of the context carries the session cookie the form set.
    """
    page = context.new_page()
    page.goto(f"{server.url}/signin?{urlencode({'next': next_path})}")
    page.get_by_label("Your token").fill(token)
    with page.expect_response(lambda r: r.request.method == "POST") as answer:
        page.get_by_role("button", name="Sign in").click()
    assert answer.value.status == 303, f"sign-in answered {answer.value.status}"
    page.wait_for_url(f"{server.url}{next_path}")
    expect(page.locator("#live")).to_have_attribute("data-state", "live", timeout=OPEN_MS)
    page.evaluate("window.__notReloaded = true")
    return page


def session_cookie(context: BrowserContext) -> dict[str, Any] | None:
    """The context's ``feed_session`` cookie as the browser holds it, if any."""
    found = [dict(c) for c in context.cookies() if c["name"] == "feed_session"]
    assert len(found) <= 1, found
    return found[0] if found else None


def open_live(context: BrowserContext, url: str, frozen: datetime | None = None) -> Page:
    """A page at ``url`` whose event stream is open, marked so a reload would show.

    With ``frozen``, the page's wall clock shows that moment (timers still run)."""
    page = context.new_page()
    if frozen is not None:
        page.clock.set_fixed_time(frozen)
    page.goto(url)
    expect(page.locator("#live")).to_have_attribute("data-state", "live", timeout=OPEN_MS)
    expect(page.locator("#live")).to_have_text("Live")
    page.evaluate("window.__notReloaded = true")
    return page


def assert_not_reloaded(page: Page) -> None:
    assert page.evaluate("window.__notReloaded === true"), "the page was reloaded"


def post_el(page: Page, post_id: int) -> Locator:
    return page.locator(f"#post-{post_id}")


def top(locator: Locator) -> float:
    box = locator.bounding_box()
    assert box is not None, "element is not rendered"
    return float(box["y"])


def shown_ids(page: Page) -> list[int]:
    """Post ids in the list, in document order (newest first)."""
    ids: list[int] = page.eval_on_selector_all(
        "#posts > .post", "els => els.map(el => Number(el.id.slice(5)))"
    )
    return ids


def wait_true(page: Page, expression: str, arg: Any = None, timeout: float = OPEN_MS) -> None:
    """Wait until ``expression`` (a JS function of ``arg``) is true in the page.

    Not ``page.wait_for_function``: its in-page poller compiles the predicate with
    ``eval``, which the pages' Content-Security-Policy forbids, as it should.
    """
    deadline = time.monotonic() + timeout / 1000
    while not _evaluate_across_navigation(page, expression, arg):
        assert time.monotonic() < deadline, f"still false after {timeout} ms: {expression}"
        page.wait_for_timeout(20)  # polling the page, with a deadline


def _evaluate_across_navigation(page: Page, expression: str, arg: Any) -> Any:
    # A page that reloads itself (a deploy) destroys the context being evaluated in;
    # that only means "not yet".
    try:
        return page.evaluate(expression, arg)
    except PlaywrightError as exc:
        if "context was destroyed" in str(exc) or "navigat" in str(exc):
            return False
        raise


def wait_applied(page: Page, event_id: int, timeout: float = OPEN_MS) -> None:
    """Wait until the page has applied every event up to ``event_id``."""
    wait_true(page, "id => window.feedStream.lastApplied >= id", event_id, timeout)


def api_posts(server: Server, channel: str = "general", limit: int = 50) -> list[dict[str, Any]]:
    response = server.client.get(f"/api/channels/{channel}/posts", params={"limit": limit})
    assert response.status_code == 200, response.text
    posts: list[dict[str, Any]] = response.json()["posts"]
    return posts


class Database:
    """The servers' database, reached straight through the store, as another process
    would: the truth pages are compared with, and a writer while a server is down.

    The store's methods are coroutines; they run on one event loop of our own, in a
    thread of its own, since Playwright's sync API keeps a loop on the test's thread.
    """

    def __init__(self, url: str) -> None:
        self.store = Store.from_url(url)
        self._loop = asyncio.new_event_loop()
        self._thread = ThreadPoolExecutor(1)

    def close(self) -> None:
        self._thread.submit(self._loop.close).result()
        self._thread.shutdown()
        self.store.close()

    def _run(self, work: Coroutine[Any, Any, T]) -> T:
        return self._thread.submit(self._loop.run_until_complete, work).result()

    def post(self, body: str, channel: str = "general", author: str = "writer") -> Change:
        return self._run(self.store.create_post(channel, author, body))

    def edit(self, post_id: int, body: str) -> Change:
        return self._run(self.store.edit_post(post_id, body))

    def delete(self, post_id: int) -> Change:
        return self._run(self.store.delete_post(post_id))

    def pin(self, post_id: int, pinned: bool = True) -> Change:
        return self._run(self.store.set_pinned(post_id, pinned))

    def posts(self) -> list[PostView]:
        """Every live post, newest first."""
        return self._run(self.store.list_posts(None, limit=1_000_000))

    def latest(self) -> int:
        return self._run(self.store.latest_event_id())


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    """The database of the ``server`` and ``make_server`` fixtures' servers."""
    db = Database(database_url)
    yield db
    db.close()


def ok(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    payload: dict[str, Any] = response.json()
    return payload


# -- fixed content for screenshots ------------------------------------------------------

SAMPLE_POSTS = [
    ("announcements", "Priya Raman", "Welcome to **feed**: updates show up here as they happen."),
    ("general", "Marco Rossi", "Anyone up for lunch at the new ramen place around 12:30?"),
    (
        "general",
        "Sam Okafor",
        "Release 2.4 is out. Highlights:\n\n"
        "- faster search\n- dark mode\n- fixed the `export` button on Safari",
    ),
    ("announcements", "Facilities", "The north lift is under maintenance on Thursday morning."),
    ("general", "Jo Lee", "Reminder: the retro moved to 4 pm, same room."),
]
# Minutes before FROZEN_NOW at which each sample post was written.
SAMPLE_AGES = [190, 95, 47, 12, 3]


def seed_sample_feed(server: Server) -> list[int]:
    """The sample posts, one pinned and one edited, dated at fixed moments."""
    ids = [
        server.post(body, channel=ch, author=who)["post"]["id"] for ch, who, body in SAMPLE_POSTS
    ]
    ok(server.client.post(f"/api/posts/{ids[0]}/pin"))
    ok(
        server.client.patch(
            f"/api/posts/{ids[4]}", json={"body": "Reminder: the retro moved to **4 pm**, room 2."}
        )
    )
    backdate(server, dict(zip(ids, SAMPLE_AGES, strict=True)))
    return ids


def backdate(server: Server, ages: dict[int, int]) -> None:
    """Give posts fixed creation times (minutes before FROZEN_NOW), straight in SQLite:
    the API rightly has no way to set them, and screenshots must not change per run."""
    assert server.database.startswith("sqlite:///"), "screenshots are taken on SQLite"
    with sqlite3.connect(server.database.removeprefix("sqlite:///")) as db:
        for post_id, minutes in ages.items():
            moment = (FROZEN_NOW - timedelta(minutes=minutes)).replace(tzinfo=None)
            stamp = moment.isoformat(sep=" ", timespec="microseconds")
            db.execute("UPDATE posts SET created_at = ? WHERE id = ?", (stamp, post_id))
            db.execute(
                "UPDATE posts SET edited_at = ? WHERE id = ? AND edited_at IS NOT NULL",
                (stamp, post_id),
            )
    db.close()


def render_ids(server: Server, url: str, *, anonymous: bool = False) -> list[int]:
    """The posts a fresh render of ``url`` lists, in order, for the tests' admin or
    for nobody signed in."""
    page = httpx.get(f"{server.url}{url}", timeout=10) if anonymous else server.client.get(url)
    assert page.status_code == 200, page.text
    return [int(n) for n in re.findall(r'<article id="post-(\d+)" class="post', page.text)]
