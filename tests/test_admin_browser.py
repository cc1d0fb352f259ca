"""The admin page in Chromium, used from the keyboard: a live refresh of the channel
table keeps what is being typed in it, its focus, its caret and its rows' errors; each
form's answer leaves the focus where the admin goes on from, and says what it did; and
every refusal is said where the admin is looking, whether or not it came with the panel,
or came at all."""

from __future__ import annotations

import sqlite3

import pytest
from playwright.sync_api import BrowserContext, Locator, Page, Route, expect

from tests.auth import ADMIN_TOKEN
from tests.browser import Problems, browser, context, problems, sign_in
from tests.conftest import Server
from tests.test_admin import ADMIN_MS

pytestmark = pytest.mark.browser
__all__ = ["browser", "context", "problems"]  # fixtures


def caret(page: Page) -> list[int]:
    found: list[int] = page.evaluate(
        "() => [document.activeElement.selectionStart, document.activeElement.selectionEnd]"
    )
    return found


def test_a_live_refresh_of_the_channel_table_keeps_what_is_typed_the_focus_and_the_caret(
    server: Server, context: BrowserContext, problems: Problems
) -> None:
    page = sign_in(context, server, ADMIN_TOKEN, "/admin")
    news = page.get_by_label("Title of #announcements")
    news.fill("Notices")
    field = page.get_by_label("Title of #general")
    field.fill("Half a ti")
    field.evaluate("el => el.setSelectionRange(4, 4)")

    # Channels changed elsewhere: the stream sends the whole table again.
    created = server.client.post("/api/channels", json={"name": "releases", "title": "Releases"})
    assert created.status_code == 201, created.text
    expect(page.locator("#channel-releases")).to_be_visible(timeout=ADMIN_MS)
    expect(field).to_be_focused()
    expect(field).to_have_value("Half a ti")
    assert caret(page) == [4, 4]
    expect(news).to_have_value("Notices")
    # The typing goes on where it was.
    page.keyboard.type("XY")
    expect(field).to_have_value("HalfXY a ti")

    # A field nobody typed in shows what changed.
    answer = server.client.patch("/api/channels/releases", json={"title": "Shipped"})
    assert answer.status_code == 200, answer.text
    expect(page.get_by_label("Title of #releases")).to_have_value("Shipped", timeout=ADMIN_MS)
    expect(field).to_be_focused()
    expect(field).to_have_value("HalfXY a ti")
    assert caret(page) == [6, 6]


def test_a_live_refresh_copies_no_style_a_script_gave_a_field_onto_its_new_one(
    server: Server, context: BrowserContext, problems: Problems
) -> None:
    # A script that styles a field through its style object (a browser extension, a
    # screenshot or accessibility tool) gives it a style attribute. A live refresh of
    # the table must not copy that attribute onto the new field: the page's policy
    # (style-src 'self', security.py) refuses a style attribute set from a script, and
    # says so in the console on every refresh.
    page = sign_in(context, server, ADMIN_TOKEN, "/admin")
    field = page.get_by_label("Title of #general")
    field.evaluate("el => el.style.setProperty('caret-color', 'transparent', 'important')")
    expect(field).to_have_attribute("style", "caret-color: transparent !important;")

    created = server.client.post("/api/channels", json={"name": "releases", "title": "Releases"})
    assert created.status_code == 201, created.text
    expect(page.locator("#channel-releases")).to_be_visible(timeout=ADMIN_MS)
    expect(field).not_to_have_attribute("style", "caret-color: transparent !important;")
    problems.assert_none()


