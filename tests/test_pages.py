"""Server-rendered pages and partials (in-process; the live part is in test_browser)."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from starlette.testclient import TestClient

from feed.kiosk import KIOSK_POSTS
from feed.lists import dashboard_window, kiosk_window
from feed.render import PACKAGE_DIR, templates_dir
from feed.values import PostView


def posted(client: TestClient, body: str, channel: str = "general") -> tuple[int, int]:
    """A new post's id and its event's."""
    response = client.post(f"/api/channels/{channel}/posts", json={"body": body})
    assert response.status_code == 201
    return response.json()["post"]["id"], response.json()["event_id"]


def post(client: TestClient, body: str, channel: str = "general") -> int:
    return posted(client, body, channel)[0]


def edit(client: TestClient, post_id: int, body: str) -> int:
    """Edit a post; its event's id."""
    event_id: int = client.patch(f"/api/posts/{post_id}", json={"body": body}).json()["event_id"]
    return event_id


SCRIPT = re.compile(r'<script src="/static/([^"]+)">')


def article_ids(html: str) -> list[int]:
    return [int(x) for x in re.findall(r'<article id="post-(\d+)"', html)]


def test_dashboard_renders_posts_newest_first_and_connects_after_them(
    client: TestClient,
) -> None:
    first = post(client, "first *post*")
    second = post(client, "second", channel="announcements")
    edited = edit(client, first, "first, edited")
    page = client.get("/")
    assert page.status_code == 200
    assert article_ids(page.text) == [second, first]
    assert "first, edited" in page.text
    # The stream resumes right after the newest event the page reflects (the edit).
    assert f'sse-connect="/events?format=html&amp;last_event_id={edited}"' in page.text
    assert "/static/htmx-2.0.11.min.js" in page.text and "cdn" not in page.text.lower()


def test_channel_page_shows_only_its_channel(client: TestClient) -> None:
    post(client, "general news")
    announcement = post(client, "big news", channel="announcements")
    page = client.get("/channels/announcements")
    assert article_ids(page.text) == [announcement]
    assert "channel=announcements" in page.text
    assert client.get("/channels/nope").status_code == 404


def test_pinned_posts_are_on_the_first_page_whatever_their_age(client: TestClient) -> None:
    old = post(client, "old and pinned")
    client.post(f"/api/posts/{old}/pin")
    newer = [post(client, f"p{i}") for i in range(60)]
    page = client.get("/").text
    shown = article_ids(page)
    # First, as on screen (lists.py, on order).
    assert shown == [old, *list(reversed(newer))[:50]]
    older = re.search(r'data-url="(/partials/posts\?before=\d+)"', page)
    assert older is not None
    rest = client.get(older.group(1).replace("&amp;", "&")).text
    assert article_ids(rest) == list(reversed(newer))[50:]
    assert old not in article_ids(rest)


def test_compose_posts_and_returns_a_cleared_form(client: TestClient) -> None:
    response = client.post("/compose", data={"channel": "general", "body": "from the form"})
    assert response.status_code == 200
    # The author is whoever is signed in (here the tests' admin token); the form says so.
    assert "Posting as <strong>tester</strong>" in response.text
    assert "from the form" not in response.text
    posts = client.get("/api/channels/general/posts").json()["posts"]
    assert [(p["author"], p["body"]) for p in posts] == [("tester", "from the form")]


def test_compose_shows_errors_inline_and_keeps_what_was_typed(client: TestClient) -> None:
    long = "kept " * 2001
    response = client.post("/compose", data={"channel": "general", "body": long})
    assert response.status_code == 422
    assert "The post is longer than 10000 characters." in response.text
    # The field points to the message that says what is wrong with it.
    assert 'id="compose-error"' in response.text
    assert 'aria-describedby="compose-error" aria-invalid="true"' in response.text
    assert 'role="alert"' in response.text and "kept kept" in response.text
    unknown = client.post("/compose", data={"channel": "nope", "body": "b"})
    assert unknown.status_code == 422 and "no channel named" in unknown.text
    assert client.get("/api/channels/general/posts").json()["posts"] == []


