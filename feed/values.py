"""The values passed between threads, and the converters that make them from rows.

Store methods run in worker threads (storage/engine.py, on worker threads) and hand back
these frozen dataclasses, never rows (models.py): a row belongs to its session, a value
may go anywhere. The converters at the end turn rows into those values.

Rationale:

1. Quick to make. The values every new post makes (``NewPost``, ``PostView``,
   ``FeedEvent``, ``Change``: a batch of 1,000 posts makes thousands) are made by an
   ``__init__`` of their own (``_quick_init``), which sets each slot through its
   descriptor. The one ``dataclass`` writes for a frozen class sets each field through
   ``object.__setattr__``, a lookup and a call a field, and was most of what building
   them cost (docs/benchmarks.md, batch publishing: toward 40 µs a post). They are as
   frozen as before: assigning a field still raises, and equality, hashing, ``repr``
   and ``dataclasses.replace`` are the dataclass's own. Only classes whose defaults are
   plain values (no ``default_factory``) and which have no ``__post_init__`` are made so.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from feed import markdown
from feed.models import (
    Channel,
    Event,
    EventKind,
    Post,
    Token,
)


@dataclass(frozen=True, slots=True)
class ReactionCount:
    """How many reacted to a post with ``reaction``, and the first of them by name."""

    reaction: str
    count: int
    names: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ReactionChange:
    """One toggle: ``name`` now has (``reacted``) or has not ``reaction`` on the post."""

    name: str
    reaction: str
    reacted: bool


@dataclass(frozen=True, slots=True)
class ReactionToggle:
    """The outcome of a toggle: whether it changed anything, the post's reactions and
    the toggler's own now, the event it wrote (None if none yet), and, if its change
    waits for the post's window to end, when that is (a POSIX time)."""

    post: PostView
    changed: bool
    mine: tuple[str, ...]
    event_id: int | None
    due: float | None


@dataclass(frozen=True, slots=True)
class ChannelView:
    name: str
    title: str
    description: str
    archived: bool = False
    private: bool = False
    announcement_only: bool = False
    replies: bool = True


@dataclass(frozen=True, slots=True)
class TokenView:
    """A token as ``feed token list`` shows it: never its secret."""

    id: int
    name: str
    role: str
    kind: str
    channels: tuple[str, ...] | None
    created_at: datetime
    revoked_at: datetime | None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


@dataclass(frozen=True, slots=True)
class MemberView:
    channel: str
    name: str
    may_post: bool


@dataclass(frozen=True, slots=True)
class PostView:
    """A post as readers see it now; safe to pass between threads."""

    id: int
    channel: str
    author: str
    body: str
    created_at: datetime
    edited_at: datetime | None
    pinned: bool
    deleted: bool
    html: str  # the body as sanitised HTML (markdown.py)
    parent: int | None = None  # the post this one answers; None if top-level
    # Of a top-level post: its live replies, and the latest repliers, newest first.
    replies: int = 0
    repliers: tuple[str, ...] = ()
    # Its reactions now, in the order they were first made (storage/tallies.py).
    reactions: tuple[ReactionCount, ...] = ()


@dataclass(frozen=True, slots=True)
class Thread:
    """A top-level post's reply summary as it is now: how many live replies it has,
    and who wrote the latest ones (distinct names, newest first)."""

    post: int
    replies: int
    repliers: tuple[str, ...]
    # The post's own body, read with an event's summary only: a live search shows the
    # whole thread of a post it matches (post_words.py, on live searches).
    body: str | None = None


@dataclass(frozen=True, slots=True)
class FeedEvent:
    """One row of the event log, joined with the current state of what it is about:
    its post (post events) or its channel (channel events)."""

    id: int
    kind: EventKind
    channel: str
    post: PostView | None
    channel_view: ChannelView | None = None
    at: datetime | None = None  # when it was written
    private: bool = False  # of a private channel, as the channel is now
    # A personal event's identity (reading.py), and for a read position how far that
    # identity has read the channel now.
    recipient: str | None = None
    read_up_to: int | None = None
    # A reply's event: its parent's reply summary, as it is now.
    thread: Thread | None = None
    # A ``post-reactions`` event's toggles, and how many more it left out.
    changes: tuple[ReactionChange, ...] = ()
    more: int = 0

    @property
    def root(self) -> int | None:
        """The thread this event belongs to: its post's parent, or the post itself."""
        post = self.post
        if post is None:
            return None
        return post.id if post.parent is None else post.parent

    @property
    def texts(self) -> tuple[str, ...]:
        """The text an event keeps alive: its post's body and HTML, and a reply's
        parent's body (the caches that keep events count their memory)."""
        post, thread = self.post, self.thread
        if post is None:
            return ()
        if thread is None or thread.body is None:
            return (post.body, post.html)
        return (post.body, post.html, thread.body)