def test_each_admin_form_leaves_the_focus_where_the_admin_goes_on_and_says_what_it_did(
    server: Server, context: BrowserContext, problems: Problems
) -> None:
    problems.allow("409 from POST", "422 from POST")
    page = sign_in(context, server, ADMIN_TOKEN, "/admin")
    said = page.locator("#admin-said")
    expect(said).to_have_attribute("role", "status")
    form = page.locator("#admin-create")

    # Created from the keyboard, Enter in the last field: the focus stays in it.
    form.get_by_label("Name").fill("releases")
    form.get_by_label("Title").fill("Releases")
    form.get_by_label("Description").press("Enter")
    expect(page.locator("#channel-releases")).to_be_visible()
    expect(said).to_have_text("Created #releases.")
    expect(form.get_by_label("Description")).to_be_focused()

    # Refused: the focus goes to the field the error is about, which points to it.
    form.get_by_label("Name").fill("general")
    form.get_by_label("Title").fill("Twice")
    form.get_by_role("button", name="Create channel").press("Enter")
    name = form.get_by_label("Name")
    expect(name).to_be_focused()
    expect(name).to_have_attribute("aria-invalid", "true")
    error = page.locator(f"#{name.get_attribute('aria-describedby')}")
    expect(error).to_have_text("A channel named 'general' already exists.")
    expect(error).to_have_attribute("role", "alert")
    form.get_by_label("Name").fill("news")
    form.get_by_label("Title").fill(" ")
    form.get_by_role("button", name="Create channel").press("Enter")
    expect(form.get_by_label("Title")).to_be_focused()
    expect(form.get_by_label("Title")).to_have_attribute("aria-invalid", "true")
    expect(form.get_by_label("Name")).not_to_have_attribute("aria-invalid", "true")

    # Renamed from its row: the focus stays in the field, also once the stream has sent
    # the table again.
    title = page.get_by_label("Title of #general")
    title.fill("Everything")
    title.press("Enter")
    expect(said).to_have_text("#general is now titled “Everything”.")
    expect(title).to_be_focused()
    expect(page.locator("#admin-events > li").first.locator(".admin-kind")).to_have_text(
        "channel-updated", timeout=ADMIN_MS
    )
    expect(title).to_be_focused()
    title.fill("")
    title.press("Enter")
    expect(title).to_be_focused()
    expect(title).to_have_attribute("aria-invalid", "true")
    error = page.locator(f"#{title.get_attribute('aria-describedby')}")
    expect(error).to_have_text("The title must not be empty.")

    # Archived, replies turned off: the focus stays on the button, which now undoes it.
    page.get_by_role("button", name="Archive #announcements").press("Enter")
    expect(said).to_have_text("#announcements archived.")
    expect(page.get_by_role("button", name="Restore #announcements")).to_be_focused()
    page.get_by_role("button", name="Turn off readers' replies in #announcements").press("Enter")
    expect(said).to_have_text("Readers of #announcements may no longer reply.")
    expect(
        page.get_by_role("button", name="Turn on readers' replies in #announcements")
    ).to_be_focused()


def test_a_button_pressed_right_after_the_panel_is_swapped_is_sent_by_htmx(
    server: Server, context: BrowserContext, problems: Problems
) -> None:
    # htmx binds what a swap brings in once it settles: a press before that (20 ms by
    # default) sent the form as a plain GET, and the page reloaded.
    page = sign_in(context, server, ADMIN_TOKEN, "/admin")
    page.evaluate("() => { window.notReloaded = true; }")
    page.evaluate(
        """() => document.addEventListener("htmx:afterSwap", function once(evt) {
            // A stream's swap (the table) has no target in its detail.
            if (!evt.detail.target || evt.detail.target.id !== "admin-channels") return;
            document.removeEventListener("htmx:afterSwap", once);
            setTimeout(() => document.querySelector(
                'button[aria-label="Archive #announcements"]').click(), 0);
        })"""
    )
    form = page.locator("#admin-create")
    form.get_by_label("Name").fill("releases")
    form.get_by_label("Title").fill("Releases")
    form.get_by_label("Title").press("Enter")
    expect(page.locator("#admin-said")).to_have_text("#announcements archived.")
    assert page.evaluate("() => window.notReloaded") is True


# -- refusals: each one said where the admin is looking ------------------------------

# feed's own answer when its database cannot be reached (errors.py): JSON, no panel.
UNAVAILABLE = '{"error": "The database is unavailable; try again shortly.", "detail": null}'
# What htmx logs of a request that got no answer.
UNANSWERED = ("console error: htmx:sendError", "console error: htmx:afterRequest")