def test_compose_refuses_an_oversized_body_inline(client: TestClient) -> None:
    body = "x" * 130_000  # past the longest post, every character %-escaped
    response = client.post("/compose", data={"channel": "general", "body": body})
    assert response.status_code == 422
    assert "larger than 124096 bytes" in response.text
    assert client.get("/api/channels/general/posts").json()["posts"] == []


def test_compose_and_reply_take_the_longest_post_in_any_script(client: TestClient) -> None:
    # Each character three bytes of UTF-8, nine %-escaped: past the API's body limit.
    body = "字" * 10_000
    response = client.post("/compose", data={"channel": "general", "body": body})
    assert response.status_code == 200, response.text[:300]
    (posted,) = client.get("/api/channels/general/posts").json()["posts"]
    assert posted["body"] == body
    reply = client.post(f"/posts/{posted['id']}/replies", data={"body": "😀" * 10_000})
    assert reply.status_code == 200, reply.text[:300]
    (replied,) = client.get(f"/api/posts/{posted['id']}/replies").json()["replies"]
    assert replied["body"] == "😀" * 10_000


def test_post_bodies_cannot_inject_markup(client: TestClient) -> None:
    post(client, "<script>alert(1)</script> [x](javascript:alert(1)) <img src=x onerror=y>")
    page = client.get("/").text
    assert "<script>alert(1)" not in page
    assert 'href="javascript:' not in page
    assert "<img src=x" not in page


def test_assets_are_served_from_the_package(client: TestClient) -> None:
    loaded = {name for url in ("/", "/kiosk") for name in SCRIPT.findall(client.get(url).text)}
    assert {"htmx-2.0.11.min.js", "htmx-ext-sse-2.2.4.min.js", "feed-page.js"} <= loaded
    for name in (*sorted(loaded), "feed.css"):
        response = client.get(f"/static/{name}")
        assert response.status_code == 200 and len(response.content) > 500


def test_every_script_in_the_package_is_loaded_by_a_template() -> None:
    """The page's glue is one script per concept: a new one must be loaded somewhere."""
    loaded = {n for t in templates_dir().rglob("*.html") for n in SCRIPT.findall(t.read_text())}
    assert {script.name for script in (PACKAGE_DIR / "static").glob("*.js")} == loaded


# -- the kiosk -----------------------------------------------------------------------------


def test_pages_tell_their_scripts_their_release_heartbeat_and_snapshot(client: TestClient) -> None:
    _, event_id = posted(client, "one")
    for url in ("/", "/kiosk"):
        page = client.get(url).text
        assert '<meta name="feed-release" content="0.1.0">' in page
        assert '<meta name="feed-heartbeat" content="15.0">' in page
        assert f'data-last-event-id="{event_id}"' in page
        assert "<script>" not in page  # no inline script: everything is in static/


def test_kiosk_shows_pinned_posts_and_the_newest_within_its_window(client: TestClient) -> None:
    old = post(client, "old and pinned")
    client.post(f"/api/posts/{old}/pin")
    newer = [post(client, f"p{i}") for i in range(KIOSK_POSTS + 5)]
    page = client.get("/kiosk")
    assert page.status_code == 200
    shown = article_ids(page.text)
    # The headline, the pinned post, then the rest (lists.py, on order).
    recent = list(reversed(newer[-(KIOSK_POSTS - 1) :]))
    assert shown == [recent[0], old, *recent[1:]]
    assert f'data-max-posts="{KIOSK_POSTS}"' in page.text
    for control in ("<form", "<button", "<input", "<select", "<textarea", "hx-get"):
        assert control not in page.text
    assert "Be the first" not in client.get("/kiosk?channel=announcements").text


def test_kiosk_follows_the_chosen_channels(client: TestClient) -> None:
    post(client, "general news")
    news, event_id = posted(client, "big news", channel="announcements")
    page = client.get("/kiosk?channel=announcements&channel=announcements").text
    assert article_ids(page) == [news]
    assert "<h1>Announcements</h1>" in page
    stream = f"/events?format=html&amp;channel=announcements&amp;last_event_id={event_id}"
    assert f'sse-connect="{stream}"' in page
    assert 'data-feed-url="/partials/kiosk?channel=announcements"' in page
    both = client.get("/kiosk?channel=general&channel=announcements").text
    assert "<h1>General · Announcements</h1>" in both
    assert "channel=general&amp;channel=announcements" in both


