"""Reactions: toggles through the API, who may make them, how streams carry them in
every format, exact replays, and the coalescing that keeps a storm of toggles to a
few updates a second with exact final counts."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from alembic import command
from sqlalchemy import text as sa_text
from starlette.testclient import TestClient

from feed import schema
from feed.store import Store, make_engine
from tests.auth import ADMIN, _run, bearer, kiosk_key, make_token
from tests.conftest import Server
from tests.sse import SSEClient, subscribed
from tests.waiting import until

PARTY = "\U0001f389"
THUMBS = "\U0001f44d"


def counts(reactions: list[dict[str, Any]]) -> dict[str, int]:
    return {r["reaction"]: r["count"] for r in reactions}


def new_post(client: TestClient | httpx.Client, channel: str = "general") -> int:
    response = client.post(f"/api/channels/{channel}/posts", json={"body": "react to me"})
    assert response.status_code == 201, response.text
    post_id: int = response.json()["post"]["id"]
    return post_id


# -- the API ----------------------------------------------------------------------------


def test_put_and_delete_toggle_idempotently_and_listings_carry_counts_and_mine(
    client: TestClient, settings: Any
) -> None:
    post = new_post(client)
    ada = bearer(make_token(settings.database_url, "ada", "reader")[0])
    url = f"/api/posts/{post}/reactions/{PARTY}"
    first, again = client.put(url, headers=ada), client.put(url, headers=ada)
    assert (first.status_code, again.status_code) == (200, 200)
    assert first.json()["changed"] is True and again.json()["changed"] is False
    assert again.json()["mine"] == [PARTY]
    assert counts(again.json()["reactions"]) == {PARTY: 1}
    assert client.put(f"/api/posts/{post}/reactions/{THUMBS}").status_code == 200

    listed = client.get("/api/channels/general/posts", headers=ada).json()["posts"][0]
    assert counts(listed["reactions"]) == {PARTY: 1, THUMBS: 1}
    assert listed["mine"] == [PARTY]
    assert client.get(f"/api/posts/{post}").json()["post"]["mine"] == [THUMBS]
    who = client.get(f"/api/posts/{post}/reactions", headers=ada).json()
    assert who["reactions"] == [
        {"reaction": PARTY, "count": 1, "names": ["ada"]},
        {"reaction": THUMBS, "count": 1, "names": ["tester"]},
    ]
    assert who["mine"] == [PARTY]

    gone, gone_again = client.delete(url, headers=ada), client.delete(url, headers=ada)
    assert gone.json()["changed"] is True and gone_again.json()["changed"] is False
    assert gone_again.json()["mine"] == []
    assert counts(gone_again.json()["reactions"]) == {THUMBS: 1}


def test_an_edit_or_a_pin_answers_with_the_post_as_it_is_now(client: TestClient) -> None:
    post = new_post(client)
    assert client.put(f"/api/posts/{post}/reactions/{PARTY}").status_code == 200
    made = client.post(f"/api/posts/{post}/replies", json={"body": "a reply"})
    assert made.status_code == 201, made.text
    assert made.json()["post"]["mine"] == []  # new: nothing of the caller's yet
    reply = made.json()["post"]["id"]
    assert client.put(f"/api/posts/{reply}/reactions/{THUMBS}").status_code == 200
    want = client.get(f"/api/posts/{post}").json()["post"]
    assert (want["replies"], counts(want["reactions"]), want["mine"]) == (1, {PARTY: 1}, [PARTY])
    for method, path, body in [
        ("PATCH", f"/api/posts/{post}", {"body": "edited"}),
        ("PATCH", f"/api/posts/{post}", {"body": "edited"}),  # no change
        ("POST", f"/api/posts/{post}/pin", None),
        ("POST", f"/api/posts/{post}/pin", None),  # no change
        ("POST", f"/api/posts/{post}/unpin", None),
    ]:
        answer = client.request(method, path, json=body)
        assert answer.status_code == 200, answer.text
        shown = answer.json()["post"]
        assert shown == client.get(f"/api/posts/{post}").json()["post"], (method, path)
        assert (shown["replies"], shown["repliers"]) == (1, want["repliers"])
        assert (counts(shown["reactions"]), shown["mine"]) == ({PARTY: 1}, [PARTY])
    edited = client.patch(f"/api/posts/{reply}", json={"body": "a reply, edited"})
    assert edited.json()["post"] == client.get(f"/api/posts/{reply}").json()["post"]
    assert edited.json()["post"]["mine"] == [THUMBS]


def test_replies_and_search_results_carry_counts_and_mine_as_every_listing(
    client: TestClient, settings: Any
) -> None:
    post = new_post(client)
    reply = client.post(f"/api/posts/{post}/replies", json={"body": "lift fixed"})
    assert reply.status_code == 201, reply.text
    reply_id = reply.json()["post"]["id"]
    ada = bearer(make_token(settings.database_url, "ada", "reader")[0])
    assert client.put(f"/api/posts/{reply_id}/reactions/{PARTY}", headers=ada).status_code == 200
    assert client.put(f"/api/posts/{reply_id}/reactions/{THUMBS}").status_code == 200

    listed = client.get(f"/api/posts/{post}/replies", headers=ada).json()["replies"][0]
    assert listed["id"] == reply_id
    assert counts(listed["reactions"]) == {PARTY: 1, THUMBS: 1} and listed["mine"] == [PARTY]
    found = client.get("/api/search", params={"q": "lift"}, headers=ada).json()["results"]
    assert [hit["post"]["id"] for hit in found] == [reply_id]
    assert counts(found[0]["post"]["reactions"]) == {PARTY: 1, THUMBS: 1}
    assert found[0]["post"]["mine"] == [PARTY]


def test_anonymous_readers_get_401_and_kiosk_links_403(client: TestClient, settings: Any) -> None:
    post = new_post(client)
    url = f"/api/posts/{post}/reactions/{PARTY}"
    key = _run(kiosk_key(settings))
    admin = client.headers.pop("authorization")
    anonymous = client.put(url)
    kiosk = client.put(f"{url}?key={key}")
    # Reading who reacted is reading: both may.
    listed = client.get(f"/api/posts/{post}/reactions")
    client.headers["authorization"] = admin
    assert anonymous.status_code == 401, anonymous.text
    assert "www-authenticate" in anonymous.headers
    assert kiosk.status_code == 403, kiosk.text
    assert listed.status_code == 200
    assert counts(client.get(f"/api/posts/{post}").json()["post"]["reactions"]) == {}


def test_a_private_channels_posts_are_404_to_a_non_member(
    client: TestClient, settings: Any
) -> None:
    made = client.post("/api/channels", json={"name": "board", "title": "Board", "private": True})
    assert made.status_code == 201, made.text
    post = new_post(client, "board")
    assert client.put(f"/api/posts/{post}/reactions/{PARTY}").status_code == 200
    rita = bearer(make_token(settings.database_url, "rita", "writer")[0])
    for method in ("PUT", "DELETE"):
        refused = client.request(method, f"/api/posts/{post}/reactions/{PARTY}", headers=rita)
        assert refused.status_code == 404, refused.text
    assert client.get(f"/api/posts/{post}/reactions", headers=rita).status_code == 404
    assert client.put("/api/channels/board/members/rita", json={}).status_code == 200
    assert client.put(f"/api/posts/{post}/reactions/{PARTY}", headers=rita).status_code == 200
    listed = client.get("/api/channels/board/posts", headers=rita).json()["posts"][0]
    assert counts(listed["reactions"]) == {PARTY: 2}


@pytest.mark.parametrize(
    ("reaction", "status", "said"),
    [
        ("%F0%9F%8D%95", 404, "the reactions are"),
        ("x" * 5000, 404, "the reactions are"),
        ("%00", 404, "the reactions are"),
        ("%E2%9D%A4", 404, "the reactions are"),
        # Not UTF-8: refused before any route reads the path (inputs.py, on paths).
        ("%ED%A0%80", 400, "not UTF-8"),
        ("%F0%9F%8E", 400, "not UTF-8"),
    ],
    ids=["not-in-the-set", "huge", "nul", "heart-without-selector", "surrogate", "cut-utf8"],
)
def test_a_hostile_reaction_is_a_clear_4xx(
    client: TestClient, reaction: str, status: int, said: str
) -> None:
    post = new_post(client)
    answer = client.put(f"/api/posts/{post}/reactions/{reaction}")
    assert answer.status_code == status, answer.text
    assert said in answer.json()["error"]
    assert len(answer.text) < 1000
    assert counts(client.get(f"/api/posts/{post}").json()["post"]["reactions"]) == {}


def test_reacting_to_a_deleted_post_is_410_and_its_reactions_are_gone(client: TestClient) -> None:
    post = new_post(client)
    assert client.put(f"/api/posts/{post}/reactions/{PARTY}").status_code == 200
    assert client.delete(f"/api/posts/{post}").status_code == 200
    assert client.put(f"/api/posts/{post}/reactions/{THUMBS}").status_code == 410
    assert client.get(f"/api/posts/{post}").json()["post"]["reactions"] == []
    assert client.get(f"/api/posts/{post}/reactions").json()["reactions"] == []


# -- streams -----------------------------------------------------------------------------


def open_stream(server: Server, **params: str) -> SSEClient:
    return subscribed(server.port, params)


def reaction_events(stream: SSEClient) -> list[Any]:
    return [e for e in stream.events() if e.event == "post-reactions"]


def test_a_reaction_reaches_json_html_and_text_streams_with_one_id(
    make_server: Callable[..., Server], each_database_url: str
) -> None:
    server = make_server(database=each_database_url)
    post = new_post(server.client)
    ada = bearer(server.token("ada"))
    with (
        open_stream(server, format="json") as as_json,
        open_stream(server, format="html") as as_html,
        open_stream(server, format="text") as as_text,
    ):
        answer = server.client.put(f"/api/posts/{post}/reactions/{PARTY}", headers=ada).json()
        for stream in (as_json, as_html, as_text):
            stream.wait_for(lambda s: reaction_events(s))
        (j,), (h,), (t,) = map(reaction_events, (as_json, as_html, as_text))
    assert j.id == h.id == t.id == str(answer["event_id"])
    payload = json.loads(j.data)
    assert payload["post"] == {
        "id": post,
        "channel": "general",
        "reactions": [{"reaction": PARTY, "count": 1, "names": ["ada"]}],
    }
    assert payload["changes"] == [{"name": "ada", "reaction": PARTY, "reacted": True}]
    assert f'<div id="reactions-{post}"' in h.data and 'hx-swap-oob="outerHTML"' in h.data
    assert f'data-reaction="{PARTY}" data-count="1"' in h.data
    # The same bytes for everyone: nobody's chip is marked as theirs.
    assert 'aria-pressed="true"' not in h.data
    assert t.data == f"#general ada reacted {PARTY} to post {post} (now {PARTY} 1)"


def test_replay_of_reaction_events_is_exact_and_ends_at_the_final_counts(server: Server) -> None:
    post = new_post(server.client)
    start = server.client.get(f"/api/posts/{post}").json()
    with open_stream(server, format="json") as live:
        for name in ("ada", "bo", "cy"):
            server.client.put(
                f"/api/posts/{post}/reactions/{PARTY}", headers=bearer(server.token(name))
            )
        server.client.delete(
            f"/api/posts/{post}/reactions/{PARTY}", headers=bearer(server.token("bo"))
        )
        final = counts(server.client.get(f"/api/posts/{post}").json()["post"]["reactions"])
        live.wait_for(lambda s: _last_counts(s) == final)
        seen = [(e.id, e.event) for e in live.events()]
    assert start["post"]["reactions"] == []
    created_id = seen[0][0] if seen else None
    with SSEClient(server.port, params={"format": "json", "last_event_id": "0"}) as replay:
        replay.wait_for(lambda s: _last_counts(s) == final)
        replayed = [(e.id, e.event) for e in replay.events() if e.event == "post-reactions"]
    assert replayed == [pair for pair in seen if pair[1] == "post-reactions"]
    assert final == {PARTY: 2}
    assert created_id is not None


def _last_counts(stream: SSEClient) -> dict[str, int] | None:
    found = reaction_events(stream)
    if not found:
        return None
    return counts(json.loads(found[-1].data)["post"]["reactions"])


def test_a_private_channels_reactions_never_reach_a_non_members_stream(server: Server) -> None:
    made = server.client.post(
        "/api/channels", json={"name": "board", "title": "Board", "private": True}
    )
    assert made.status_code == 201
    secret, public = new_post(server.client, "board"), new_post(server.client)
    rita = bearer(server.token("rita"))
    outsider = SSEClient(server.port, params={"format": "json"}, headers=rita)
    admin = SSEClient(server.port, params={"format": "json"}, headers=ADMIN)
    with outsider, admin:
        for stream in (outsider, admin):
            stream.wait_for(lambda s: any(m.retry for m in s.messages))
        server.client.put(f"/api/posts/{secret}/reactions/{PARTY}")
        server.client.put(f"/api/posts/{public}/reactions/{PARTY}")
        admin.wait_for(lambda s: len(reaction_events(s)) == 2)
        outsider.wait_for(lambda s: len(reaction_events(s)) == 1)
        (seen,) = reaction_events(outsider)
    assert json.loads(seen.data)["post"]["id"] == public
    listed = httpx.get(f"{server.url}/api/channels/general/posts", headers=rita).json()
    assert all(p["id"] != secret for p in listed["posts"])


# -- storms -----------------------------------------------------------------------------

WINDOW = 0.5
TOGGLES = 200


def test_a_storm_of_toggles_reaches_a_watcher_as_a_few_frames_with_exact_counts(
    make_server: Callable[..., Server],
) -> None:
    server = make_server(reaction_window=WINDOW)
    post = new_post(server.client)
    people = [f"p{n}" for n in range(40)]
    tokens = {name: server.token(name, "reader") for name in people}
    reactions = ["\U0001f44d", "\u2764\ufe0f", PARTY, "\U0001f604", "\U0001f62e"]
    toggles = [(name, r) for name in people for r in reactions][:TOGGLES]

    def toggle(pair: tuple[str, str]) -> int:
        name, reaction = pair
        url = f"/api/posts/{post}/reactions/{reaction}"
        return shared.put(url, headers=bearer(tokens[name])).status_code

    shared = httpx.Client(base_url=server.url, timeout=10)
    with shared, open_stream(server, format="json") as watcher, ThreadPoolExecutor(8) as pool:
        began = time.monotonic()
        statuses = list(pool.map(toggle, toggles[: TOGGLES // 2]))
        # A screen that connects mid-storm, resuming from what the watcher has seen.
        watcher.wait_for(lambda s: reaction_events(s))
        resume_from = reaction_events(watcher)[-1].id or "0"
        late = SSEClient(server.port, params={"format": "json", "last_event_id": resume_from})
        statuses += list(pool.map(toggle, toggles[TOGGLES // 2 :]))
        stormed = time.monotonic() - began
        final = counts(server.client.get(f"/api/posts/{post}").json()["post"]["reactions"])
        with late:
            watcher.wait_for(lambda s: _last_counts(s) == final, timeout=10)
            late.wait_for(lambda s: _last_counts(s) == final, timeout=10)
            frames = reaction_events(watcher)
            late_ids = [e.id for e in reaction_events(late)]
        settled = time.monotonic() - began
    assert statuses == [200] * TOGGLES
    assert sum(final.values()) == TOGGLES  # every toggle stored
    assert final == {r: 40 for r in reactions}
    # At most one frame per window, and one for the first toggle.
    assert len(frames) <= settled / WINDOW + 2, (len(frames), settled, stormed)
    assert len(frames) < TOGGLES / 4, (len(frames), settled, stormed)
    ids = [int(e.id or 0) for e in frames]
    assert ids == sorted(set(ids))
    # The late screen got exactly what followed its resume point.
    assert late_ids == [e.id for e in frames if int(e.id or 0) > int(resume_from)]


def test_toggles_left_pending_by_a_crash_are_reported_after_a_restart(
    make_server: Callable[..., Server], each_database_url: str
) -> None:
    server = make_server(database=each_database_url, reaction_window=3.0)
    post = new_post(server.client)
    first = server.client.put(f"/api/posts/{post}/reactions/{PARTY}").json()
    assert first["event_id"] is not None
    pending = server.client.put(
        f"/api/posts/{post}/reactions/{PARTY}", headers=bearer(server.token("ada"))
    ).json()
    assert pending["event_id"] is None  # within the window: waits for its end
    server.stop(signal.SIGKILL)
    again = make_server(database=server.database, reaction_window=3.0)
    with SSEClient(
        again.port, params={"format": "json", "last_event_id": str(first["event_id"])}
    ) as stream:
        stream.wait_for(lambda s: _last_counts(s) == {PARTY: 2}, timeout=10)
        (event,) = reaction_events(stream)
    assert json.loads(event.data)["changes"] == [
        {"name": "ada", "reaction": PARTY, "reacted": True}
    ]
    until(
        lambda: counts(again.client.get(f"/api/posts/{post}").json()["post"]["reactions"]),
        lambda c: c == {PARTY: 2},
        timeout=5,
    )


# -- the schema ---------------------------------------------------------------------------


def test_a_database_made_at_0007_upgrades_and_takes_reactions(each_database_url: str) -> None:
    url = each_database_url
    engine = make_engine(url)
    try:
        with engine.begin() as connection:
            command.upgrade(schema._config(connection), "0007")
            connection.execute(
                sa_text(
                    "INSERT INTO channels (name, title, description, archived, private, "
                    "announcement_only) VALUES ('old', 'Old', '', false, false, false)"
                )
            )
    finally:
        engine.dispose()

    async def go() -> tuple[Any, Any]:
        store = Store.from_url(url)
        try:
            await store.create_schema()
            post = await store.create_post("old", "ada", "from before reactions")
            toggled = await store.toggle_reaction(post.post.id, "bo", PARTY, True, 0.5)
            return toggled, await store.get_post(post.post.id)
        finally:
            store.close()

    toggled, post = _run(go())
    assert toggled.changed and toggled.event_id is not None
    assert [(r.reaction, r.count, r.names) for r in post.reactions] == [(PARTY, 1, ("bo",))]


# -- pages --------------------------------------------------------------------------------


def test_a_dashboard_marks_its_readers_own_reactions_and_the_kiosk_only_counts(
    client: TestClient, settings: Any
) -> None:
    post = new_post(client)
    ada = bearer(make_token(settings.database_url, "ada", "reader")[0])
    assert client.put(f"/api/posts/{post}/reactions/{PARTY}", headers=ada).status_code == 200
    assert client.put(f"/api/posts/{post}/reactions/{THUMBS}").status_code == 200
    hers = client.get("/", headers=ada).text
    assert 'data-reader="ada"' in hers
    assert f'id="reactions-{post}"' in hers and f'data-mine="{PARTY}"' in hers
    assert f'data-reaction="{PARTY}" data-count="1"' in hers
    theirs = client.get("/").text  # the admin's own: the thumbs
    assert f'data-mine="{THUMBS}"' in theirs
    older = client.get("/partials/posts", headers=ada).text
    assert f'data-mine="{PARTY}"' in older
    admin = client.headers.pop("authorization")
    try:
        kiosk = client.get("/kiosk").text
        anonymous = client.get("/").text
    finally:
        client.headers["authorization"] = admin
    assert f'data-reaction="{PARTY}" data-count="1"' in kiosk
    assert "data-mine" not in kiosk and "data-reader" not in kiosk
    assert "data-reader" not in anonymous and f'data-mine="{PARTY}"' not in anonymous


def test_a_thread_shows_its_replies_reactions_with_the_readers_own_marked(
    client: TestClient, settings: Any
) -> None:
    post = new_post(client)
    reply = client.post(f"/api/posts/{post}/replies", json={"body": "lift fixed"})
    assert reply.status_code == 201, reply.text
    reply_id = reply.json()["post"]["id"]
    ada = bearer(make_token(settings.database_url, "ada", "reader")[0])
    assert client.put(f"/api/posts/{reply_id}/reactions/{PARTY}", headers=ada).status_code == 200
    assert client.put(f"/api/posts/{post}/reactions/{THUMBS}", headers=ada).status_code == 200
    assert client.put(f"/api/posts/{reply_id}/reactions/{THUMBS}").status_code == 200
    for path in (f"/posts/{post}", f"/partials/thread/{post}"):
        page = client.get(path, headers=ada).text
        chips = page[page.index(f'id="reactions-{reply_id}"') :]
        chips = chips[: chips.index("</div>")]
        assert f'data-mine="{PARTY}"' in chips, path
        assert f'data-reaction="{PARTY}" data-count="1"' in chips
        assert f'data-reaction="{THUMBS}" data-count="1"' in chips
    whole = client.get(f"/posts/{post}", headers=ada).text
    assert f'id="reactions-{post}"' in whole
    root = whole[whole.index(f'id="reactions-{post}"') :]
    assert root[: root.index(">")].endswith(f'data-mine="{THUMBS}"')


def test_a_reaction_to_a_reply_reaches_its_threads_stream(server: Server) -> None:
    post = new_post(server.client)
    reply = server.client.post(f"/api/posts/{post}/replies", json={"body": "lift fixed"})
    reply_id = reply.json()["post"]["id"]
    with open_stream(server, format="html", thread=str(post)) as stream:
        answer = server.client.put(f"/api/posts/{reply_id}/reactions/{PARTY}").json()
        stream.wait_for(lambda s: reaction_events(s))
        (event,) = reaction_events(stream)
    assert event.id == str(answer["event_id"])
    assert f'<div id="reactions-{reply_id}"' in event.data
    assert f'data-reaction="{PARTY}" data-count="1"' in event.data
