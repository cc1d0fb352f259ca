"""``POST /api/posts:batch``: many posts in one request, one result per item, in order.

A bad item gets the answer a single post would have had and fails no other; the good
ones are committed together, reach streams in order, and a resume inside the batch is
exact. Keys are per item; the batch is charged as many posts as it holds."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from starlette.testclient import TestClient

from feed.batch_input import batch_bytes
from feed.limits import MAX_BATCH_ITEMS
from feed.models import EventKind
from feed.settings import Settings
from feed.storage.history import EVERYONE
from feed.store import ChannelNotFound, Store
from feed.values import Change, Commit, FeedEvent, NewPost
from tests.auth import bearer, make_token
from tests.conftest import Server
from tests.sse import SSEClient

URL = "/api/posts:batch"
NDJSON = {"content-type": "application/x-ndjson"}
JSON = {"content-type": "application/json"}


def results(response: httpx.Response) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()["results"]
    return found


def statuses(response: httpx.Response) -> list[int]:
    return [r["status"] for r in results(response)]


def listed(client: TestClient | httpx.Client, channel: str = "general") -> list[str]:
    posts = client.get(f"/api/channels/{channel}/posts?limit=200").json()["posts"]
    return [p["body"] for p in reversed(posts)]


def single_error(client: TestClient, channel: str, payload: dict[str, Any]) -> dict[str, Any]:
    """What a single POST of ``payload`` to ``channel`` answers, as a batch result."""
    answer = client.post(f"/api/channels/{channel}/posts", json=payload)
    assert answer.status_code >= 400, answer.text
    return {"status": answer.status_code, **answer.json()}


def test_good_and_bad_items_each_get_their_own_answer_in_order(client: TestClient) -> None:
    client.post("/api/channels", json={"name": "old", "title": "Old"})
    client.post("/api/channels/old/archive")
    items = [
        {"channel": "general", "body": "one"},
        {"channel": "nowhere", "body": "lost"},
        {"channel": "general", "body": "two"},
        {"channel": "general", "body": "x" * 10_001},
        {"channel": "general", "body": "nul \x00 here"},
        {"channel": "general", "body": "bell \x07"},
        {"channel": "old", "body": "archived"},
        {"channel": "general", "body": "three", "colour": "red"},
        {"body": "no channel"},
        "not an object",
        {"channel": "general", "body": "**four**"},
    ]
    answer = client.post(URL, json=items)
    got = results(answer)
    assert [r["status"] for r in got] == [201, 404, 201, 422, 422, 422, 409, 422, 422, 422, 201]
    created = [r for r in got if r["status"] == 201]
    assert [r["post"]["body"] for r in created] == ["one", "two", "**four**"]
    assert created[2]["post"]["html"].strip() == "<p><strong>four</strong></p>"
    # Ids and event ids in the order of the items, with nothing in between.
    ids = [r["post"]["id"] for r in created]
    events = [r["event_id"] for r in created]
    assert ids == sorted(ids) and events == list(range(events[0], events[0] + 3))
    # Refusals are what the single POST says of the same post.
    for n, item in ((1, items[1]), (3, items[3]), (4, items[4]), (5, items[5]), (6, items[6])):
        assert isinstance(item, dict)
        channel = item.pop("channel")
        assert got[n] == single_error(client, channel, item)
    assert "'colour'" in got[7]["error"] and "'channel'" in got[8]["error"]
    assert listed(client) == ["one", "two", "**four**"]


def test_an_items_fields_are_refused_as_its_single_request_refuses_them(
    client: TestClient,
) -> None:
    bodies: list[dict[str, Any]] = [
        {},
        {"body": 5},
        {"body": "  "},
        {"body": "mine", "author": "tester"},
        {"body": "theirs", "author": "someone else"},
        {"body": "a number", "author": 5},
        {"author": "tester"},
        {"body": "x", "colour": "red"},
        {"body": "x", "author": "tester", "pinned": True},
    ]
    got = results(client.post(URL, json=[{"channel": "general", **b} for b in bodies]))
    assert [r["status"] for r in got] == [422, 422, 422, 201, 422, 422, 422, 422, 422]
    for body, result in zip(bodies, got, strict=True):
        if result["status"] != 201:
            assert result == single_error(client, "general", body), body
    assert listed(client) == ["mine"]


def test_ndjson_lines_are_items_and_a_bad_line_fails_only_itself(client: TestClient) -> None:
    lines = [
        json.dumps({"channel": "general", "body": "first"}),
        "",
        "{not json",
        '{"channel": "general", "body": "lone \\ud800 surrogate"}',
        json.dumps({"channel": "general", "body": "second"}),
    ]
    answer = client.post(URL, content="\n".join(lines).encode() + b"\n", headers=NDJSON)
    got = results(answer)
    assert [r["status"] for r in got] == [201, 400, 422, 201]
    assert [r["post"]["body"] for r in got if r["status"] == 201] == ["first", "second"]
    assert "surrogate" in got[2]["error"]


def test_an_ndjson_line_that_is_not_utf_8_fails_only_itself(client: TestClient) -> None:
    lines = [
        json.dumps({"channel": "general", "body": "before"}).encode(),
        b'{"channel": "general", "body": "caf\xe9 au lait"}',  # Latin-1, not UTF-8
        b"\xff\xfe",
        json.dumps({"channel": "general", "body": "after \u00e9"}, ensure_ascii=False).encode(),
    ]
    answer = client.post(URL, content=b"\n".join(lines), headers=NDJSON)
    got = results(answer)
    assert [r["status"] for r in got] == [201, 400, 400, 201]
    refused = {"status": 400, "error": "This line is not valid UTF-8.", "detail": None}
    assert got[1] == got[2] == refused
    assert listed(client) == ["before", "after \u00e9"]


def test_an_arrays_flat_items_are_checked_for_surrogates_and_nesting_as_single_bodies(
    client: TestClient,
) -> None:
    deep = '"x":' + "[" * 40 + "]" * 40
    items = [
        '{"channel": "general", "body": "plain"}',
        '{"channel": "general", "body": "lone \\ud800 high"}',
        '{"channel": "general", "body": "x", "\\udc00": true}',
        '{"channel": "general", "body": "a pair \\ud83d\\ude00 is a character"}',
        '{"channel": "general", "body": "{braces} and [brackets] in text"}',
        '{"channel": "general", "body": "x", ' + deep + "}",
        '{"channel": "general", "body": "last"}',
    ]
    for chosen in (items, items[:3], items[3:5], [items[0], items[5]]):
        answer = client.post(URL, content=f"[{','.join(chosen)}]".encode(), headers=JSON)
        got = results(answer)
        for item, result in zip(chosen, got, strict=True):
            payload = json.loads(item)
            if result["status"] == 201:
                assert result["post"]["body"] == payload["body"]
                continue
            single = item.replace('"channel": "general", ', "").encode()
            alone = client.post("/api/channels/general/posts", content=single, headers=JSON)
            assert result == {"status": alone.status_code, **alone.json()}, item
        assert [r["status"] == 201 for r in got] == [
            item in (items[0], items[3], items[4], items[6]) for item in chosen
        ]
    assert listed(client) == [json.loads(items[n])["body"] for n in (0, 3, 4, 6, 0, 3, 4, 0)]


def test_a_key_named_twice_fails_its_ndjson_line_or_the_whole_array(client: TestClient) -> None:
    lines = [
        b'{"channel": "general", "body": "first"}',
        b'{"channel": "general", "body": "mine", "body": "theirs"}',
        b'{"channel": "general", "channel": "announcements", "body": "b"}',
        b'{"channel": "general", "body": "last"}',
    ]
    answer = client.post(URL, content=b"\n".join(lines), headers=NDJSON)
    got = results(answer)
    assert [r["status"] for r in got] == [201, 400, 400, 201]
    assert got[1]["error"] == "The request body names the key 'body' twice."
    assert got[2]["error"] == "The request body names the key 'channel' twice."
    array = b"[" + b", ".join(lines) + b"]"
    whole = client.post(URL, content=array, headers={"content-type": "application/json"})
    assert whole.status_code == 400
    assert whole.json()["error"] == "The request body names the key 'body' twice."
    assert listed(client) == ["first", "last"]


def test_a_malformed_envelope_is_one_answer_for_the_whole_request(
    client: TestClient, settings: Settings
) -> None:
    one = {"channel": "general", "body": "b"}
    too_many = [one] * (MAX_BATCH_ITEMS + 1)
    huge = json.dumps([{"channel": "general", "body": "y" * 9000}] * 600).encode()
    assert len(huge) > batch_bytes(settings.max_body_bytes)
    cases = {
        "not json": (b"[{]", "application/json", 400),
        "an object, not an array": (b'{"body": "x"}', "application/json", 422),
        "empty": (b"[]", "application/json", 422),
        "too many items": (json.dumps(too_many).encode(), "application/json", 422),
        "too many lines": (
            "\n".join([json.dumps(one)] * (MAX_BATCH_ITEMS + 1)).encode(),
            "application/x-ndjson",
            422,
        ),
        "too large": (huge, "application/json", 413),
        "wrong content type": (b"hello", "text/plain", 415),
        "not utf-8": (b'[{"channel": "general", "body": "caf\xe9"}]', "application/json", 400),
        "nested too deep": (b"[" * 1000 + b"]" * 1000, "application/json", 400),
    }
    for name, (body, media, status) in cases.items():
        answer = client.post(URL, content=body, headers={"content-type": media})
        assert answer.status_code == status, (name, answer.text)
        assert answer.json()["error"], name
    assert listed(client) == []


def test_item_keys_make_a_retried_batch_write_nothing_twice(client: TestClient) -> None:
    items = [
        {"channel": "general", "body": "a", "idempotency_key": "k-a"},
        {"channel": "nowhere", "body": "b", "idempotency_key": "k-b"},
        {"channel": "general", "body": "c"},
        {"channel": "general", "body": "d", "idempotency_key": "k-d"},
    ]
    first = results(client.post(URL, json=items))
    again = results(client.post(URL, json=items))
    assert [r["status"] for r in first] == [201, 404, 201, 201]
    assert [r["status"] for r in again] == [201, 404, 201, 201]
    for n in (0, 3):
        assert again[n]["replayed"] is True and first[n]["replayed"] is False
        assert {**again[n], "replayed": False} == first[n]
    assert again[2]["post"]["id"] != first[2]["post"]["id"]  # no key: a new post
    assert listed(client) == ["a", "c", "d", "c"]
    # A key is the same whether its post came alone or in a batch.
    alone = client.post(
        "/api/channels/general/posts", json={"body": "a"}, headers={"Idempotency-Key": "k-a"}
    )
    assert alone.headers["idempotent-replayed"] == "true"
    assert alone.json() == {k: v for k, v in first[0].items() if k not in ("status", "replayed")}
    # The same key for another post, in the batch or already used: refused, alone.
    reused = [
        {"channel": "general", "body": "other", "idempotency_key": "k-a"},
        {"channel": "general", "body": "e", "idempotency_key": "k-e"},
        {"channel": "general", "body": "e2", "idempotency_key": "k-e"},
        {"channel": "general", "body": "e", "idempotency_key": "k-e"},
    ]
    got = results(client.post(URL, json=reused))
    assert [r["status"] for r in got] == [422, 201, 422, 201]
    assert got[3]["post"] == got[1]["post"] and got[3]["replayed"] is True
    assert listed(client) == ["a", "c", "d", "c", "e"]
    # The header would promise what it cannot keep for a whole batch: refused.
    header = client.post(URL, json=items, headers={"Idempotency-Key": "whole"})
    assert header.status_code == 400 and "idempotency_key" in header.json()["error"]
    # Each item answers with the post as a single request does: its reactions, none yet.
    single = client.post("/api/channels/general/posts", json={"body": "single"}).json()
    assert set(first[0]["post"]) == set(single["post"]) and single["post"]["mine"] == []


def test_permissions_and_private_channels_are_checked_per_item(
    client: TestClient, settings: Settings
) -> None:
    client.post("/api/channels", json={"name": "board", "title": "B", "private": True})
    client.post("/api/channels", json={"name": "news", "title": "N", "announcement_only": True})
    ann, _ = make_token(settings.database_url, "ann")
    bob, _ = make_token(settings.database_url, "bob")
    reader, _ = make_token(settings.database_url, "rita", "reader")
    client.put("/api/channels/board/members/ann", json={})
    items = [
        {"channel": "board", "body": "secret"},
        {"channel": "general", "body": "open"},
        {"channel": "news", "body": "news"},
    ]
    as_ann = results(client.post(URL, json=items, headers=bearer(ann)))
    as_bob = results(client.post(URL, json=items, headers=bearer(bob)))
    assert [r["status"] for r in as_ann] == [201, 201, 403]
    # To bob the private channel does not exist: the same 404 as a name never made.
    assert [r["status"] for r in as_bob] == [404, 201, 403]
    assert as_bob[0]["error"] == "There is no channel named 'board'."
    assert as_ann[0]["post"]["author"] == "ann"
    as_reader = results(client.post(URL, json=items, headers=bearer(reader)))
    assert [r["status"] for r in as_reader] == [404, 403, 403]
    anonymous = client.post(URL, json=items, headers={"Authorization": ""})
    assert anonymous.status_code == 401
    assert listed(client, "board") == ["secret"]
    assert listed(client) == ["open", "open"]


def test_replies_are_items_that_name_their_parent(client: TestClient) -> None:
    parent = client.post("/api/channels/general/posts", json={"body": "question"}).json()
    pid = parent["post"]["id"]
    items = [
        {"parent": pid, "body": "answer"},
        {"parent": pid + 1000, "body": "to nothing"},
        {"parent": pid, "channel": "general", "body": "both"},
    ]
    got = results(client.post(URL, json=items))
    assert [r["status"] for r in got] == [201, 404, 422]
    assert got[0]["post"]["parent"] == pid and got[0]["post"]["channel"] == "general"
    replies = client.get(f"/api/posts/{pid}/replies").json()["replies"]
    assert [r["body"] for r in replies] == ["answer"]


def test_a_batch_is_charged_as_many_posts_as_it_holds(make_server: Callable[..., Server]) -> None:
    server = make_server(post_rate=5)
    token = bearer(server.token("ann"))
    items = [{"channel": "general", "body": f"p{n}"} for n in range(8)]
    got = results(server.client.post(URL, json=items, headers=token))
    assert [r["status"] for r in got] == [201] * 5 + [429] * 3
    assert got[5]["detail"]["retry_after"] >= 1
    # The bucket is empty now for single posts too.
    single = server.client.post("/api/channels/general/posts", json={"body": "x"}, headers=token)
    assert single.status_code == 429
    assert listed(server.client) == [f"p{n}" for n in range(5)]


def test_items_refused_before_their_turn_leave_the_rate_to_later_posts(
    make_server: Callable[..., Server],
) -> None:
    server = make_server(post_rate=5)
    token = bearer(server.token("ann"))
    gone = {"parent": 10**9, "body": "to nothing"}  # refused before the rate
    items = [gone, {"channel": "general", "body": "a"}, gone, gone, gone]
    items += [{"channel": "general", "body": "b"}, gone]
    got = results(server.client.post(URL, json=items, headers=token))
    assert [r["status"] for r in got] == [404, 201, 404, 404, 404, 201, 404]
    # Two posts' turns used of five: three left, for posts alone or in a batch.
    single = server.client.post("/api/channels/general/posts", json={"body": "c"}, headers=token)
    assert single.status_code == 201
    more = [{"channel": "general", "body": b} for b in ("d", "e", "f")]
    got = results(server.client.post(URL, json=more, headers=token))
    assert [r["status"] for r in got] == [201, 201, 429]
    assert listed(server.client) == ["a", "b", "c", "d", "e"]


def test_an_item_with_a_bad_body_costs_its_turn_as_it_would_alone(
    make_server: Callable[..., Server],
) -> None:
    server = make_server(post_rate=5)
    token = bearer(server.token("ann"))
    bad = [{"channel": "general", "body": ""}, {"channel": "general", "body": 12}]
    items = [*bad, *({"channel": "general", "body": f"p{n}"} for n in range(4))]
    got = results(server.client.post(URL, json=items, headers=token))
    assert [r["status"] for r in got] == [422, 422, 201, 201, 201, 429]
    # Alone, a bad body is refused after its turn too: none is left.
    single = server.client.post("/api/channels/general/posts", json={"body": ""}, headers=token)
    assert single.status_code == 429
    assert listed(server.client) == ["p0", "p1", "p2"]


def test_a_batch_reaches_streams_in_order_and_a_resume_inside_it_is_exact(
    server: Server,
) -> None:
    before = server.post("before")["event_id"]
    with SSEClient(
        server.port, params={"format": "json"}, headers={"Last-Event-ID": str(before)}
    ) as live:
        items = [{"channel": "general", "body": f"b{n}"} for n in range(300)]
        got = results(server.client.post(URL, json=items))
        events = [r["event_id"] for r in got]
        assert events == list(range(before + 1, before + 301))
        seen = live.wait_events(300)
        assert [int(m.id or 0) for m in seen] == events
        assert [json.loads(m.data)["post"]["body"] for m in seen] == [i["body"] for i in items]
    middle = events[149]
    with SSEClient(
        server.port, params={"format": "json"}, headers={"Last-Event-ID": str(middle)}
    ) as resumed:
        again = resumed.wait_events(150)
        assert [int(m.id or 0) for m in again] == events[150:]
        after = server.post("after")["event_id"]
        resumed.wait_for(lambda s: len(s.events()) == 151)
        assert [int(m.id or 0) for m in resumed.events()] == [*events[150:], after]


def feed_post(*args: str, stdin: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FEED_")}
    return subprocess.run(
        [sys.executable, "-m", "feed", "post", *args],
        env=clean,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_feed_post_sends_ndjson_from_stdin_in_batches_with_a_line_per_item(
    server: Server,
) -> None:
    parent = server.post("the plan")["post"]["id"]
    lines = [
        "plain text goes to the channel given",
        json.dumps({"body": "an object without a channel too"}),
        json.dumps({"channel": "nowhere", "body": "lost"}),
        "",
        json.dumps({"parent": parent, "body": "a reply"}),
        "{broken",
        *(f"bulk {n}" for n in range(1500)),
    ]
    token = server.token("ada")
    sent = feed_post(
        "--ndjson", "general", "-", "--token", token, "--url", server.url, stdin="\n".join(lines)
    )
    assert sent.returncode == 3, sent.stderr
    out = sent.stdout.splitlines()
    assert len(out) == 1505
    assert re.fullmatch(r"line 1: posted to #general: post \d+, event \d+", out[0]), out[0]
    assert out[2] == "line 3: refused (404): There is no channel named 'nowhere'."
    assert re.fullmatch(
        rf"line 5: replied to post {parent} in #general: post \d+, event \d+", out[3]
    )
    # Not JSON at all, though it begins with a brace: text, as any line that is no object.
    assert re.fullmatch(r"line 6: posted to #general: post \d+, event \d+", out[4]), out[4]
    assert out[-1].startswith("line 1506: posted to #general")
    ids = [int(re.findall(r"post (\d+),", line)[0]) for line in out if "posted" in line]
    assert len(ids) == 1503 and ids == sorted(ids)
    posts = [server.client.get(f"/api/posts/{n}").json()["post"] for n in (ids[0], ids[1], ids[-1])]
    assert [p["body"] for p in posts] == [
        "plain text goes to the channel given",
        "an object without a channel too",
        "bulk 1499",
    ]
    assert {p["author"] for p in posts} == {"ada"}
    # Every line written: no failure, status 0; TEXT must be - (standard input).
    good = feed_post(
        "--ndjson", "general", "-", "--url", server.url, "--token", token, stdin="a\nb\n"
    )
    assert good.returncode == 0 and len(good.stdout.splitlines()) == 2
    # A line ends at a line feed alone, as the server reads NDJSON: a bare carriage
    # return is inside its line (refused or not, it is one post), and CRLF ends one.
    crs = feed_post(
        "--ndjson", "general", "-", "--url", server.url, "--token", token, stdin="x\ry\nz\r\n"
    )
    said = crs.stdout.splitlines()
    assert [line.split(":")[0] for line in said] == ["line 1", "line 2"], said
    last = int(re.findall(r"post (\d+),", said[1])[0])
    assert server.client.get(f"/api/posts/{last}").json()["post"]["body"] == "z"
    usage = feed_post("--ndjson", "general", "text", "--token", token, stdin="")
    assert usage.returncode == 2 and "feed post --ndjson CHANNEL -" in usage.stderr


def test_a_batch_of_a_thousand_is_one_transaction_on_each_store(store: Store) -> None:
    async def scenario() -> tuple[list[Commit], list[Any]]:
        commits: list[Commit] = []
        store.on_commit(commits.append)
        news = [NewPost("general", "ada", f"post {n}") for n in range(MAX_BATCH_ITEMS - 1)]
        news.insert(500, NewPost("nowhere", "ada", "lost"))
        return commits, await store.create_posts(news)

    commits, written = asyncio.run(scenario())
    assert len(commits) == 1 and len(commits[0].events) == MAX_BATCH_ITEMS - 1
    assert isinstance(written[500], ChannelNotFound)
    changes = [w for w in written if isinstance(w, Change)]
    assert [c.post.body for c in changes] == [f"post {n}" for n in range(MAX_BATCH_ITEMS - 1)]
    assert [c.event_id for c in changes] == [e.id for e in commits[0].events]
    ids = [c.post.id for c in changes]
    assert ids == list(range(ids[0], ids[0] + len(ids)))


def test_a_groups_rows_read_back_as_written_whatever_its_size(store: Store) -> None:
    """Groups of sizes on each side of the store's statements' (a power of two rows at
    most each): every post and event read back from the log, in the group's order, a
    mention's event just before its post's."""

    async def scenario(size: int) -> tuple[list[Change], list[FeedEvent]]:
        before = await store.latest_event_id()
        news = [
            NewPost("general", "ada", f"@bo size {size} post {n}" if n % 7 == 3 else f"{n}")
            for n in range(size)
        ]
        written = await store.create_posts(news)
        read = await store.events_after(before, limit=2 * size + 10, person=EVERYONE)
        return [w for w in written if isinstance(w, Change)], read

    for size in (1, 2, 3, 255, 256, 257, 513, MAX_BATCH_ITEMS):
        changes, read = asyncio.run(scenario(size))
        bodies = [f"@bo size {size} post {n}" if n % 7 == 3 else f"{n}" for n in range(size)]
        expected = [
            (kind, body)
            for body in bodies
            for kind in ([EventKind.MENTION] if body.startswith("@") else [])
            + [EventKind.POST_CREATED]
        ]
        assert [(e.kind, e.post.body if e.post else None) for e in read] == expected, size
        assert [e.recipient for e in read if e.kind is EventKind.MENTION] == ["bo"] * (
            len(expected) - size
        )
        created = [e for e in read if e.kind is EventKind.POST_CREATED]
        assert [e.id for e in created] == [c.event_id for c in changes]
        assert [e.post.id for e in created if e.post] == [c.post.id for c in changes]
        assert all(e.post and e.post.html.startswith("<p>") for e in read)


def test_feed_post_ndjson_answers_each_hostile_line_and_sends_the_rest(server: Server) -> None:
    lines = [
        b"first",
        b"x" * 5_000_000,  # more than any batch may carry
        b'{"body": ' + b"[" * 100_000,  # deeper than a parser goes
        b"caf\xe9 au lait",  # not UTF-8
        b'{"body": "lone \\ud800"}',  # no text at all
        b'{"body": "x", "n": NaN}',  # no number JSON has: refused alone, not the batch
        b'{"body": "x", "body": "y"}',  # which one?
        b"last",
    ]
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FEED_")}
    token = server.token("ada")
    command = [sys.executable, "-m", "feed", "post", "--ndjson", "general", "-"]
    command += ["--token", token, "--url", server.url]
    sent = subprocess.run(
        command,
        env=clean,
        input=b"\n".join(lines),
        capture_output=True,
        timeout=60,
    )
    out = sent.stdout.decode().splitlines()
    assert sent.returncode == 3, sent.stderr.decode()[-2000:]
    assert [line.split(":")[0] for line in out] == [f"line {n}" for n in range(1, 9)]
    assert out[0].startswith("line 1: posted") and out[7].startswith("line 8: posted")
    assert out[1].startswith("line 2: refused (413)"), out[1]
    assert out[2].startswith("line 3: refused (400)"), out[2]
    assert out[3].startswith("line 4: refused (400): This line is not valid UTF-8"), out[3]
    assert out[4].startswith("line 5: refused (422)"), out[4]
    assert out[5].startswith("line 6: refused (400)") and "not finite" in out[5], out[5]
    assert out[6].startswith("line 7: refused (400)") and "'body' twice" in out[6], out[6]
    assert listed(server.client)[-2:] == ["first", "last"]


def test_a_batch_of_countless_tiny_values_is_refused_before_it_is_parsed(
    client: TestClient,
) -> None:
    limit = batch_bytes(Settings().max_body_bytes)
    empties = (limit - 200) // 3
    bodies = {
        "items": b"[" + b",".join([b"{}"] * empties) + b"]",
        "inside one item": b'[{"channel": "general", "body": "x", "pad": ['
        + b",".join([b"[]"] * empties)
        + b"]}]",
        "lines": b"\n".join([b'{"pad": [' + b",".join([b"{}"] * 1000) + b"]}"] * 1000),
        # In UTF-16, the byte 0x22 of U+2200 is no quote: counted bytewise, the values
        # after it would seem to sit in a string.
        "in UTF-16": ('["\u2200", ' + ",".join(["{}"] * (limit // 7)) + "]").encode("utf-16-le"),
    }
    for what, raw in bodies.items():
        media = "application/x-ndjson" if what == "lines" else "application/json"
        tracemalloc.start()
        try:
            answer = client.post(URL, content=raw, headers={"content-type": media})
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        # Parsed, a million empty objects would take over 100 MB, and the event loop
        # for most of a second.
        assert peak < 6 * len(raw), (what, peak)
        assert answer.status_code == 422, (what, answer.text[:300])
        assert "JSON values" in answer.json()["error"], what
    assert listed(client) == []


def test_feed_post_ndjson_sends_every_line_when_its_reader_goes_away(server: Server) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FEED_")}
    command = f"{sys.executable} -m feed post --ndjson general - --url {server.url} --token "
    command += server.token("ada")
    # head reads one line and leaves: the report loses its reader, the posts must not.
    piped = f"seq 1 2500 | {command} | head -1; exit ${{PIPESTATUS[1]}}"
    sent = subprocess.run(["bash", "-c", piped], env=clean, capture_output=True, timeout=60)
    assert sent.stdout.decode().startswith("line 1: posted"), sent.stderr.decode()[-2000:]
    assert sent.returncode == 0, sent.stderr.decode()[-2000:]
    newest = server.client.get("/api/channels/general/posts?limit=1").json()["posts"]
    assert [p["body"] for p in newest] == ["2500"]


def test_prefer_return_minimal_answers_each_success_with_its_ids_and_not_its_post(
    client: TestClient,
) -> None:
    client.post("/api/channels", json={"name": "other", "title": "Other"})
    parent = client.post("/api/channels/other/posts", json={"body": "the plan"}).json()
    items = [
        {"channel": "general", "body": "one"},
        {"channel": "nowhere", "body": "lost"},
        {"channel": "general", "body": "two", "idempotency_key": "min-2"},
        {"parent": parent["post"]["id"], "body": "a reply"},
    ]
    minimal = {"Prefer": "return=minimal"}
    answer = client.post(URL, json=items, headers=minimal)
    assert answer.headers["preference-applied"] == "return=minimal"
    assert "prefer" in answer.headers["vary"].lower()
    got = results(answer)
    assert [r["status"] for r in got] == [201, 404, 201, 201]
    assert [sorted(r) for r in got if r["status"] == 201] == [
        ["channel", "event_id", "id", "replayed", "status"]
    ] * 3
    assert [(r["channel"], r["replayed"]) for r in got if r["status"] == 201] == [
        ("general", False),
        ("general", False),
        ("other", False),
    ]
    # A refusal is the same as in the full answer.
    assert got[1] == {"status": 404, **client.post(URL, json=[items[1]]).json()["results"][0]}
    del got[1]
    # The ids are the posts written, in order, and the event ids theirs.
    stored = [client.get(f"/api/posts/{r['id']}").json()["post"] for r in got]
    assert [p["body"] for p in stored] == ["one", "two", "a reply"]
    assert stored[2]["parent"] == parent["post"]["id"]
    assert [r["event_id"] for r in got] == sorted(r["event_id"] for r in got)
    assert got[0]["event_id"] > parent["event_id"]
    # A retried key replays its first answer, made small as well.
    again = results(client.post(URL, json=[items[2]], headers=minimal))
    assert again == [{**got[1], "replayed": True}]
    # Without the preference, or another one, the answer is the whole post, as before.
    for headers in ({}, {"Prefer": "return=representation"}, {"Prefer": "respond-async"}):
        full = client.post(URL, json=[items[2]], headers=headers)
        assert "preference-applied" not in full.headers, headers
        assert results(full)[0]["post"] | {"mine": []} == stored[1], headers


def test_prefer_is_read_as_rfc_7240_writes_it(client: TestClient) -> None:
    item = [{"channel": "general", "body": "x"}]
    spelled = {
        "RETURN=MINIMAL": True,
        'return="minimal"': True,
        "respond-async, return = minimal; wait=5": True,
        "wait=10; return=minimal": False,  # a parameter of "wait", not a preference
        "return=representation, return=minimal": False,  # the first one counts
        "return=minimalist": False,
        "return": False,
    }
    for header, applied in spelled.items():
        answer = client.post(URL, json=item, headers={"Prefer": header})
        assert ("post" not in results(answer)[0]) is applied, header
        assert answer.headers.get("preference-applied") == (
            "return=minimal" if applied else None
        ), header
    # Two Prefer headers are one list.
    both = [("Prefer", "respond-async"), ("Prefer", "return=minimal")]
    two = client.post(URL, json=item, headers=both)
    assert "post" not in results(two)[0]


def test_the_client_asks_for_the_minimal_answer_when_it_needs_only_ids(server: Server) -> None:
    from feed.client import Client
    from feed.post_lines import Line

    sent = Client(server.url, server.token("ada")).post_batch(
        [Line(1, {"channel": "general", "body": "small"}), Line(2, {"channel": "x", "body": "y"})],
        minimal=True,
    )
    assert [(n, r["status"]) for n, r in sent] == [(1, 201), (2, 404)]
    assert "post" not in sent[0][1]
    assert server.client.get(f"/api/posts/{sent[0][1]['id']}").json()["post"]["body"] == "small"


def test_a_page_on_an_allowed_origin_may_ask_for_the_minimal_answer_and_see_it_applied(
    tmp_path: Path,
) -> None:
    from tests.test_security import APP, app_client

    with app_client(tmp_path, cors_origins=APP) as cors:
        preflight = cors.options(
            URL,
            headers={
                "Origin": APP,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, content-type, prefer",
            },
        )
        assert preflight.status_code == 200, preflight.text
        assert "prefer" in preflight.headers["access-control-allow-headers"].lower()
        answer = cors.post(
            URL,
            json=[{"channel": "general", "body": "x"}],
            headers={"Origin": APP, "Prefer": "return=minimal"},
        )
        exposed = answer.headers["access-control-expose-headers"].split(", ")
        assert "Preference-Applied" in exposed
        assert "post" not in results(answer)[0]