def forget_channel(server: Server, name: str) -> None:
    """Delete a channel behind the server's back, as a restore from an older backup
    would: no event says so, so an open admin page still shows its row."""
    assert server.database.startswith("sqlite:///")
    with sqlite3.connect(server.database.removeprefix("sqlite:///")) as db:
        assert db.execute("DELETE FROM channels WHERE name = ?", (name,)).rowcount == 1
    db.close()


def make_channel(server: Server, page: Page, name: str) -> None:
    created = server.client.post("/api/channels", json={"name": name, "title": name.title()})
    assert created.status_code == 201, created.text
    expect(page.locator(f"#channel-{name}")).to_be_visible(timeout=ADMIN_MS)


def echoed(page: Page, kind: str) -> None:
    """Wait until the stream has sent the change a form made (its event on top of the
    recent list, and the channels table sent with it): a swap of the table under a key
    being pressed would take the key."""
    top = page.locator("#admin-events > li").first.locator(".admin-kind")
    expect(top).to_have_text(kind, timeout=ADMIN_MS)


def described_by(page: Page, control: Locator) -> Locator:
    """The element ``control``'s aria-describedby names."""
    named = control.get_attribute("aria-describedby")
    assert named, "the control points to no description"
    return page.locator(f"#{named}")


def test_an_action_on_a_channel_gone_meanwhile_says_so_and_the_focus_goes_to_it(
    server: Server, context: BrowserContext, problems: Problems
) -> None:
    problems.allow("404 from POST")
    page = sign_in(context, server, ADMIN_TOKEN, "/admin")
    said = page.locator("#admin-said")
    for name in ("releases", "drafts"):
        make_channel(server, page, name)
    page.get_by_role("button", name="Archive #announcements").press("Enter")
    expect(said).to_have_text("#announcements archived.")
    echoed(page, "channel-archived")
    forget_channel(server, "releases")

    # Renamed: the row is gone from the answer, so the error itself takes the focus.
    title = page.get_by_label("Title of #releases")
    title.fill("Shipped")
    title.press("Enter")
    error = page.locator("#admin-channels-error")
    expect(error).to_have_text("There is no channel named 'releases'.")
    expect(error).to_have_attribute("role", "alert")
    expect(error).to_be_focused()
    expect(page.locator("#channel-releases")).to_have_count(0)
    expect(said).to_have_text("")  # what the last action did is no longer the news

    # Archived: the same, for its own channel.
    forget_channel(server, "drafts")
    page.get_by_role("button", name="Archive #drafts").press("Enter")
    expect(error).to_have_text("There is no channel named 'drafts'.")
    expect(error).to_be_focused()
    expect(page.locator("#channel-drafts")).to_have_count(0)

    # The next action that works takes the error away, and says what it did.
    page.get_by_role("button", name="Restore #announcements").press("Enter")
    expect(said).to_have_text("#announcements restored.")
    expect(error).to_have_count(0)
    expect(page.get_by_role("button", name="Archive #announcements")).to_be_focused()


