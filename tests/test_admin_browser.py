"""The admin page in Chromium, used from the keyboard: a live refresh of the channel
table keeps what is being typed in it, its focus and its caret, and each form's answer
leaves the focus where the admin goes on from, and says what it did."""

from __future__ import annotations

import pytest
from playwright.sync_api import BrowserContext, Page, expect

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
            if (evt.detail.target.id !== "admin-channels") return;
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
