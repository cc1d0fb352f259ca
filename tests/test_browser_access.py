"""Accessibility of every page, in a real Chromium: an axe-core audit in light and dark
themes, the keyboard (every control reached, each with a visible focus ring, and
usable), and reduced motion.

axe-core is vendored under tests/vendor/axe-core (its minified file and licence): the
audit never loads anything from elsewhere. It is put into the page through the
DevTools protocol (``page.evaluate``), which the pages' Content-Security-Policy does
not govern, so the pages are audited with the policy they are served with.
Waits are Playwright waits with deadlines, never sleeps.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from tests.auth import ADMIN_TOKEN
from tests.browser import (
    FROZEN_NOW,
    LIVE_MS,
    Database,
    Problems,
    browser,
    context,
    database,
    new_context,
    open_live,
    problems,
    seed_sample_feed,
    sign_in,
)
from tests.conftest import Server

pytestmark = pytest.mark.browser
__all__ = ["browser", "context", "database", "problems"]  # fixtures

SCHEMES: tuple[Literal["light", "dark"], ...] = ("light", "dark")
AXE = (Path(__file__).parent / "vendor" / "axe-core" / "axe.min.js").read_text()

# The violations that fail a page, with where they are.
AUDIT = """async () => {
    const result = await axe.run(document, { resultTypes: ["violations"] });
    return result.violations
        .filter(v => v.impact === "serious" || v.impact === "critical")
        .map(v => ({ rule: v.id, impact: v.impact, help: v.help,
                     where: v.nodes.slice(0, 5).map(n => n.target.join(" ")) }));
}"""

# What shows where the focus is: the outline, and a ring drawn as a box-shadow.
FOCUSED = """() => {
    const el = document.activeElement;
    if (!el || el === document.body) return null;
    const style = getComputedStyle(el);
    return {
        tag: el.tagName.toLowerCase(), id: el.id, text: (el.textContent || "").trim().slice(0, 40),
        name: el.getAttribute("name") || el.getAttribute("aria-label") || "",
        outline: style.outlineStyle, outlineWidth: parseFloat(style.outlineWidth) || 0,
        shadow: style.boxShadow,
        visible: el.getClientRects().length > 0,
    };
}"""

# Every control a person may use on the page, as FOCUSED names them.
CONTROLS = """() => [...document.querySelectorAll(
    "a[href], button, select, textarea, input:not([type=hidden])")]
    .filter(el => !el.disabled && el.getClientRects().length > 0)
    .map(el => [el.tagName.toLowerCase(), (el.textContent || "").trim().slice(0, 40),
                el.getAttribute("name") || el.getAttribute("aria-label") || ""])"""

# Every animation and transition still running, on elements and their ::before/::after.
MOVING = """() => {
    const found = [];
    for (const el of document.querySelectorAll("*")) {
        for (const pseudo of [null, "::before", "::after"]) {
            const style = getComputedStyle(el, pseudo);
            const name = (el.className && typeof el.className === "string")
                ? el.tagName.toLowerCase() + "." + el.className.split(" ").join(".")
                : el.tagName.toLowerCase();
            const where = name + (pseudo || "");
            const animation = style.animationName;
            if (animation !== "none") found.push(`${where} animation ${animation}`);
            const moves = style.transitionDuration.split(",").some(d => parseFloat(d) > 0);
            if (moves) found.push(`${where} transition ${style.transitionProperty}`);
        }
    }
    return found;
}"""


def audit(page: Page) -> list[dict[str, Any]]:
    if not page.evaluate("typeof axe !== 'undefined'"):
        page.evaluate(AXE)
    found: list[dict[str, Any]] = page.evaluate(AUDIT)
    return found


def admin_page(ctx: BrowserContext, server: Server) -> Page:
    return sign_in(ctx, server, ADMIN_TOKEN, next_path="/admin")


def signed_in_dashboard(ctx: BrowserContext, server: Server) -> Page:
    sign_in(ctx, server, server.token("Ada", "writer")).close()
    return open_live(ctx, server.url, frozen=FROZEN_NOW)


def a_thread(server: Server) -> int:
    """A post with a reply, for the pages that show a thread."""
    parent: int = server.post("A thread to audit")["post"]["id"]
    answer = server.client.post(f"/api/posts/{parent}/replies", json={"body": "A *reply*"})
    assert answer.status_code == 201, answer.text
    return parent


def thread_page(ctx: BrowserContext, server: Server) -> Page:
    parent = a_thread(server)
    sign_in(ctx, server, server.token("Ada", "writer")).close()
    return open_live(ctx, f"{server.url}/posts/{parent}", frozen=FROZEN_NOW)


def dashboard_with_a_thread_open(ctx: BrowserContext, server: Server) -> Page:
    parent = a_thread(server)
    page = signed_in_dashboard(ctx, server)
    page.locator(f"#post-{parent} .thread-toggle").click()
    expect(page.locator(f"#reply-form-{parent}")).to_be_visible()
    return page


PAGES: dict[str, Callable[[BrowserContext, Server], Page]] = {
    "dashboard": signed_in_dashboard,
    "channel": lambda ctx, server: open_live(ctx, f"{server.url}/channels/general"),
    "kiosk": lambda ctx, server: open_live(ctx, f"{server.url}/kiosk", frozen=FROZEN_NOW),
    "admin": admin_page,
    "sign-in": lambda ctx, server: _goto(ctx, f"{server.url}/signin"),
    "thread": thread_page,
    "dashboard, a thread open": dashboard_with_a_thread_open,
    "search": lambda ctx, server: _goto(ctx, f"{server.url}/search?q=release+search*"),
    "kiosk search": lambda ctx, server: open_live(
        ctx, f"{server.url}/kiosk?q=release", frozen=FROZEN_NOW
    ),
}


def _goto(ctx: BrowserContext, url: str) -> Page:
    page = ctx.new_page()
    page.goto(url)
    return page


def test_axe_finds_nothing_serious_on_any_page(
    server: Server, browser: Browser, problems: Problems
) -> None:
    seed_sample_feed(server)
    found = {}
    for name, open_page in PAGES.items():
        ctx = new_context(browser, problems)
        try:
            page = open_page(ctx, server)
            # The theme follows a media query alone (feed.css), so one page loaded
            # once is audited in each: what takes the time is opening the page.
            for scheme in SCHEMES:
                page.emulate_media(color_scheme=scheme)
                assert page.evaluate(f"matchMedia('(prefers-color-scheme: {scheme})').matches")
                violations = audit(page)
                if violations:
                    found[f"{name}, {scheme}"] = violations
        finally:
            ctx.close()
    assert found == {}
    problems.assert_none()


def test_every_dashboard_control_is_reached_by_keyboard_with_a_visible_ring(
    make_server: Callable[..., Server], context: BrowserContext, database: Database
) -> None:
    server = make_server(page_size=3)
    for n in range(5):
        database.post(f"Post number {n} in #general", channel=("general", "announcements")[n % 2])
    page = signed_in_dashboard(context, server)
    controls = page.evaluate(CONTROLS)
    assert len(controls) > 10, controls

    reached: list[dict[str, Any]] = []
    page.locator("body").focus()
    for _ in range(len(controls) + 5):
        page.keyboard.press("Tab")
        focused = page.evaluate(FOCUSED)
        if focused is None or (reached and focused == reached[0]):
            break
        reached.append(focused)
    names = [[f["tag"], f["text"], f["name"]] for f in reached]
    assert sorted(names) == sorted(controls), "not every control is reached by Tab"
    unringed = [
        f
        for f in reached
        if not f["visible"]
        or not (
            (f["outline"] not in ("none", "auto") and f["outlineWidth"] >= 2)
            or f["shadow"] not in ("none", "")
        )
    ]
    assert unringed == [], "focus without a visible ring"

    # Usable too: a post written and sent from the keyboard alone.
    page.locator("#compose textarea").focus()
    page.keyboard.type("Typed without a mouse")
    page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="Post", exact=True)).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("#posts .post .body").first).to_have_text(
        "Typed without a mouse", timeout=LIVE_MS
    )
    # "Older posts" from the keyboard, then a channel link from the nav.
    page.get_by_role("button", name="Older posts").focus()
    page.keyboard.press("Enter")
    expect(page.locator("#posts .post")).to_have_count(6)
    page.get_by_role("navigation", name="Channels").get_by_role("link", name="#general").focus()
    page.keyboard.press("Enter")
    page.wait_for_url(f"{server.url}/channels/general")


@pytest.mark.parametrize("path", ["/", "/kiosk", "/admin", "/signin"])
def test_reduced_motion_stops_every_animation_but_the_kiosk_drift(
    server: Server, browser: Browser, problems: Problems, path: str
) -> None:
    server.post("Something to show")
    still = new_context(browser, problems, reduced_motion="reduce")
    moving = new_context(browser, problems, reduced_motion="no-preference")
    try:
        pages = []
        for ctx in (still, moving):
            if path == "/admin":
                pages.append(admin_page(ctx, server))
            elif path == "/signin":
                pages.append(_goto(ctx, f"{server.url}{path}"))
            else:
                pages.append(open_live(ctx, f"{server.url}{path}"))
        drift = ["main.kiosk-frame animation drift"] if path == "/kiosk" else []
        assert pages[0].evaluate(MOVING) == drift
        # Without the preference the same page does move (the live badge pulses), so
        # the check above can tell the two apart.
        if path != "/signin":
            assert pages[1].evaluate(MOVING) != drift
    finally:
        still.close()
        moving.close()
    problems.assert_none()
