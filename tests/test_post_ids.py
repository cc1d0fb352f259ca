"""Post ids on both stores: a number past what a post id can be (the posts table's
32-bit key) is answered as no post, or refused as a parameter, never with a 422
"cannot be stored" from the database."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from feed.limits import MAX_POST_ID


@pytest.fixture
def database_url(each_database_url: str) -> str:
    return each_database_url


PAST = MAX_POST_ID + 1


@pytest.mark.parametrize(
    ("method", "path", "status", "said"),
    [
        ("GET", f"/api/posts/{PAST}", 404, "no post with id"),
        ("GET", f"/api/posts/{MAX_POST_ID}", 404, "no post with id"),
        ("PATCH", f"/api/posts/{PAST}", 404, "no post with id"),
        ("DELETE", f"/api/posts/{PAST}", 404, "no post with id"),
        ("GET", f"/api/posts/{PAST}/reactions", 404, "no post with id"),
        ("GET", f"/api/channels/general/posts?before={PAST}", 400, f"and {MAX_POST_ID}"),
        ("GET", f"/api/posts/1/replies?before={PAST}", 400, f"and {MAX_POST_ID}"),
        ("GET", f"/partials/posts?before={PAST}", 400, f"and {MAX_POST_ID}"),
        ("GET", f"/events?thread={PAST}", 400, f"and {MAX_POST_ID}"),
        ("GET", f"/api/search?cursor={PAST}", 400, "cursor"),
        ("GET", f"/api/search?q=lift&cursor={PAST}", 400, "cursor"),
        ("GET", f"/api/search?q=lift&cursor={PAST}.1.5.{'0' * 16}.{'0' * 16}", 400, "cursor"),
    ],
)
def test_a_number_past_any_post_id_is_no_post(
    client: TestClient, method: str, path: str, status: int, said: str
) -> None:
    made = client.post("/api/channels/general/posts", json={"body": "lift"})
    assert made.status_code == 201 and made.json()["post"]["id"] == 1
    answer = client.request(method, path, json={"body": "x"} if method == "PATCH" else None)
    assert answer.status_code == status, answer.text
    assert said in answer.json()["error"]


def test_the_largest_post_id_pages_from_the_newest(client: TestClient) -> None:
    client.post("/api/channels/general/posts", json={"body": "lift"})
    listed = client.get(f"/api/channels/general/posts?before={MAX_POST_ID}")
    assert [p["body"] for p in listed.json()["posts"]] == ["lift"]
    found = client.get(f"/api/search?q=lift&cursor={MAX_POST_ID}")
    assert [r["post"]["body"] for r in found.json()["results"]] == ["lift"]


def test_a_batch_reply_to_a_post_past_any_id_is_that_items_404(client: TestClient) -> None:
    answer = client.post("/api/posts:batch", json=[{"parent": PAST, "body": "hi"}])
    assert answer.status_code == 200, answer.text
    (result,) = answer.json()["results"]
    assert result["status"] == 404 and f"no post with id {PAST}" in result["error"], result
