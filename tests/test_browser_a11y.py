"""Keyboard, focus and contrast in a real Chromium: the channel bar at 200% zoom, the
focus kept on a reaction through a live edit and moved on past a live delete, posts
in the document in the order they are shown, the kiosk out of the tab order, the
admin page without sideways scrolling, and counts and an offline kiosk's posts that
keep their contrast."""

from __future__ import annotations

import signal
from collections.abc import Callable

import pytest
from playwright.sync_api import BrowserContext, Page, expect

from tests.auth import bearer
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
    seed_sample_feed,
    shown_ids,
    sign_in,
    wait_applied,
)
from tests.conftest import Server
from tests.test_kiosk import OUTAGE

pytestmark = pytest.mark.browser
__all__ = ["browser", "context", "problems"]

PARTY = "\U0001f389"
HEARTBEAT = 0.5  # seconds; a kiosk shows itself offline after two silent intervals
# Who reacted, in names long enough to overflow a phone: one has no place to break.
LONG_NAMES = (
    "Maximiliana Oyelaran-Featherstonehaugh",
    "Wolfeschlegelsteinhausenbergerdorff",
    "Bartholomew Alexandrescu-Montgomery",
    "Anneliese Vandenberghe-Kowalczykowska",
)


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


def test_who_reacted_stays_inside_a_320_px_screen_and_escape_dismisses_it(
    server: Server, context: BrowserContext, problems: Problems
) -> None:
    post_id = server.post("react to me")["post"]["id"]
    for name in LONG_NAMES:
        answer = server.client.put(
            f"/api/posts/{post_id}/reactions/{PARTY}", headers=bearer(server.token(name))
        )
        assert answer.status_code == 200, answer.text
    page = sign_in(context, server, server.token("ada"))
    page.set_viewport_size({"width": 320, "height": 700})
    chips = page.locator(f"#reactions-{post_id} .chip")
    assert chips.count() > 1
    for n in range(chips.count()):
        chip = chips.nth(n)
        chip.focus()
        tip = page.locator(f"#{chip.get_attribute('aria-describedby')}")
        expect(tip).to_be_visible()
        box = tip.bounding_box()
        assert box is not None
        assert box["x"] >= 0 and box["x"] + box["width"] <= 320, (n, box)
        assert box["y"] >= 0 and box["y"] + box["height"] <= 700, (n, box)
    assert page.evaluate("document.documentElement.scrollWidth") <= 320

    party = page.locator(f'#reactions-{post_id} .chip[data-reaction="{PARTY}"]')
    tip = page.locator(f"#{party.get_attribute('aria-describedby')}")
    party.focus()
    expect(tip).to_contain_text(LONG_NAMES[0])
    expect(tip).to_be_visible()
    page.keyboard.press("Escape")
    expect(tip).to_be_hidden()
    expect(party).to_be_focused()
    # Back on the chip, it shows again; and Escape dismisses one shown by the pointer.
    page.keyboard.press("Tab")
    page.keyboard.press("Shift+Tab")
    expect(party).to_be_focused()
    expect(tip).to_be_visible()
    party.blur()
    party.hover()
    expect(tip).to_be_visible()
    page.keyboard.press("Escape")
    expect(tip).to_be_hidden()


def test_who_reacted_stays_while_the_pointer_moves_onto_it(
    server: Server, context: BrowserContext, problems: Problems
) -> None:
    # Hoverable (WCAG 1.4.13): the pointer can go from the chip to the names, across the
    # gap between them, to read a long list, and the names stay.
    post_id = server.post("react to me")["post"]["id"]
    answer = server.client.put(
        f"/api/posts/{post_id}/reactions/{PARTY}", headers=bearer(server.token("bo"))
    )
    assert answer.status_code == 200, answer.text
    page = sign_in(context, server, server.token("ada"))
    chip = page.locator(f'#reactions-{post_id} .chip[data-reaction="{PARTY}"]')
    tip = page.locator(f"#{chip.get_attribute('aria-describedby')}")
    chip.hover()
    expect(tip).to_be_visible()
    start, end = chip.bounding_box(), tip.bounding_box()
    assert start is not None and end is not None and end["y"] > start["y"] + start["height"]
    x = end["x"] + min(end["width"], start["width"]) / 2
    page.mouse.move(x, start["y"] + start["height"] / 2)
    page.mouse.move(x, end["y"] + end["height"] / 2, steps=12)
    expect(tip).to_be_visible()
    expect(tip).to_contain_text("bo")
    # Away from both, it goes.
    page.mouse.move(x, end["y"] + end["height"] + 200, steps=4)
    expect(tip).to_be_hidden()


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


