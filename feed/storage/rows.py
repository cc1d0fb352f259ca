"""The rows a group of new posts writes and what it announces: the posts' rows, column
by column, their events in order (a post's mentions just before its own event), and,
once the ids are known, each post's change and the events as the store notes them
(new_posts.py).

The posts' rows are columns (``PostRows``), not a dict a row: both stores take them so
(SQLite's rows of values, storage/sqlite.py; PostgreSQL's arrays, storage/postgres.py),
and what every post of a group shares (its time, its flags) is given once."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple, Protocol

from feed import mentions
from feed.models import EventKind
from feed.values import Change, FeedEvent, NewPost, PostView

Planned = list[tuple[int, EventKind, str | None]]


# The columns of the posts table each new post has its own value of, as ``PostRows``
# holds them, and those of the events table; the others' values are shared.
POST_COLUMNS = ("channel_id", "author", "body", "parent_id", "html")
EVENT_COLUMNS = ("kind", "channel_id", "post_id", "recipient")


class PostRows(NamedTuple):
    """The rows of a group's new posts, a column each, in the group's order; every one
    made at ``at``, not edited, pinned or deleted."""

    channel_ids: list[int]
    authors: list[str]
    bodies: list[str]
    parents: list[int | None]
    htmls: list[str]
    at: datetime

    def values(self) -> list[tuple[Any, ...]]:
        """Each row's values of ``POST_COLUMNS``."""
        columns = self.channel_ids, self.authors, self.bodies, self.parents, self.htmls
        return list(zip(*columns, strict=True))

    def shared(self) -> dict[str, Any]:
        """The values every row has, by column."""
        return {"created_at": self.at, "edited_at": None, "pinned": False, "deleted": False}


def event_values(order: Planned, posts: PostRows, post_ids: Sequence[int]) -> list[tuple[Any, ...]]:
    """Each planned event's values of ``EVENT_COLUMNS``, once its post's id is known;
    every one made at the posts' time."""
    channel_ids = posts.channel_ids
    return [(kind.value, channel_ids[k], post_ids[k], to) for k, kind, to in order]


def planned(
    accepted: Sequence[tuple[int, NewPost]],
    channels: dict[str, GroupChannel],
    htmls: Sequence[str],
    at: datetime,
) -> tuple[PostRows, Planned]:
    """The rows of the ``accepted`` posts, made at ``at``, and their events, each as
    (its post's place in ``accepted``, kind, recipient), in order."""
    ids = {name: channel.id for name, channel in channels.items() if channel.id is not None}
    news = [new for _, new in accepted]
    post_rows = PostRows(
        [ids[new.channel] for new in news],
        [new.author for new in news],
        [new.body for new in news],
        [new.parent for new in news],
        [htmls[n] for n, _ in accepted],
        at,
    )
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
