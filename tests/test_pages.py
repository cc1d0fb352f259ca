"""Server-rendered pages and partials (in-process; the live part is in test_browser)."""

from __future__ import annotations

import re

from starlette.testclient import TestClient


def post(client: TestClient, body: str, channel: str = "general") -> int:
    response = client.post(f"/api/channels/{channel}/posts", json={"author": "ann", "body": body})
    assert response.status_code == 201
    post_id: int = response.json()["post"]["id"]
    return post_id


def article_ids(html: str) -> list[int]:
    return [int(x) for x in re.findall(r'<article id="post-(\d+)"', html)]


def test_dashboard_renders_posts_newest_first_and_connects_after_them(
    client: TestClient,
) -> None:
    first = post(client, "first *post*")
    second = post(client, "second", channel="announcements")
    client.patch(f"/api/posts/{first}", json={"body": "first, edited"})
    page = client.get("/")
    assert page.status_code == 200
    assert article_ids(page.text) == [second, first]
    assert "first, edited" in page.text
    # The stream resumes right after the newest event the page reflects (the edit, id 3).
    assert 'sse-connect="/events?format=html&amp;last_event_id=3"' in page.text
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
    assert old in shown and len(shown) == 51
    assert shown[:50] == list(reversed(newer))[:50]
    older = re.search(r'hx-get="(/partials/posts\?before=\d+)"', page)
    assert older is not None
    rest = client.get(older.group(1).replace("&amp;", "&")).text
    assert article_ids(rest) == list(reversed(newer))[50:]
    assert old not in article_ids(rest)


def test_compose_posts_and_returns_a_cleared_form(client: TestClient) -> None:
    response = client.post(
        "/compose", data={"channel": "general", "author": "bea", "body": "from the form"}
    )
    assert response.status_code == 200
    assert 'value="bea"' in response.text
    assert "from the form" not in response.text
    posts = client.get("/api/channels/general/posts").json()["posts"]
    assert [(p["author"], p["body"]) for p in posts] == [("bea", "from the form")]


def test_compose_shows_errors_inline_and_keeps_what_was_typed(client: TestClient) -> None:
    response = client.post("/compose", data={"channel": "general", "author": "", "body": "kept"})
    assert response.status_code == 422
    assert "The field &#39;author&#39; must not be empty." in response.text
    assert 'role="alert"' in response.text and "kept" in response.text
    unknown = client.post("/compose", data={"channel": "nope", "author": "a", "body": "b"})
    assert unknown.status_code == 422 and "no channel named" in unknown.text
    assert client.get("/api/channels/general/posts").json()["posts"] == []


def test_compose_refuses_an_oversized_body_inline(client: TestClient) -> None:
    body = "x" * 70_000
    response = client.post("/compose", data={"channel": "general", "author": "a", "body": body})
    assert response.status_code == 422
    assert "larger than 65536 bytes" in response.text
    assert client.get("/api/channels/general/posts").json()["posts"] == []


def test_post_bodies_cannot_inject_markup(client: TestClient) -> None:
    post(client, "<script>alert(1)</script> [x](javascript:alert(1)) <img src=x onerror=y>")
    page = client.get("/").text
    assert "<script>alert(1)" not in page
    assert 'href="javascript:' not in page
    assert "<img src=x" not in page


def test_assets_are_served_from_the_package(client: TestClient) -> None:
    for name in ("htmx-2.0.11.min.js", "htmx-ext-sse-2.2.4.min.js", "feed.js", "feed.css"):
        response = client.get(f"/static/{name}")
        assert response.status_code == 200 and len(response.content) > 500