def test_a_refusal_answered_without_the_panel_is_said_in_the_row_or_form_that_sent_it(
    server: Server, context: BrowserContext, problems: Problems
) -> None:
    # 403 and 503 are feed's own JSON answers; 429 and 502 a proxy's, which the form
    # cannot count on to say anything; and a request that gets no answer at all, which
    # htmx logs as errors of its own.
    problems.allow("403 from POST", "429 from POST", "502 from POST", "503 from POST")
    problems.allow(*UNANSWERED)
    page = sign_in(context, server, ADMIN_TOKEN, "/admin")
    said = page.locator("#admin-said")
    row = page.locator("#channel-general")
    title = page.get_by_label("Title of #general")
    page.get_by_role("button", name="Archive #announcements").press("Enter")
    expect(said).to_have_text("#announcements archived.")
    echoed(page, "channel-archived")

    # A page whose CSRF token is wrong (403): feed's sentence, in the row, the focus
    # kept in the field that sent it, which points to the sentence; the typing kept.
    csrf = page.evaluate("() => document.body.getAttribute('hx-headers')")
    page.evaluate("""() => document.body.setAttribute('hx-headers', '{"X-CSRF-Token": "x"}')""")
    title.fill("Everything")
    title.press("Enter")
    error = row.locator("#channel-general-error")
    expect(error).to_have_text(
        "This request came without the page's CSRF token; reload the page and try again."
    )
    expect(error).to_have_attribute("role", "alert")
    expect(title).to_be_focused()
    expect(described_by(page, title)).to_have_text(error.inner_text())
    expect(title).to_have_value("Everything")
    expect(said).to_have_text("")
    page.evaluate("csrf => document.body.setAttribute('hx-headers', csrf)", csrf)

    # The database unavailable (503): feed's sentence, which replaces the one before.
    page.route(
        "**/admin/channels/general/title",
        lambda route: route.fulfill(
            status=503,
            body=UNAVAILABLE,
            content_type="application/json",
            headers={"Retry-After": "2"},
        ),
    )
    title.press("Enter")
    expect(error).to_have_text("The database is unavailable; try again shortly.")
    expect(row.locator(".error")).to_have_count(1)
    expect(title).to_be_focused()
    page.unroute("**/admin/channels/general/title")

    # Too many requests, from a proxy that says nothing but how long to wait (429): the
    # button keeps the focus, and points to what is said.
    page.route(
        "**/admin/channels/general/replies",
        lambda route: route.fulfill(status=429, body="", headers={"Retry-After": "7"}),
    )
    replies = page.get_by_role("button", name="Turn off readers' replies in #general")
    replies.press("Enter")
    expect(error).to_have_text("Too many requests: try again in 7 s.")
    expect(replies).to_be_focused()
    expect(described_by(page, replies)).to_have_text("Too many requests: try again in 7 s.")
    expect(title).not_to_have_attribute("aria-describedby", "channel-general-error")
    page.unroute("**/admin/channels/general/replies")

    # A proxy's error page (502): said in a sentence, not put in place of the panel.
    page.route(
        "**/admin/channels/general/archive",
        lambda route: route.fulfill(
            status=502,
            body="<html><body><h1>502 Bad Gateway</h1></body></html>",
            content_type="text/html",
        ),
    )
    archive = page.get_by_role("button", name="Archive #general")
    archive.press("Enter")
    expect(error).to_contain_text("The server failed to answer (502)")
    expect(archive).to_be_focused()
    expect(page.get_by_text("502 Bad Gateway")).to_have_count(0)
    expect(page.locator("#admin-create")).to_be_visible()
    page.unroute("**/admin/channels/general/archive")

    # Another page where the panel should be (an authenticating proxy's sign-in page,
    # followed by the browser): said, not put in the panel's place either.
    page.route(
        "**/admin/channels/general/archive",
        lambda route: route.fulfill(
            status=200,
            body="<html><body><form><h1>Sign in to Example SSO</h1></form></body></html>",
            content_type="text/html",
        ),
    )
    archive.press("Enter")
    expect(error).to_contain_text("The answer was another page")
    expect(archive).to_be_focused()
    expect(page.get_by_text("Sign in to Example SSO")).to_have_count(0)
    page.unroute("**/admin/channels/general/archive")

    # No answer at all: the network is down, or the server.
    page.route("**/admin/channels/general/archive", lambda route: route.abort())
    archive.press("Enter")
    expect(error).to_contain_text("The server could not be reached")
    expect(archive).to_be_focused()
    page.unroute("**/admin/channels/general/archive")

    # The create form says its own, above its fields, its typing kept.
    page.route("**/admin/channels", lambda route: route.abort())
    form = page.locator("#admin-create")
    form.get_by_label("Name").fill("releases")
    form.get_by_label("Title").fill("Releases")
    form.get_by_label("Title").press("Enter")
    made = form.locator("#admin-create-error")
    expect(made).to_contain_text("The server could not be reached")
    expect(made).to_have_attribute("role", "alert")
    expect(form.get_by_label("Title")).to_be_focused()
    expect(form.get_by_label("Name")).to_have_value("releases")
    page.unroute("**/admin/channels")

    # Nothing of it happened.
    general = server.client.get("/api/channels").json()["channels"]
    assert [(c["name"], c["title"], c["archived"], c["replies"]) for c in general] == [
        ("announcements", "Announcements", True, True),
        ("general", "General", False, True),
    ]


