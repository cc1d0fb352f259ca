"""Rendering events: one encoding per (event, state, format), reused by replays."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

from feed.events import Format
from feed.models import EventKind, FeedEvent, PostView
from feed.render import Renderer

POST = PostView(
    id=3,
    channel="general",
    author="ann",
    body="hi *there*",
    created_at=datetime(2026, 11, 29, 9, 15, tzinfo=UTC),
    edited_at=None,
    pinned=False,
    deleted=False,
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


def test_frames_cover_exactly_the_formats_asked_for() -> None:
    renderer = Renderer()
    event = FeedEvent(1, EventKind.POST_PINNED, "general", dataclasses.replace(POST, pinned=True))
    frames = renderer.frames(event, {Format.JSON, Format.HTML})
    assert set(frames) == {Format.JSON, Format.HTML}
    assert b'hx-swap-oob="outerHTML"' in frames[Format.HTML]
    assert b'"pinned":true' in frames[Format.JSON]
