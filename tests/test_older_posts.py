"""Every post is reachable on a dashboard and a channel page: the first page, then each
"Older posts" page, hold every post once, in the order of the list's rule (lists.py,
on the dashboard), also with more pinned posts than the pinned section holds.

Against a real ``feed serve`` with a small page size, walking the links a reader
follows: the page's own "Older posts" URL, then each page's next one.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable

from tests.conftest import Server

PAGE_SIZE = 3  # small, so a few pinned posts fill the pinned section
ARTICLE = re.compile(r'<article id="post-(\d+)"')
OLDER = re.compile(r'<div class="older" data-floor="(\d+)" data-url="([^"]+)"')


def walk(server: Server, path: str) -> list[int]:
    """The post ids of ``path`` and of every "Older posts" page after it, in order."""
    page = server.client.get(path)
    assert page.status_code == 200, page.text
    text, shown = page.text, []
    while True:
        ids = [int(n) for n in ARTICLE.findall(text)]
        shown += ids
        older = OLDER.search(text)
        if older is None:
            return shown
        # The floor the page keeps is the oldest post it has loaded.
        assert int(older.group(1)) == ids[-1]
        part = server.client.get(html.unescape(older.group(2)))
        assert part.status_code == 200, part.text
        text = part.text


def posted(server: Server, count: int, channel: str = "general") -> list[int]:
    return [
        server.post(f"post {n} in {channel}", channel=channel)["post"]["id"] for n in range(count)
    ]


def pin(server: Server, *ids: int) -> None:
    for post_id in ids:
        assert server.client.post(f"/api/posts/{post_id}/pin").status_code == 200


def test_a_channel_page_reaches_its_pinned_posts_past_the_pinned_section(
    make_server: Callable[..., Server],
) -> None:
    server = make_server(page_size=PAGE_SIZE)
    ids = posted(server, 10)
    pin(server, *ids[:5])
    # The newest three pinned posts on top; the two older pinned ones in their place
    # among the others, where "Older posts" reaches them.
    expected = [ids[4], ids[3], ids[2], *ids[:4:-1], ids[1], ids[0]]
    assert walk(server, "/channels/general") == expected


def test_the_dashboard_reaches_pinned_posts_of_every_channel_past_the_pinned_section(
    make_server: Callable[..., Server],
) -> None:
    server = make_server(page_size=PAGE_SIZE)
    general = posted(server, 4)
    news = posted(server, 4, channel="announcements")
    # Two pinned posts in each channel: four on the dashboard of all of them.
    pin(server, general[0], general[2], news[1], news[3])
    section = [news[3], news[1], general[2]]
    rest = [news[2], news[0], general[3], general[1], general[0]]
    assert walk(server, "/") == [*section, *rest]
    # Each channel's page holds its own two, both in its section.
    assert walk(server, "/channels/general") == [general[2], general[0], general[3], general[1]]


def test_a_channel_page_without_pinned_posts_past_its_section_pages_as_before(
    make_server: Callable[..., Server],
) -> None:
    server = make_server(page_size=PAGE_SIZE)
    ids = posted(server, 7)
    pin(server, ids[0], ids[5])
    assert walk(server, "/channels/general") == [ids[5], ids[0], ids[6], *ids[4:0:-1]]
