"""Signing in, in a real Chromium: the sign-in form and where it leads, the session
cookie as the browser keeps it, CSRF protection of a signed-in page, /admin for
admins only, and private channels on a live dashboard.

Every sign-in goes through the form (``tests.browser.sign_in`` or by hand here); the
tests never make up a cookie. Waits are Playwright waits with deadlines.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Route, expect
from playwright.sync_api import Error as PlaywrightError

from tests.auth import ADMIN_TOKEN
from tests.browser import (
    LIVE_MS,
    OPEN_MS,
    Problems,
    api_posts,
    assert_not_reloaded,
    browser,
    context,
    new_context,
    ok,
    open_live,
    post_el,
    problems,
    session_cookie,
    shown_ids,
    sign_in,
    wait_applied,
    wait_true,
)
from tests.conftest import Server
from tests.waiting import until

pytestmark = pytest.mark.browser
__all__ = ["browser", "context", "problems"]  # fixtures

# A form post made from the page's own script, as a cross-site-scripting payload or a
# careless extension would: it carries the cookie but not the page's CSRF header.
FETCH_COMPOSE = """async ([body, headers]) => {
    const answer = await fetch('/compose', {
        method: 'POST',
        headers: {'Content-Type': 'application/x-www-form-urlencoded', ...headers},
        body: new URLSearchParams({channel: 'general', body}).toString(),
    });
    return answer.status;
}"""


def top_bar(page: Page) -> tuple[str, bool]:
    """What the top bar offers: its sign-in or signed-in text, and whether the page
    has a compose form."""
    return page.locator(".who").inner_text().strip(), page.locator("#compose").count() == 1


# -- the sign-in form ---------------------------------------------------------------------


def test_sign_in_returns_to_the_page_lets_a_writer_post_and_sign_out_ends_it(
    server: Server, context: BrowserContext, browser: Browser, problems: Problems
) -> None:
    watcher = open_live(new_context(browser, problems), server.url)  # someone else, anonymous
    page = open_live(context, f"{server.url}/channels/general")

    # Anonymous: reading works, posting is not offered, "Sign in" leads back here.
    assert top_bar(page) == ("Sign in", False)
    link = page.get_by_role("link", name="Sign in")
    expect(link).to_have_attribute("href", "/signin?next=/channels/general")
    link.click()
    page.wait_for_url(f"{server.url}/signin?next=/channels/general")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    expect(page.locator("input[name=next]")).to_have_value("/channels/general")

    page.get_by_label("Your token").fill(server.token("Ada", "writer"))
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{server.url}/channels/general")
    expect(page.locator("#live")).to_have_attribute("data-state", "live")
    expect(page.locator(".who")).to_contain_text("Ada")
    expect(page.locator(".who").get_by_role("button", name="Sign out")).to_be_visible()
    form = page.locator("#compose")
    expect(form).to_contain_text("Posting as Ada")
    expect(form.locator(".hint strong")).to_have_text("Ada")

    # A post from the form reaches this page and the anonymous watcher live, as Ada's.
    form.get_by_label("Post").fill("Signed in and *posting*")
    form.get_by_role("button", name="Post").click()
    for seen_by in (page, watcher):
        arrived = seen_by.locator("#posts .post")
        expect(arrived).to_have_count(1, timeout=LIVE_MS)
        expect(arrived.locator(".author")).to_have_text("Ada")
        expect(arrived.locator(".body em")).to_have_text("posting")
    (stored,) = api_posts(server)
    assert (stored["author"], stored["body"]) == ("Ada", "Signed in and *posting*")
    assert_not_reloaded(watcher)

    # Signing out: back to the anonymous dashboard, and the cookie is gone.
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(f"{server.url}/")
    expect(page.locator("#live")).to_have_attribute("data-state", "live")
    expect(page.get_by_role("link", name="Sign in")).to_be_visible()
    assert top_bar(page) == ("Sign in", False)
    assert page.locator("body").get_attribute("hx-headers") is None
    assert session_cookie(context) is None
    expect(post_el(page, stored["id"])).to_be_visible()  # still a reader
    watcher.context.close()


# The page's own sign-out, held on the page: the form's submission is cancelled after
# every listener of the page has seen it, and the same form is posted by hand, so the
# session ends on the server while this document is still the one running.
SIGN_OUT_IN_PLACE = """async () => {
    const form = document.querySelector('form.who');
    form.addEventListener('submit', (evt) => evt.preventDefault());
    form.requestSubmit();
    const answer = await fetch('/signout', {
        method: 'POST', body: new URLSearchParams(new FormData(form)), redirect: 'manual',
    });
    return answer.type;
}"""


def hold(page: Page, url: str, ask: str) -> list[Route]:
    """Run ``ask`` in the page and hold the request for ``url`` it makes on its way."""
    held: list[Route] = []
    page.route(lambda seen: seen == url, lambda route: held.append(route))
    page.evaluate(ask)
    deadline = time.monotonic() + OPEN_MS / 1000
    while not held:
        assert time.monotonic() < deadline, f"the page never asked for {url}"
        page.wait_for_timeout(20)  # lets Playwright hand the route over, with a deadline
    return held


def sign_out_in_place(page: Page, context: BrowserContext, server: Server) -> None:
    """Sign out with SIGN_OUT_IN_PLACE, until the server refuses the session (within
    the access answers' life)."""
    cookie = session_cookie(context)
    assert cookie is not None
    assert page.evaluate(SIGN_OUT_IN_PLACE) == "opaqueredirect"
    until(
        lambda: (
            httpx.get(
                f"{server.url}/api/me/unread",
                headers={"Cookie": f"{cookie['name']}={cookie['value']}"},
            ).status_code
        ),
        lambda status: status == 401,
        timeout=OPEN_MS / 1000,
    )


def release(page: Page, held: list[Route], settled: Callable[[], bool]) -> None:
    """Let the held requests go on, until ``settled`` says the page has seen them end."""
    for route in held:
        with contextlib.suppress(PlaywrightError):  # already abandoned by the page
            route.continue_()
    deadline = time.monotonic() + OPEN_MS / 1000
    while not settled():
        assert time.monotonic() < deadline, "a held request neither failed nor came back"
        page.wait_for_timeout(20)  # lets Playwright report it, with a deadline


def test_a_page_signing_out_asks_nothing_more_in_the_sessions_name(
    server: Server, context: BrowserContext, problems: Problems
) -> None:
    page = sign_in(context, server, server.token("Ada", "writer"))
    counts = f"{server.url}/api/me/unread"
    answers: list[tuple[str, int]] = []
    abandoned: list[str] = []
    page.on("response", lambda r: answers.append((r.url, r.status)))
    page.on("requestfailed", lambda r: abandoned.extend([r.url] if r.url == counts else []))

    # A count asked for just before signing out, held on its way to the server.
    held = hold(page, counts, "document.dispatchEvent(new Event('visibilitychange'))")
    sign_out_in_place(page, context, server)

    # The held request now reaches a server where the session has ended: the page
    # abandoned it at the submission, so no 401 comes back to it.
    release(page, held, lambda: bool(abandoned) or any(a[0] == counts for a in answers))
    assert abandoned == [counts]
    # Nothing new is asked either: a refresh due now is held back, not sent.
    page.evaluate("document.dispatchEvent(new Event('visibilitychange'))")
    wait_true(page, "() => window.feedUnread.held >= 1")
    assert page.evaluate("window.feedUnread.refreshes") == 1
    assert not [a for a in answers if "/api/me/" in a[0]], answers
    problems.assert_none()


# The page's stream says its list must be fetched again (feed-refetch.js, on re-fetch), as a
# resync does: the message is given to the page's stream object, as if it had come.
RESYNC = """() => {
    const main = document.querySelector('[sse-connect]');
    main['htmx-internal-data'].sseEventSource.message('resync', '', null);
}"""


def test_a_page_signing_out_abandons_the_private_list_it_is_fetching(
    server: Server, context: BrowserContext, problems: Problems
) -> None:
    made = server.client.post(
        "/api/channels", json={"name": "board", "title": "Board", "private": True}
    )
    assert made.status_code == 201, made.text
    ok(server.client.put("/api/channels/board/members/Mia", json={"may_post": True}))
    page = sign_in(context, server, server.token("Mia", "writer"), "/channels/board")
    list_url = page.evaluate("document.querySelector('[data-feed-url]').dataset.feedUrl")
    full = f"{server.url}{list_url}"
    answers: list[tuple[str, int]] = []
    abandoned: list[str] = []
    page.on("response", lambda r: answers.append((r.url, r.status)))
    page.on("requestfailed", lambda r: abandoned.extend([r.url] if r.url == full else []))

    # The private channel's list asked for again just before signing out, held on its
    # way to the server.
    held = hold(page, full, RESYNC)
    sign_out_in_place(page, context, server)

    # The held request reaches a server where the session has ended: the page gave
    # it up at the submission, so it fails in the page rather than coming back as
    # the private channel refused.
    release(page, held, lambda: bool(abandoned) or any(a[0] == full for a in answers))
    assert [a for a in answers if a[0] == full] == []
    assert abandoned == [full]
    problems.assert_none()


def test_a_wrong_token_shows_the_form_again_with_an_error_and_sets_no_cookie(
    server: Server, context: BrowserContext, problems: Problems
) -> None:
    problems.allow("401 from POST")
    page = context.new_page()
    page.goto(f"{server.url}/signin?next=/channels/general")
    page.get_by_label("Your token").fill("feed_not-a-token-anyone-made")
    with page.expect_response(lambda r: r.request.method == "POST") as answer:
        page.get_by_role("button", name="Sign in").click()
    assert answer.value.status == 401

    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    expect(page.get_by_role("alert")).to_have_text(
        "The token is not valid: check it, or make a new one."
    )
    # Ready for another try, still leading back to the same page.
    expect(page.locator("input[name=next]")).to_have_value("/channels/general")
    expect(page.get_by_label("Your token")).to_have_value("")
    assert context.cookies() == []

    # The right token then signs in, and goes where the first try was going.
    page.get_by_label("Your token").fill(server.token("Ada", "writer"))
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{server.url}/channels/general")
    expect(page.locator(".who")).to_contain_text("Ada")


def test_the_session_cookie_is_http_only_and_same_site_lax(
    server: Server, context: BrowserContext
) -> None:
    page = sign_in(context, server, server.token("Ada", "writer"))
    cookie = session_cookie(context)
    assert cookie is not None
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Lax"
    assert cookie["secure"] is False  # plain http here; over TLS it is Secure too
    assert cookie["domain"] == "127.0.0.1" and cookie["path"] == "/"
    assert cookie["expires"] > 0  # kept across browser restarts, until it expires
    # Scripts in the page cannot read it.
    assert "feed_session" not in page.evaluate("document.cookie")
    assert cookie["value"] not in page.evaluate("document.cookie")


# -- CSRF -----------------------------------------------------------------------------------


def test_a_signed_in_page_posts_only_with_its_csrf_token(
    server: Server, context: BrowserContext, problems: Problems
) -> None:
    problems.allow("403 from POST")
    sign_in(context, server, server.token("Ada", "writer")).close()
    page = open_live(context, server.url)
    headers = page.locator("body").get_attribute("hx-headers")
    assert headers is not None and '"X-CSRF-Token"' in headers

    # page.evaluate runs under the page's CSP: Playwright injects the function through
    # the DevTools protocol, which script-src does not govern (unlike wait_for_function's
    # in-page eval). The cookie goes along with fetch; the CSRF header does not.
    assert page.evaluate(FETCH_COMPOSE, ["without the token", {}]) == 403
    wrong = {"X-CSRF-Token": "not-the-page-token"}
    assert page.evaluate(FETCH_COMPOSE, ["with a wrong token", wrong]) == 403
    assert api_posts(server) == []

    # The same request with the page's token is a post: the 403s were about the token.
    token = page.evaluate("JSON.parse(document.body.getAttribute('hx-headers'))['X-CSRF-Token']")
    assert page.evaluate(FETCH_COMPOSE, ["with the token", {"X-CSRF-Token": token}]) == 200
    expect(page.locator("#posts .post .body")).to_have_text("with the token", timeout=LIVE_MS)
    assert [(p["author"], p["body"]) for p in api_posts(server)] == [("Ada", "with the token")]

    # So is signing out: a form post without the token is refused and changes nothing.
    status = page.evaluate(
        """async () => (await fetch('/signout', {method: 'POST', redirect: 'manual'})).status"""
    )
    assert status == 403
    assert session_cookie(context) is not None
    assert_not_reloaded(page)


# -- /admin ---------------------------------------------------------------------------------


def test_admin_needs_a_signed_in_admin(
    server: Server, context: BrowserContext, browser: Browser, problems: Problems
) -> None:
    problems.allow("403 from GET", "403 (Forbidden)")
    # Anonymous: sent to sign in, and back to /admin after.
    page = context.new_page()
    page.goto(f"{server.url}/admin")
    page.wait_for_url(f"{server.url}/signin?next=%2Fadmin")
    page.get_by_label("Your token").fill(ADMIN_TOKEN)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{server.url}/admin")
    expect(page.locator("#live")).to_have_attribute("data-state", "live")
    expect(page.get_by_role("heading", name="Admin", exact=True)).to_be_visible()

    # A signed-in writer is refused, page and stream alike.
    writer = new_context(browser, problems)
    sign_in(writer, server, server.token("Ada", "writer")).close()
    refused = writer.new_page()
    answer = refused.goto(f"{server.url}/admin")
    assert answer is not None and answer.status == 403
    assert refused.url == f"{server.url}/admin"
    assert refused.request.get(f"{server.url}/admin/stream").status == 403
    writer.close()


# -- private channels -----------------------------------------------------------------------


def test_a_private_channel_reaches_its_members_and_nobody_else(
    server: Server, context: BrowserContext, browser: Browser, problems: Problems
) -> None:
    made = server.client.post(
        "/api/channels", json={"name": "board", "title": "Board", "private": True}
    )
    assert made.status_code == 201, made.text
    ok(server.client.put("/api/channels/board/members/Mia", json={"may_post": True}))

    sign_in(context, server, server.token("Mia", "writer")).close()
    member = open_live(context, server.url)
    outsider_ctx = new_context(browser, problems)
    sign_in(outsider_ctx, server, server.token("Olu", "writer")).close()
    outsider = open_live(outsider_ctx, server.url)

    nav = "nav[aria-label=Channels] a"
    expect(member.locator(nav, has_text="#board")).to_have_count(1)
    expect(outsider.locator(nav, has_text="#board")).to_have_count(0)
    outsider_nav = outsider.locator(nav).all_inner_texts()
    assert outsider_nav == ["All", "#announcements", "#general"]
    # The compose form offers the public channels only.
    assert outsider.locator("#compose select option").all_inner_texts() == [
        "#announcements",
        "#general",
    ]

    # A private post reaches the member live; then a public one reaches both.
    secret = server.post("Budget is approved", channel="board")
    expect(post_el(member, secret["post"]["id"])).to_be_visible(timeout=LIVE_MS)
    expect(post_el(member, secret["post"]["id"]).locator(".channel")).to_have_text("#board")
    public = server.post("Town hall at 4", channel="general")
    wait_applied(member, public["event_id"])
    assert shown_ids(member) == [public["post"]["id"], secret["post"]["id"]]

    # The outsider's stream delivered the later public event but never the private one.
    wait_applied(outsider, public["event_id"])
    expect(post_el(outsider, public["post"]["id"])).to_be_visible()
    assert shown_ids(outsider) == [public["post"]["id"]]
    expect(outsider.get_by_text("Budget")).to_have_count(0)
    assert outsider.locator(nav).all_inner_texts() == outsider_nav
    assert_not_reloaded(outsider)

    # Nor can the outsider open it: the same 404 as for a channel that does not exist.
    problems.allow("404 from GET")
    answer = outsider.goto(f"{server.url}/channels/board")
    assert answer is not None and answer.status == 404
    expect(outsider.get_by_text("There is no channel named #board.")).to_be_visible()
    outsider_ctx.close()
    assert_not_reloaded(member)
