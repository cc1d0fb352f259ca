"""Keyboard, focus and contrast in a real Chromium: the channel bar at 200% zoom, the
focus kept on a reaction through a live edit and moved on past a live delete, posts
in the document in the order they are shown, the kiosk out of the tab order, the
admin page without sideways scrolling, and counts that keep their contrast."""

from __future__ import annotations

import pytest
from playwright.sync_api import BrowserContext, Page, expect

from tests.browser import (
    LIVE_MS,
    Problems,
    browser,
    context,
    ok,
    open_live,
    post_el,
    problems,
    render_ids,
    shown_ids,
    sign_in,
    wait_applied,
)
from tests.conftest import Server

pytestmark = pytest.mark.browser
__all__ = ["browser", "context", "problems"]

PARTY = "\U0001f389"


def focused_id(page: Page) -> str:
    found: str = page.evaluate(
        "() => { const a = document.activeElement;"
        " return (a && (a.id || (a.closest('[id]') || {}).id)) || 'BODY'; }"
    )
    return found


def test_the_channels_stay_in_view_at_every_width_a_zoomed_laptop_gives(
    server: Server, context: BrowserContext, problems: Problems
) -> None:
    sign_in(context, server, server.token("ada")).close()
    page = context.new_page()
    for width in (360, 641, 700, 760, 900, 1280):
        page.set_viewport_size({"width": width, "height": 800})
        page.goto(server.url)
        link = page.locator(".bar nav a", has_text="general")
        box = link.bounding_box()
        assert box is not None and box["width"] > 20, (width, box)
        nav = page.locator(".bar nav").bounding_box()
        assert nav is not None and nav["width"] >= box["width"], (width, nav, box)
        # Nothing scrolls sideways.
        assert page.evaluate("document.documentElement.scrollWidth") <= width


def test_a_live_edit_keeps_the_focus_on_the_readers_chip_and_a_delete_moves_it_on(
    server: Server, context: BrowserContext, problems: Problems
) -> None:
    first = server.post("first")["post"]["id"]
    second = server.post("second")["post"]["id"]
    page = sign_in(context, server, server.token("ada"))
    chip = page.locator(f'#reactions-{second} .chip[data-reaction="{PARTY}"]')
    chip.focus()
    edited = server.client.patch(f"/api/posts/{second}", json={"body": "second, edited"})
    wait_applied(page, edited.json()["event_id"])
    expect(post_el(page, second).locator(".body")).to_have_text("second, edited")
    expect(chip).to_be_focused()
    pinned = server.client.post(f"/api/posts/{second}/pin")
    wait_applied(page, pinned.json()["event_id"])
    expect(chip).to_be_focused()
    # The post that holds the focus goes: the focus goes to the next one, not the top.
    gone = server.client.delete(f"/api/posts/{second}")
    wait_applied(page, gone.json()["event_id"])
    expect(post_el(page, second)).to_have_count(0)
    assert focused_id(page) == f"post-{first}"
    page.keyboard.press("Tab")
    assert focused_id(page) in (f"post-{first}", f"reactions-{first}"), focused_id(page)


def assert_read_as_shown(page: Page) -> None:
    """The posts' document order (the keyboard's and a screen reader's) is the order
    they are seen in: row by row from the top, left to right within a row."""
    spots: list[list[int]] = page.eval_on_selector_all(
        "#posts > .post",
        """els => els.map(el => {
          const box = el.getBoundingClientRect();
          return [Math.round(box.top), Math.round(box.left)];
        })""",
    )
    assert spots == sorted(spots), spots


def test_a_channel_page_has_its_pinned_posts_first_in_the_document_too_live_and_refetched(
    server: Server, context: BrowserContext, problems: Problems
) -> None:
    a, b, c = (server.post(text)["post"]["id"] for text in ("a", "b", "c"))
    ok(server.client.post(f"/api/posts/{a}/pin"))
    page = sign_in(context, server, server.token("ada"), "/channels/general")
    assert shown_ids(page) == [a, c, b]
    assert_read_as_shown(page)

    # Pinned live, the card moves up among the pinned ones, the focus still on its chip.
    chip = page.locator(f'#reactions-{b} .chip[data-reaction="{PARTY}"]')
    chip.focus()
    wait_applied(page, ok(server.client.post(f"/api/posts/{b}/pin"))["event_id"])
    assert shown_ids(page) == [b, a, c]
    expect(chip).to_be_focused()
    # A new post goes under the pinned ones, where it is shown.
    d = server.post("d")
    wait_applied(page, d["event_id"])
    assert shown_ids(page) == [b, a, d["post"]["id"], c]
    # Unpinned, a post goes back among the others, in its place by age.
    wait_applied(page, ok(server.client.post(f"/api/posts/{a}/unpin"))["event_id"])
    assert shown_ids(page) == [b, d["post"]["id"], c, a]
    expect(chip).to_be_focused()
    assert_read_as_shown(page)
    # A card that moves keeps what is typed in its open thread, the focus and the caret.
    page.locator(f"#post-{c} .thread-toggle").click()
    box = page.locator(f"#reply-form-{c}").get_by_label("Reply")
    box.fill("half a reply")
    box.evaluate("el => el.setSelectionRange(4, 4)")
    wait_applied(page, ok(server.client.post(f"/api/posts/{c}/pin"))["event_id"])
    assert shown_ids(page) == [c, b, d["post"]["id"], a]
    expect(box).to_be_focused()
    expect(box).to_have_value("half a reply")
    assert box.evaluate("el => [el.selectionStart, el.selectionEnd]") == [4, 4]
    # What a re-fetch brings (after a resync) is in the same order.
    assert shown_ids(page) == render_ids(server, "/partials/posts?channel=general")
    assert shown_ids(page) == render_ids(server, "/channels/general")