@dataclass(frozen=True, slots=True)
class AccessChange:
    """What one transaction changed of who may do what; empty if nothing. A process
    that only hears that access changed somewhere else knows no more than
    ``elsewhere``."""

    revoked: frozenset[int] = frozenset()  # tokens and kiosk links revoked, by id
    ended: frozenset[str] = frozenset()  # sessions signed out of, by digest
    tokens: bool = False  # tokens or kiosk links made
    members: bool = False  # memberships granted, changed or taken away
    channels: bool = False  # channels made or changed: which are private, who may post
    elsewhere: bool = False  # in another process, in ways unknown here

    def __bool__(self) -> bool:
        return bool(
            self.revoked
            or self.ended
            or self.tokens
            or self.members
            or self.channels
            or self.elsewhere
        )

    def __or__(self, other: AccessChange) -> AccessChange:
        return AccessChange(
            self.revoked | other.revoked,
            self.ended | other.ended,
            self.tokens or other.tokens,
            self.members or other.members,
            self.channels or other.channels,
            self.elsewhere or other.elsewhere,
        )


NO_ACCESS_CHANGE = AccessChange()


@dataclass(frozen=True, slots=True)
class Commit:
    """What one transaction changed, as the store announces it once committed: the
    events it wrote, in id order, each with its post or channel as that transaction
    left it; the id of the event just before the first of them in the log (0 if
    none), so whoever has delivered up to ``after`` can deliver these next without
    reading the log; and what it changed of access (storage/log.py, on the
    commit announcement)."""

    after: int
    events: list[FeedEvent]
    access: AccessChange = NO_ACCESS_CHANGE
    # Seconds the commit took, its last writes and its sync to disk included; 0 for an
    # announcement of nothing committed.
    took: float = 0.0


