"""Rendering events: one encoding per (event, state, format), reused by replays."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from feed import markdown
from feed.models import EventKind
from feed.render import Renderer
from feed.shapes import event_dumps, post_json
from feed.sse import Format
from feed.store import Store
from feed.values import FeedEvent, PostView

POST = PostView(
    id=3,
    channel="general",
    author="ann",
    body="hi *there*",
    created_at=datetime(2026, 11, 29, 9, 15, tzinfo=UTC),
    edited_at=None,
    pinned=False,
    deleted=False,
    html="<p>hi <em>there</em></p>\n",
)


def test_an_event_is_encoded_once_and_reused() -> None:
    renderer = Renderer()
    event = FeedEvent(7, EventKind.POST_CREATED, "general", POST)
    first = renderer.encode(event, Format.HTML)
    again = renderer.encode(FeedEvent(7, EventKind.POST_CREATED, "general", POST), Format.HTML)
    assert again is first
    assert first.startswith(b'id: 7\nevent: post-created\ndata: <article id="post-3"')


def test_a_changed_post_is_encoded_afresh() -> None:
    renderer = Renderer()
    event = FeedEvent(7, EventKind.POST_CREATED, "general", POST)
    before = renderer.encode(event, Format.TEXT)
    edited = dataclasses.replace(event, post=dataclasses.replace(POST, body="changed"))
    after = renderer.encode(edited, Format.TEXT)
    assert (
        before
        == b"id: 7\nevent: post-created\ndata: 2026-11-29 09:15 UTC #general ann: hi *there*\n\n"
    )
    assert after.endswith(b"ann: changed\n\n")


def test_an_event_seen_in_another_state_replaces_its_entry_and_its_cost() -> None:
    renderer = Renderer()
    event = FeedEvent(7, EventKind.POST_CREATED, "general", POST)
    first = renderer.encode(event, Format.JSON)
    size = renderer.encode.size
    for n in range(5):  # edited again and again, replayed after each edit
        body = f"edit {n}"
        edited = dataclasses.replace(event, post=dataclasses.replace(POST, body=body))
        assert f'"body":"{body}"'.encode() in renderer.encode(edited, Format.JSON)
    back = renderer.encode(event, Format.JSON)
    assert back == first and back is not first  # encoded again, not served stale
    assert (len(renderer.encode), renderer.encode.size) == (1, size)


def test_event_json_is_what_json_dumps_writes() -> None:
    texts = [
        "plain",
        'quo"te \\ back',
        "tab\tnl\ncr\r",
        "del \x7f c1 \x9b",
        "\u2028 \u00e9 \U0001f389",
    ]
    values: list[object] = [
        {"id": 2**70, "f": 1.5, "n": None, "t": True, "list": [[], {}, [1, "x"]], "e": ""},
        *({"post": {"body": t, t: [t]}} for t in texts),
        float("nan"),
        "just a string",
    ]
    for value in values:
        assert event_dumps(value) == json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    event = FeedEvent(
        9, EventKind.POST_CREATED, "general", dataclasses.replace(POST, body=texts[3])
    )
    data = json.loads(Renderer().event_json(event))
    assert data["post"]["body"] == texts[3] and data["id"] == 9


def test_live_frames_are_not_kept_and_the_first_replay_keeps_them() -> None:
    renderer = Renderer()
    event = FeedEvent(7, EventKind.POST_CREATED, "general", POST)
    live = renderer.frames(event, [Format.JSON, Format.TEXT])
    assert len(renderer.encode) == 0
    replayed = renderer.encode(event, Format.JSON)
    assert replayed == live[Format.JSON]
    assert renderer.encode(event, Format.JSON) is replayed and len(renderer.encode) == 1


def test_frames_cover_exactly_the_formats_asked_for() -> None:
    renderer = Renderer()
    event = FeedEvent(1, EventKind.POST_PINNED, "general", dataclasses.replace(POST, pinned=True))
    frames = renderer.frames(event, {Format.JSON, Format.HTML})
    assert set(frames) == {Format.JSON, Format.HTML}
    assert b'hx-swap-oob="outerHTML"' in frames[Format.HTML]
    assert b'"pinned":true' in frames[Format.JSON]


# -- Markdown is rendered once, when a post is written, off the event loop -------------


def test_a_post_is_rendered_once_when_written_and_never_on_the_event_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Markdown can take a tenth of a second for one hostile body: on the event loop,
    that would hold up every stream's delivery. Writes render in the store's thread;
    readers (pages, streams, replays, the API) use the HTML stored with the post."""
    rendered_on: list[str] = []
    render = markdown.to_html

    def recording(source: str) -> str:
        rendered_on.append(threading.current_thread().name)
        return render(source)

    monkeypatch.setattr(markdown, "to_html", recording)

    async def scenario() -> None:
        store = Store.from_url(f"sqlite:///{tmp_path / 'feed.db'}")
        try:
            await store.create_schema()
            loop = threading.current_thread().name
            created = await store.create_post("general", "ann", "[" * 3000 + "*new*")
            edited = await store.edit_post(created.post.id, "**edited**")
            assert len(rendered_on) == 2 and loop not in rendered_on
            assert edited.post.html == "<p><strong>edited</strong></p>\n"

            # Nothing that reads posts renders Markdown again.
            rendered_on.clear()
            renderer = Renderer()
            (event, *_) = await store.events_after(0)
            page = await store.front_page(None, 10)
            for fmt in Format:
                renderer.frames(event, [fmt])
            renderer.post_html(page.posts[0])
            post_json(await store.get_post(created.post.id))
            assert rendered_on == []
        finally:
            store.close()

    asyncio.run(scenario())


def test_posts_stored_before_their_html_was_kept_are_rendered_when_read(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'feed.db'}"
    store = Store.from_url(url)
    try:
        asyncio.run(store.create_schema())
        post_id = asyncio.run(store.create_post("general", "ann", "*old*")).post.id
        with sqlite3.connect(tmp_path / "feed.db") as db:
            db.execute("UPDATE posts SET html = NULL")
        db.close()
        assert asyncio.run(store.get_post(post_id)).html == "<p><em>old</em></p>\n"
    finally:
        store.close()


def test_the_encode_cache_is_bounded_in_bytes_not_entries() -> None:
    renderer = Renderer()
    renderer.encode.most = 1024 * 1024
    big = "x" * 10_000
    for n in range(300):  # about 9 MiB of JSON, with the text the keys keep
        post = dataclasses.replace(POST, id=n, body=big, html=f"<p>{big}</p>")
        renderer.encode(FeedEvent(n, EventKind.POST_CREATED, "general", post), Format.JSON)
        assert renderer.encode.size <= renderer.encode.most
    assert 0 < len(renderer.encode) < 300
    # The newest are the ones kept.
    newest = dataclasses.replace(POST, id=299, body=big, html=f"<p>{big}</p>")
    event = FeedEvent(299, EventKind.POST_CREATED, "general", newest)
    assert renderer.encode(event, Format.JSON) is renderer.encode(event, Format.JSON)
