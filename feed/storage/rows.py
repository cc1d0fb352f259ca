"""The rows a group of new posts writes and what it announces: each post's row, its
events in order (a post's mentions just before its own event), and, once the ids are
known, each post's change and the events as the store notes them (new_posts.py)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

from feed import mentions
from feed.models import EventKind
from feed.values import Change, FeedEvent, NewPost, PostView

Planned = list[tuple[int, EventKind, str | None]]


def planned(
    accepted: Sequence[tuple[int, NewPost]],
    channels: dict[str, GroupChannel],
    htmls: Sequence[str],
    at: datetime,
) -> tuple[list[dict[str, Any]], Planned]:
    """The rows of the ``accepted`` posts, made at ``at``, and their events, each as
    (its post's place in ``accepted``, kind, recipient), in order."""
    post_rows = [
        {
            "channel_id": channels[new.channel].id,
            "author": new.author,
            "body": new.body,
            "parent_id": new.parent,
            "html": htmls[n],
            "created_at": at,
            "edited_at": None,
            "pinned": False,
            "deleted": False,
        }
        for n, new in accepted
    ]
    # A post's mentions go just before its own event (reading.py, on mentions).
    order: Planned = []
    for k, (n, new) in enumerate(accepted):
        for name in mentions.addressed(htmls[n], new.author):
            order.append((k, EventKind.MENTION, name))
        order.append((k, created(new), None))
    return post_rows, order


def made(
    accepted: Sequence[tuple[int, NewPost]],
    channels: dict[str, GroupChannel],
    htmls: Sequence[str],
    order: Planned,
    post_ids: Sequence[int],
    event_ids: Sequence[int],
    at: datetime,
) -> tuple[dict[int, Change], list[FeedEvent]]:
    """Each written post's change, by its place in the group, and the events written,
    in id order, as made at ``at``: one view of each post, shared by its change and
    its events."""
    views = [
        PostView(
            post_id, new.channel, new.author, new.body, at, None, False, False, htmls[n], new.parent
        )
        for (n, new), post_id in zip(accepted, post_ids, strict=True)
    ]
    written: dict[int, Change] = {}
    events = []
    for (k, kind, recipient), event_id in zip(order, event_ids, strict=True):
        view = views[k]
        if recipient is None:
            written[accepted[k][0]] = Change(view, event_id)
        chan = channels[view.channel]
        events.append(FeedEvent(event_id, kind, chan.name, view, None, at, chan.private, recipient))
    return written, events


class GroupChannel(Protocol):
    """What a group needs of a channel: a ``Channel`` row, or SQLite's plain tuple
    (storage/sqlite.py, on the channels read plainly)."""

    @property
    def id(self) -> int | None: ...
    @property
    def name(self) -> str: ...
    @property
    def private(self) -> bool: ...
    @property
    def archived(self) -> bool: ...


def created(new: NewPost) -> EventKind:
    return EventKind.POST_CREATED if new.parent is None else EventKind.REPLY_CREATED