@dataclass(frozen=True, slots=True)
class FrontPage:
    """Pinned and recent posts (newest first), or a page of older ones, where to page
    back from, the newest event id at the moment they were read, and what else the
    page shows of them then (storage/lists.py, on a page's posts' events)."""

    posts: list[PostView]
    older_before: int | None
    last_event_id: int
    # The reader's own reactions to those posts, by post id, from the same snapshot.
    mine: dict[int, tuple[str, ...]] = field(default_factory=dict)
    # By post id, when asked for: the event that made it, and the one that made its
    # newest live reply, from the same snapshot (none newer than ``last_event_id``).
    created: dict[int, int] = field(default_factory=dict)
    replied: dict[int, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ReadMark:
    """A read position as a write left it: how far ``channel`` is read now, and the
    personal event the move logged (None if it did not move)."""

    channel: str
    up_to: int
    event_id: int | None


@dataclass(frozen=True, slots=True)
class Unread:
    """What one identity has not read of one channel: posts, and mentions of it."""

    channel: str
    posts: int
    mentions: int
    read_up_to: int


@dataclass(frozen=True, slots=True)
class Mention:
    """A post that mentions someone, as it is now, and its mention event."""

    event_id: int
    post: PostView
    unread: bool


@dataclass(frozen=True, slots=True)
class ThreadPage:
    """A top-level post with its replies (the newest ``limit``, oldest first), how
    many it has in all, and the newest event id at the moment they were read."""

    post: PostView
    replies: list[PostView]
    last_event_id: int
    mine: dict[int, tuple[str, ...]] = field(default_factory=dict)  # the reader's reactions


@dataclass(frozen=True, slots=True)
class NewPost:
    """A post waiting to be written in a group (storage/new_posts.py): its body's HTML, if
    rendered yet, and the request's ``Idempotency-Key`` claim with how to write down its
    answer, if it came with one."""

    channel: str
    author: str
    body: str
    html: str | None = None
    parent: int | None = None  # the post this one answers
    claim: Claim | None = None
    answer: Callable[[Change], Answer] | None = None


@dataclass(frozen=True, slots=True)
class Change:
    """The outcome of a write: the post now, and the event it logged (None if nothing changed)."""

    post: PostView
    event_id: int | None


@dataclass(frozen=True, slots=True)
class ChannelChange:
    """The outcome of a channel write: the channel now, and the event it logged."""

    channel: ChannelView
    event_id: int | None


@dataclass(frozen=True, slots=True)
class Claim:
    """An ``Idempotency-Key`` and the fingerprint of the request that carried it."""

    key: str
    fingerprint: str


@dataclass(frozen=True, slots=True)
class Answer:
    """What a request was answered with: kept so that a retry gets the same."""

    status: int
    body: str
    location: str | None = None


@dataclass(frozen=True, slots=True)
class Once:
    """The outcome of an idempotent write: the answer, the event to announce (None if
    nothing new was written) and whether the answer is a replay."""

    answer: Answer
    event_id: int | None
    replayed: bool


V = TypeVar("V")


def _quick_init(cls: type[V]) -> type[V]:
    """``cls`` with an ``__init__`` that sets its slots through their descriptors, with
    the dataclass's parameters and defaults (1)."""
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    plain = all(f.init and f.default_factory is dataclasses.MISSING for f in fields)
    if not plain or hasattr(cls, "__post_init__"):
        raise TypeError(f"{cls.__name__}: only plain fields are made quickly")
    scope: dict[str, Any] = {}
    params, body = [], []
    for f in fields:
        scope[f"_set_{f.name}"] = getattr(cls, f.name).__set__
        if f.default is dataclasses.MISSING:
            params.append(f.name)
        else:
            scope[f"_default_{f.name}"] = f.default
            params.append(f"{f.name}=_default_{f.name}")
        body.append(f"    _set_{f.name}(self, {f.name})\n")
    exec(f"def __init__(self, {', '.join(params)}):\n{''.join(body)}", scope)
    init = scope["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    setattr(cls, "__init__", init)  # noqa: B010  # not a method mypy knows of
    return cls


for _made_per_post in (NewPost, PostView, FeedEvent, Change):
    _quick_init(_made_per_post)


def _utc(moment: datetime | None) -> datetime | None:
    # Every moment is written in UTC; SQLite gives it back without a zone.
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def _channel_view(channel: Channel) -> ChannelView:
    return ChannelView(
        channel.name,
        channel.title,
        channel.description,
        channel.archived,
        channel.private,
        channel.announcement_only,
        channel.replies,
    )


def _token_view(token: Token) -> TokenView:
    assert token.id is not None
    channels = None if token.channels is None else tuple(token.channels.split(","))
    return TokenView(
        token.id,
        token.name,
        token.role,
        token.kind,
        channels,
        _utc(token.created_at) or token.created_at,
        _utc(token.revoked_at),
    )


def _feed_event(
    event: Event, post: Post | None, channel: Channel, read_up_to: int | None = None
) -> FeedEvent:
    assert event.id is not None
    kind, at = EventKind(event.kind), _utc(event.created_at)
    private, to = channel.private, event.recipient
    if post is not None:
        view = _post_view(post, channel.name)
        return FeedEvent(event.id, kind, channel.name, view, at=at, private=private, recipient=to)
    return FeedEvent(
        event.id,
        kind,
        channel.name,
        None,
        # A read position says nothing new of its channel (access.py learns from these).
        None if kind.is_personal else _channel_view(channel),
        at=at,
        private=private,
        recipient=to,
        read_up_to=read_up_to,
    )


def _post_view(post: Post, channel: str) -> PostView:
    assert post.id is not None
    return PostView(
        id=post.id,
        channel=channel,
        author=post.author,
        body=post.body,
        created_at=_utc(post.created_at) or post.created_at,
        edited_at=_utc(post.edited_at),
        pinned=post.pinned,
        deleted=post.deleted,
        html=markdown.to_html(post.body) if post.html is None else post.html,
        parent=post.parent_id,
    )