# The contrast of an element's text with what is behind it: its ancestors' backgrounds
# composited from the first opaque one, the text faded by every opacity on the way.
# Colours are read back through a canvas, which takes any CSS colour (color-mix, oklab).
RATIO = """(el) => {
  const canvas = document.createElement("canvas");
  canvas.width = canvas.height = 1;
  const paint = canvas.getContext("2d", { willReadFrequently: true });
  const rgba = (css) => {
    paint.clearRect(0, 0, 1, 1);
    paint.fillStyle = css;
    paint.fillRect(0, 0, 1, 1);
    const [r, g, b, a] = paint.getImageData(0, 0, 1, 1).data;
    return [r, g, b, a / 255];
  };
  const over = (top, under) => top.slice(0, 3).map((v, i) => v * top[3] + under[i] * (1 - top[3]));
  const layers = [];
  let opacity = 1;
  for (let node = el; node; node = node.parentElement) {
    const style = getComputedStyle(node);
    opacity *= Number(style.opacity);
    const colour = rgba(style.backgroundColor);
    if (layers.length && layers[layers.length - 1][3] >= 1) continue;
    if (colour[3] > 0) layers.push(colour);
  }
  const bg = layers.reverse().reduce((under, top) => over(top, under), [255, 255, 255]);
  const text = rgba(getComputedStyle(el).color);
  const fg = over([...text.slice(0, 3), text[3] * opacity], bg);
  const lum = (rgb) => {
    const [r, g, b] = rgb.map((v) => {
      v /= 255;
      return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
    });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const [light, dark] = [lum(fg), lum(bg)].sort((x, y) => y - x);
  return (light + 0.05) / (dark + 0.05);
}"""


def contrast(page: Page, selector: str) -> float:
    """The contrast ratio of ``selector``'s text with what is behind it."""
    ratio: float = page.eval_on_selector(selector, RATIO)
    return ratio


def low_contrast(page: Page, scope: str, least: float = 4.5) -> list[tuple[str, float]]:
    """Every shown text in ``scope`` whose contrast is under ``least``, with it.

    A CSS filter would change colours past what the figure counts: one on the way to a
    text counts as a failure too (ratio 0)."""
    found: list[tuple[str, float]] = page.eval_on_selector_all(
        f"{scope}, {scope} *",
        f"""(els, least) => {{
          const ratio = {RATIO};
          const filtered = (el) => {{
            for (let n = el; n; n = n.parentElement) {{
              if (getComputedStyle(n).filter !== "none") return true;
            }}
            return false;
          }};
          return els
            .filter((el) => el.checkVisibility() && [...el.childNodes].some(
              (n) => n.nodeType === Node.TEXT_NODE && n.textContent.trim()))
            .map((el) => [el.textContent.trim().slice(0, 40), filtered(el) ? 0 : ratio(el)])
            .filter(([, r]) => r < least);
        }}""",
        least,
    )
    return found


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


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_an_offline_kiosk_greys_its_posts_and_keeps_their_text_readable(
    make_server: Callable[..., Server], context: BrowserContext, problems: Problems, theme: str
) -> None:
    problems.allow(*OUTAGE)
    server = make_server(heartbeat=HEARTBEAT)
    seed_sample_feed(server)
    kiosk = open_live(context, f"{server.url}/kiosk?theme={theme}")
    assert low_contrast(kiosk, "#posts") == []
    live_look = look(kiosk, ".post .body")

    server.stop(signal.SIGKILL)
    expect(kiosk.locator("#stale")).to_be_visible(timeout=2 * HEARTBEAT * 1000 + 1000)
    expect(kiosk.locator("#stale")).to_contain_text("Offline since")
    assert low_contrast(kiosk, "#posts") == []
    assert low_contrast(kiosk, "#stale") == []
    # Still visibly not live: the posts look otherwise, besides the notice.
    assert look(kiosk, ".post .body") != live_look


def look(page: Page, selector: str) -> list[list[str]]:
    """What decides how ``selector``'s text looks, on it and every ancestor."""
    found: list[list[str]] = page.eval_on_selector(
        selector,
        """el => {
          const seen = [];
          for (let n = el; n; n = n.parentElement) {
            const s = getComputedStyle(n);
            seen.push([s.color, s.backgroundColor, s.opacity, s.filter]);
          }
          return seen;
        }""",
    )
    return found
