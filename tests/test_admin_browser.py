"""The admin page in Chromium, used from the keyboard: a live refresh of the channel
table keeps what is being typed in it, its focus and its caret."""

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