def test_a_rows_error_stays_through_live_refreshes_until_the_row_is_acted_on_again(
    server: Server, context: BrowserContext, problems: Problems
) -> None:
    problems.allow("409 from POST", "422 from POST", *UNANSWERED)
    page = sign_in(context, server, ADMIN_TOKEN, "/admin")
    said = page.locator("#admin-said")
    title = page.get_by_label("Title of #general")
    title.fill("")
    title.press("Enter")
    error = page.locator("#channel-general-error")
    expect(error).to_have_text("The title must not be empty.")
    expect(title).to_have_attribute("aria-invalid", "true")

    # Someone else's change: the stream sends the table again, and the error stays,
    # with what was typed, the field still marked and still focused. It is not said
    # again: it was, once.
    make_channel(server, page, "releases")
    expect(error).to_have_text("The title must not be empty.")
    expect(title).to_have_attribute("aria-invalid", "true")
    expect(described_by(page, title)).to_have_text("The title must not be empty.")
    expect(title).to_have_value("")
    expect(title).to_be_focused()
    expect(error).not_to_have_attribute("role", "alert")

    # An error the page said itself (no answer came) stays with its row as well.
    page.route("**/admin/channels/releases/archive", lambda route: route.abort())
    page.get_by_role("button", name="Archive #releases").press("Enter")
    gone_wrong = page.locator("#channel-releases-error")
    expect(gone_wrong).to_contain_text("The server could not be reached")
    page.unroute("**/admin/channels/releases/archive")
    make_channel(server, page, "drafts")
    expect(gone_wrong).to_contain_text("The server could not be reached")
    expect(page.get_by_role("button", name="Archive #releases")).to_be_focused()

    # So does the create form's, through other forms' answers.
    form = page.locator("#admin-create")
    form.get_by_label("Name").fill("general")
    form.get_by_label("Title").fill("Twice")
    form.get_by_label("Title").press("Enter")
    taken = form.locator("#admin-create-error")
    expect(taken).to_have_text("A channel named 'general' already exists.")

    # Another row's answer swaps the whole panel: both errors stay, and so does what is
    # typed in a row that was not sent.
    page.get_by_label("Title of #drafts").fill("Half a ti")
    page.get_by_role("button", name="Archive #announcements").press("Enter")
    expect(said).to_have_text("#announcements archived.")
    expect(page.get_by_label("Title of #drafts")).to_have_value("Half a ti")
    echoed(page, "channel-archived")
    expect(page.get_by_label("Title of #drafts")).to_have_value("Half a ti")
    expect(error).to_have_text("The title must not be empty.")
    expect(title).to_have_attribute("aria-invalid", "true")
    expect(gone_wrong).to_contain_text("The server could not be reached")
    expect(taken).to_have_text("A channel named 'general' already exists.")
    expect(form.get_by_label("Name")).to_have_attribute("aria-invalid", "true")
    expect(form.get_by_label("Name")).to_have_value("general")
    expect(page.get_by_role("button", name="Restore #announcements")).to_be_focused()

    # Acting on the row again: its answer says how it went, the old error gone.
    title.fill("Everything")
    title.press("Enter")
    expect(said).to_have_text("#general is now titled “Everything”.")
    expect(error).to_have_count(0)
    expect(title).not_to_have_attribute("aria-invalid", "true")
    expect(title).to_be_focused()
    echoed(page, "channel-updated")

    # A row whose channel is gone takes its error with it.
    forget_channel(server, "releases")
    make_channel(server, page, "later")
    expect(page.locator("#channel-releases")).to_have_count(0)
    expect(gone_wrong).to_have_count(0)

    # An answer that comes once the stream has swapped the table, and the form that
    # asked with it: said in the row that form was in, at the button of the same id.
    held: list[Route] = []
    page.route("**/admin/channels/general/archive", lambda route: held.append(route))
    archive = page.get_by_role("button", name="Archive #general")
    archive.press("Enter")
    make_channel(server, page, "latest")
    assert len(held) == 1, "the archive request was not held"
    held[0].abort()
    expect(error).to_contain_text("The server could not be reached")
    expect(error).to_have_attribute("role", "alert")
    expect(archive).to_be_focused()
    expect(described_by(page, archive)).to_contain_text("The server could not be reached")
