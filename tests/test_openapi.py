"""The OpenAPI document states the limits the API enforces: each limit is read from
the served document and tried at its edge, just inside (accepted) and just past it
(refused), so the two cannot drift apart."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from starlette.testclient import TestClient


@pytest.fixture
def document(client: TestClient) -> dict[str, Any]:
    served: dict[str, Any] = client.get("/openapi.json").json()
    return served


def schema(document: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = document["components"]["schemas"][name]
    return found


def parameter(document: dict[str, Any], path: str, method: str, name: str) -> dict[str, Any]:
    [found] = [p for p in document["paths"][path][method]["parameters"] if p["name"] == name]
    return found


def matches(pattern: str, value: str) -> bool:
    # JSON Schema patterns are searched for, not matched whole; feed's are anchored.
    assert pattern.startswith("^") and pattern.endswith("$"), pattern
    return re.search(pattern, value) is not None


def test_channel_titles_and_descriptions_are_refused_just_past_the_stated_lengths(
    client: TestClient, document: dict[str, Any]
) -> None:
    new, edit = schema(document, "ChannelNew"), schema(document, "ChannelEdit")
    for field in ("title", "description"):
        assert edit["properties"][field] == new["properties"][field]
    longest = {f: new["properties"][f]["maxLength"] for f in ("title", "description")}
    created = client.post(
        "/api/channels",
        json={"name": "edge", "title": "t" * longest["title"], "description": "d" * 2000},
    )
    assert created.status_code == 201, created.text
    for field, most in longest.items():
        fits = client.patch("/api/channels/edge", json={field: "x" * most})
        assert fits.status_code == 200, fits.text
        refused = client.patch("/api/channels/edge", json={field: "x" * (most + 1)})
        assert refused.status_code == 422
        assert refused.json()["error"] == f"The field {field!r} is longer than {most} characters."


NAMES = ["a", "0", "a" * 63, "a" * 64, "a" * 65, "a-b_c9", "-a", "_a", "A", "a b", "a.b", "ä"]


def test_channel_names_are_taken_exactly_when_the_stated_pattern_matches(
    client: TestClient, document: dict[str, Any]
) -> None:
    pattern = schema(document, "ChannelNew")["properties"]["name"]["pattern"]
    answers = {
        name: client.post("/api/channels", json={"name": name, "title": "t"}).status_code
        for name in NAMES
    }
    assert answers == {name: 201 if matches(pattern, name) else 422 for name in NAMES}
    assert answers["a" * 64] == 201 and answers["a" * 65] == 422


def test_post_bodies_are_refused_just_past_the_stated_length(
    client: TestClient, document: dict[str, Any]
) -> None:
    most = schema(document, "NewPost")["properties"]["body"]["maxLength"]
    assert schema(document, "PostEdit")["properties"]["body"]["maxLength"] == most
    url = "/api/channels/general/posts"
    assert client.post(url, json={"body": "x" * most}).status_code == 201
    assert client.post(url, json={"body": "x" * (most + 1)}).status_code == 422


def test_page_sizes_and_ids_in_queries_are_refused_past_the_stated_bounds(
    client: TestClient, document: dict[str, Any]
) -> None:
    url = "/api/channels/{channel}/posts"
    for name in ("limit", "before"):
        bounds = parameter(document, url, "get", name)["schema"]
        low, high = bounds["minimum"], bounds["maximum"]
        for value, status in ((low - 1, 400), (low, 200), (high, 200), (high + 1, 400)):
            answer = client.get(f"/api/channels/general/posts?{name}={value}")
            assert answer.status_code == status, (name, value, answer.text)
    # A post id in a path has the bounds an id has in a query.
    post_id = parameter(document, "/api/posts/{post_id}", "get", "post_id")["schema"]
    assert post_id == parameter(document, url, "get", "before")["schema"]


def test_idempotency_keys_are_taken_exactly_when_the_stated_pattern_matches(
    client: TestClient, document: dict[str, Any]
) -> None:
    pattern = parameter(document, "/api/channels", "post", "Idempotency-Key")["schema"]["pattern"]
    keys = ["k", "k" * 255, "k" * 256, "!~", "a b", "", "\x7f"]
    for n, key in enumerate(keys):
        answer = client.post(
            "/api/channels/general/posts",
            json={"body": f"keyed {n}"},
            headers={"Idempotency-Key": key},
        )
        assert answer.status_code == (201 if matches(pattern, key) else 400), (key, answer.text)


def test_request_bodies_are_refused_past_the_stated_depth_and_size(
    client: TestClient, document: dict[str, Any]
) -> None:
    body = document["paths"]["/api/channels/{channel}/posts"]["post"]["requestBody"]
    stated = re.search(r"at most (\d+) bytes, nested at most (\d+) levels", body["description"])
    assert stated is not None, body["description"]
    size, depth = (int(n) for n in stated.groups())
    url = "/api/channels/general/posts"

    def nested(levels: int) -> bytes:
        # A post whose "extra" field is ``levels`` deep, counting the post itself.
        return b'{"body": "x", "extra": ' + b"[" * (levels - 1) + b"]" * (levels - 1) + b"}"

    def send(raw: bytes) -> int:
        headers = {"content-type": "application/json"}
        return client.post(url, content=raw, headers=headers).status_code

    # Deep enough is refused as an unknown field (422), deeper as too deep (400).
    assert (send(nested(depth)), send(nested(depth + 1))) == (422, 400)
    padding = size - len(json.dumps({"body": ""}).encode())
    assert send(json.dumps({"body": " " * (padding - 1) + "x"}).encode()) == 422  # too long
    assert send(json.dumps({"body": " " * padding + "x"}).encode()) == 413


def test_stream_options_are_taken_exactly_within_the_stated_bounds(
    client: TestClient, document: dict[str, Any]
) -> None:
    # HEAD answers with the status its GET would open with, and ends.
    for where in ("last_event_id", "Last-Event-ID"):
        bounds = parameter(document, "/events", "get", where)["schema"]
        low, high = bounds["minimum"], bounds["maximum"]
        for value, status in ((low - 1, 400), (low, 200), (high, 200), (high + 1, 400)):
            sent = str(value)
            if where == "last_event_id":
                answer = client.head("/events", params={where: sent})
            else:
                answer = client.head("/events", headers={where: sent})
            assert answer.status_code == status, (where, value)
    formats = parameter(document, "/events", "get", "format")["schema"]["enum"]
    for name in [*formats, "xml", "HTML"]:
        answer = client.head("/events", params={"format": name})
        assert answer.status_code == (200 if name in formats else 400), name
