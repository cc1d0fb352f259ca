"""The values passed between threads: those made for every new post are made by an
``__init__`` of their own, and are the dataclasses they were all the same."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest

from feed.models import EventKind
from feed.values import Change, FeedEvent, NewPost, PostView

AT = datetime(2026, 12, 1, tzinfo=UTC)


def test_values_made_for_every_post_take_the_dataclass_parameters_and_stay_frozen() -> None:
    post = PostView(7, "general", "ada", "hi", AT, None, False, False, "<p>hi</p>", parent=3)
    by_name = PostView(
        id=7,
        channel="general",
        author="ada",
        body="hi",
        created_at=AT,
        edited_at=None,
        pinned=False,
        deleted=False,
        html="<p>hi</p>",
        parent=3,
    )
    assert post == by_name and hash(post) == hash(by_name)
    assert (post.replies, post.repliers, post.reactions) == (0, (), ())
    fields = (7, "general", "ada", "hi", AT, None, False, False, "<p>hi</p>", 3)
    assert dataclasses.astuple(post)[:10] == fields
    event = FeedEvent(9, EventKind.POST_CREATED, "general", post, at=AT, recipient="bo")
    assert (event.id, event.post, event.at, event.private, event.recipient) == (
        9,
        post,
        AT,
        False,
        "bo",
    )
    assert (event.thread, event.changes, event.more, event.root) == (None, (), 0, 3)
    assert Change(post, 9).post is post and NewPost("general", "ada", "hi").html is None
    assert dataclasses.replace(post, body="edited").body == "edited"
    for value, name in ((post, "body"), (event, "id"), (Change(post, 9), "event_id")):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(value, name, None)
    with pytest.raises(TypeError, match="html"):
        PostView(7, "general", "ada", "hi", AT, None, False, False)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="unexpected keyword"):
        NewPost("general", "ada", "hi", colour="red")  # type: ignore[call-arg]