def test_a_kiosk_has_its_headline_then_its_pinned_posts_first_in_the_document_too(
    server: Server, context: BrowserContext, problems: Problems
) -> None:
    a, b, c, d = (server.post(text)["post"]["id"] for text in ("a", "b", "c", "d"))
    ok(server.client.post(f"/api/posts/{b}/pin"))
    kiosk = open_live(context, f"{server.url}/kiosk")
    # The newest post is the headline, then the pinned ones, then the rest.
    assert shown_ids(kiosk) == [d, b, c, a]
    assert_read_as_shown(kiosk)

    e = server.post("e")
    wait_applied(kiosk, e["event_id"])
    e_id = e["post"]["id"]
    assert shown_ids(kiosk) == [e_id, b, d, c, a]
    wait_applied(kiosk, ok(server.client.post(f"/api/posts/{c}/pin"))["event_id"])
    assert shown_ids(kiosk) == [e_id, c, b, d, a]
    # The headline pinned: the next newest post takes its place.
    wait_applied(kiosk, ok(server.client.post(f"/api/posts/{e_id}/pin"))["event_id"])
    assert shown_ids(kiosk) == [d, e_id, c, b, a]
    assert_read_as_shown(kiosk)
    assert shown_ids(kiosk) == render_ids(server, "/partials/kiosk", anonymous=True)
    assert shown_ids(kiosk) == render_ids(server, "/kiosk", anonymous=True)


def test_a_kiosk_takes_no_keyboard_focus(
    server: Server, context: BrowserContext, problems: Problems
) -> None:
    server.post("a [link](https://example.invalid/) in a post")
    kiosk = open_live(context, f"{server.url}/kiosk")
    late = server.post("and [another](https://example.invalid/2)")
    wait_applied(kiosk, late["event_id"])
    expect(post_el(kiosk, late["post"]["id"])).to_be_visible(timeout=LIVE_MS)
    for _ in range(5):
        kiosk.keyboard.press("Tab")
        assert focused_id(kiosk) == "BODY" or kiosk.evaluate(
            "!document.activeElement.closest('#posts')"
        ), focused_id(kiosk)
    assert kiosk.evaluate("document.querySelector('#posts').scrollTop") == 0
    assert kiosk.url.endswith("/kiosk")


def test_the_admin_page_does_not_scroll_sideways_on_a_phone(
    server: Server, context: BrowserContext, problems: Problems
) -> None:
    page = sign_in(context, server, server.token("root", "admin"), "/admin")
    page.set_viewport_size({"width": 320, "height": 700})
    page.reload()
    assert page.evaluate("document.documentElement.scrollWidth") <= 320


def contrast(page: Page, selector: str) -> float:
    """The contrast ratio of ``selector``'s text with the card behind it."""
    ratio: float = page.evaluate(
        """(selector) => {
          const el = document.querySelector(selector);
          const rgb = (c) => c.match(/[\\d.]+/g).slice(0, 4).map(Number);
          const lum = ([r, g, b]) => {
            const f = (v) => {
              v /= 255;
              return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
            };
            return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
          };
          let node = el, bg = null;
          while (node && !bg) {
            const c = getComputedStyle(node).backgroundColor;
            if (c && !c.startsWith("rgba(0, 0, 0, 0)") && c !== "transparent") bg = rgb(c);
            node = node.parentElement;
          }
          let fg = rgb(getComputedStyle(el).color);
          let opacity = 1;
          for (let n = el; n; n = n.parentElement) opacity *= Number(getComputedStyle(n).opacity);
          fg = fg.slice(0, 3).map((v, i) => v * opacity + bg[i] * (1 - opacity));
          const [a, b] = [lum(fg), lum(bg)].sort((x, y) => y - x);
          return (a + 0.05) / (b + 0.05);
        }""",
        selector,
    )
    return ratio


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_a_reaction_nobody_made_yet_keeps_its_contrast(
    server: Server, context: BrowserContext, problems: Problems, scheme: str
) -> None:
    post_id = server.post("react to me")["post"]["id"]
    page = sign_in(context, server, server.token("ada"))
    page.emulate_media(color_scheme=scheme)  # type: ignore[arg-type]
    selector = f'#reactions-{post_id} .chip[data-count="0"] .count'
    expect(page.locator(selector).first).to_be_visible()
    assert contrast(page, selector) >= 4.5