def test_kiosk_theme_follows_the_os_unless_told(client: TestClient) -> None:
    auto = client.get("/kiosk").text
    assert "data-theme" not in auto and '<meta name="color-scheme" content="light dark">' in auto
    dark = client.get("/kiosk?theme=dark").text
    assert '<html lang="en" data-theme="dark">' in dark
    assert '<meta name="color-scheme" content="dark">' in dark
    assert 'data-theme="light"' in client.get("/kiosk?theme=light").text


def test_kiosk_refuses_unknown_channels_and_themes_with_a_page(client: TestClient) -> None:
    missing = client.get("/kiosk?channel=general&channel=nope")
    assert missing.status_code == 404 and "no channel named #nope" in missing.text
    assert missing.headers["content-type"].startswith("text/html")
    bad = client.get("/kiosk?theme=sepia")
    assert bad.status_code == 400 and "theme must be one of auto, light, dark" in bad.text
    assert client.get("/partials/kiosk?channel=nope").status_code == 404


def test_refetched_lists_carry_the_event_id_they_are_current_to(client: TestClient) -> None:
    first = post(client, "one")
    second = post(client, "two", channel="announcements")
    edited = edit(client, first, "one, edited")
    kiosk = client.get("/partials/kiosk?channel=general")
    assert kiosk.headers["x-feed-last-event-id"] == str(edited)
    assert article_ids(kiosk.text) == [first] and "one, edited" in kiosk.text
    dashboard = client.get("/partials/posts")
    assert dashboard.headers["x-feed-last-event-id"] == str(edited)
    assert article_ids(dashboard.text) == [second, first]
    # A page of older posts is not a snapshot of the feed: no id.
    assert "x-feed-last-event-id" not in client.get("/partials/posts?before=2").headers


def test_kiosk_window_keeps_pinned_posts_first_then_the_newest_in_the_order_shown() -> None:
    def view(post_id: int, pinned: bool = False) -> PostView:
        moment = datetime(2026, 1, 1, tzinfo=UTC)
        return PostView(post_id, "general", "a", "b", moment, None, pinned, False, "<p>b</p>")

    posts = [view(9), view(8), view(7, pinned=True), view(6), view(2, pinned=True)]
    # The headline (the newest unpinned post), the pinned ones, then the rest.
    assert [p.id for p in kiosk_window(posts, 3)] == [9, 7, 2]
    assert [p.id for p in kiosk_window(posts, 1)] == [7]
    assert [p.id for p in kiosk_window(posts, 10)] == [9, 7, 2, 8, 6]


def test_dashboard_window_keeps_its_newest_pinned_posts_and_every_other_to_its_floor() -> None:
    def view(post_id: int, pinned: bool = False) -> PostView:
        moment = datetime(2026, 1, 1, tzinfo=UTC)
        return PostView(post_id, "general", "a", "b", moment, None, pinned, False, "<p>b</p>")

    posts = [view(9), view(8, True), view(7), view(6, True), view(5), view(3, True), view(2)]
    # The pinned section first, then the others, each newest first.
    assert [p.id for p in dashboard_window(posts, 2, 7)] == [8, 6, 9, 7]
    assert [p.id for p in dashboard_window(posts, 5, 0)] == [8, 6, 3, 9, 7, 5, 2]
    # Pinned posts past the section are in their place among the others, to the floor.
    assert [p.id for p in dashboard_window(posts, 1, 5)] == [8, 9, 7, 6, 5]
    assert [p.id for p in dashboard_window(posts, 1, 0)] == [8, 9, 7, 6, 5, 3, 2]
    # In whatever order the posts come.
    assert dashboard_window(posts[::-1], 1, 5) == dashboard_window(posts, 1, 5)


def test_the_dashboard_tells_its_list_its_pinned_limit_and_its_floor(client: TestClient) -> None:
    ids = [post(client, f"p{i}") for i in range(52)]
    page = client.get("/").text
    assert 'data-max-pinned="50"' in page
    assert f'data-floor="{ids[2]}"' in page
    assert article_ids(page) == ids[:1:-1]
