"""The lists pages show, as rules: what a dashboard and a kiosk show given the
database's posts, and in which order. The page renders a list by its rule (pages.py,
kiosk.py), and feed-lists.js keeps it after every event, live or replayed:

1. The kiosk (``kiosk_window``): pinned posts first, then the newest others,
   ``KIOSK_POSTS`` (kiosk.py) in all. When a post leaves that window (deleted, or
   unpinned and older than the rest), the one that takes its place was never sent to
   the page: feed-refetch.js re-fetches the list (``/partials/kiosk``, with its
   snapshot id). Its pinned posts are a section too (rationale 2), of up to
   ``KIOSK_POSTS``, and the newest others fill what it leaves; having no "Older
   posts", a kiosk shows nothing past its window, pinned or not.
2. The dashboard (``dashboard_window``): its *pinned section*, its newest ``page_size``
   pinned posts, and its *history*, every other post, pinned or not, down to its
   *floor*, the oldest post of its history it has loaded: the last one of the first
   page if that page was full, else 0 (it shows them all). So it shows its pinned
   posts, its first page, and everything that arrived since. "Older posts" loads the
   next page of history and lowers the floor to that page's last post (0 after the
   last page); the floor rides on the button (``data-floor``). A pinned post past the
   section is in its chronological place in the history, still marked pinned, so
   "Older posts" reaches it like any other: with many channels on one dashboard the
   section fills easily, and a post left out of both would be shown nowhere. The
   section stays bounded, so a feed with many pinned posts does not push its news
   below the fold; and the history is the one list of everything else, so every
   post is on exactly one of the section and the pages of history
   (storage/lists.py, on a list's pinned section).
3. A post of the history under the dashboard's floor leaves the page (unpinned there,
   or pushed out of a full section by a newer pin): it is back in its place in
   history, where "Older posts" finds it once. Kept in place instead, it would show
   among newer posts as if it were one of them, and a later page of older posts
   would bring it a second time.
4. A dashboard whose full section loses a post (unpinned, deleted) moves the newest
   pinned post of its history up into the section. If that post is under its floor,
   the page was never sent it: as the kiosk does, it re-fetches its list, since only
   the server knows the post. The re-fetched list is the first page again, with its
   floor. With no floor (every post loaded), the page has them all and asks nothing.
5. A list's document order is the order it is shown in, so that the keyboard and a
   screen reader meet the posts as the eye does: the dashboard's pinned section, then
   its history; the kiosk's headline (its newest unpinned post), its pinned posts,
   then the others; each part newest first. The stylesheet moves nothing (no ``order``), and
   feed-lists.js moves a card whose place changes live (feed-lists.js, on order).
"""

from __future__ import annotations

from typing import Any

from feed.render import page_url
from feed.values import FrontPage, PostView


def _newest_first(posts: list[PostView]) -> list[PostView]:
    return sorted(posts, key=lambda p: p.id, reverse=True)


def _sections(posts: list[PostView], size: int) -> tuple[list[PostView], list[PostView]]:
    """A list's pinned section, its newest ``size`` pinned posts, and every other post,
    each newest first (rationale 2)."""
    ordered = _newest_first(posts)
    section = [p for p in ordered if p.pinned][:size]
    kept = {p.id for p in section}
    return section, [p for p in ordered if p.id not in kept]


def dashboard_window(posts: list[PostView], size: int, floor: int) -> list[PostView]:
    """What a dashboard shows (rationale 2, 3): its pinned section, its newest ``size``
    pinned posts, then every other post down to ``floor``, each newest first
    (rationale 5). feed-lists.js keeps the live list by the same rule; a first page is
    this rule applied to ``front_page``."""
    section, history = _sections(posts, size)
    return [*section, *(p for p in history if p.id >= floor)]


def first_page(page: FrontPage, size: int) -> list[PostView]:
    """A dashboard's first page: its rule down to the floor its page of history set."""
    return dashboard_window(page.posts, size, page.older_before or 0)


def kiosk_window(posts: list[PostView], size: int) -> list[PostView]:
    """What a kiosk shows (rationale 1): pinned posts first, then the newest others,
    ``size`` in all; in the order it shows them (rationale 5): the newest unpinned post
    (its headline), the pinned ones, then the others, each newest first. feed-lists.js
    keeps the live list by the same rule."""
    section, others = _sections(posts, size)
    recent = others[: size - len(section)]
    return [*recent[:1], *section, *recent[1:]]


def list_context(
    posts: list[PostView], channel: str | None, before: int | None, older_before: int | None
) -> dict[str, Any]:
    """What partials/posts.html needs of a list: its posts, and where its "Older
    posts" button leads, if it has one."""
    older_url = older_before and page_url("/partials/posts", channel=channel, before=older_before)
    return {
        "posts": posts,
        "before": before,
        "older_before": older_before,
        "older_url": older_url,
    }
