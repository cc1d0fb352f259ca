"""The tables, and the values passed between threads.

The SQLModel tables here must match what the migrations (feed/migrations) build. Store
methods run in worker threads (storage/engine.py, on worker threads) and hand back
frozen dataclasses, never rows: a row belongs to its session, a value may go anywhere.
The converters at the end turn rows into those values. The queries, and the reasons
behind how the tables are written and read, are in the store's parts (feed/storage/).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum

from sqlalchemy import BigInteger, Integer, UniqueConstraint
from sqlmodel import Field, SQLModel

from feed import markdown


class EventKind(StrEnum):
    """What happened; also the SSE ``event:`` name."""

    POST_CREATED = "post-created"
    POST_UPDATED = "post-updated"
    POST_DELETED = "post-deleted"
    POST_PINNED = "post-pinned"
    POST_UNPINNED = "post-unpinned"
    REPLY_CREATED = "reply-created"
    REPLY_UPDATED = "reply-updated"
    REPLY_DELETED = "reply-deleted"
    # Sent only to live searches, never logged: an edit made this post stop matching
    # (search.py, on live searches).
    POST_UNMATCHED = "post-unmatched"
    CHANNEL_CREATED = "channel-created"
    CHANNEL_UPDATED = "channel-updated"
    CHANNEL_ARCHIVED = "channel-archived"
    CHANNEL_RESTORED = "channel-restored"
    # Personal events, addressed to one identity (reading.py).
    READ_POSITION = "read-position"
    MENTION = "mention"
    # A post's reactions now, after one or more toggles (storage/reactions.py).
    POST_REACTIONS = "post-reactions"

    @property
    def is_post(self) -> bool:
        """About a post, a reply included (replies are posts)."""
        return self.value.startswith(("post-", "reply-"))

    @property
    def is_reply(self) -> bool:
        return self.value.startswith("reply-")

    @property
    def is_personal(self) -> bool:
        return self in PERSONAL_KINDS


PERSONAL_KINDS = frozenset({EventKind.READ_POSITION, EventKind.MENTION})


class Channel(SQLModel, table=True):
    __tablename__ = "channels"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True, max_length=64)
    title: str = Field(max_length=200)
    description: str = Field(default="", max_length=2000)
    archived: bool = False
    # Readable only by members and admins (access.py).
    private: bool = False
    # Writers may post only with a member's grant to post.
    announcement_only: bool = False
    # Readers of an announcement-only channel may reply (permissions.py, on replies).
    replies: bool = True


class Post(SQLModel, table=True):
    __tablename__ = "posts"

    id: int | None = Field(default=None, primary_key=True)
    channel_id: int = Field(foreign_key="channels.id", index=True)
    # The post this one answers (always a top-level one, in the same channel); None
    # for a top-level post (storage/posts.py, on replies).
    parent_id: int | None = Field(default=None, foreign_key="posts.id", index=True)
    author: str = Field(max_length=200)
    body: str
    # The body as sanitised HTML, made when it was written (markdown.py); None for
    # a post that has none yet (migration 0007 gives it to older posts), which is
    # rendered when read.
    html: str | None = None
    created_at: datetime
    edited_at: datetime | None = None
    pinned: bool = False
    deleted: bool = False


class IdempotencyKey(SQLModel, table=True):
    """A request's ``Idempotency-Key`` and the answer it got (storage/keys.py,
    on idempotency keys)."""

    __tablename__ = "idempotency_keys"

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(unique=True, max_length=255)
    # A digest of the method, path and body, to tell a retry from a reuse.
    fingerprint: str = Field(max_length=64)
    status: int
    body: str
    location: str | None = Field(default=None, max_length=200)
    created_at: datetime = Field(index=True)


class Token(SQLModel, table=True):
    """An API token or a kiosk link. Only a digest of the secret is kept (storage/grants.py,
    on token digests)."""

    __tablename__ = "tokens"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=80, index=True)
    role: str = Field(max_length=16)
    kind: str = Field(max_length=16)
    # Channel names separated by commas; None: every channel the identity may use.
    channels: str | None = Field(default=None, max_length=4000)
    digest: str = Field(unique=True, max_length=64)
    created_at: datetime
    revoked_at: datetime | None = None


class Member(SQLModel, table=True):
    """A grant: ``name`` may read the private ``channel``, and post there if ``may_post``."""

    __tablename__ = "members"
    __table_args__ = (UniqueConstraint("channel_id", "name"),)

    id: int | None = Field(default=None, primary_key=True)
    channel_id: int = Field(foreign_key="channels.id", index=True)
    name: str = Field(max_length=80, index=True)
    may_post: bool = False


class Secret(SQLModel, table=True):
    """Keys made once and shared by every process, such as the signing key."""

    __tablename__ = "secrets"

    name: str = Field(primary_key=True, max_length=64)
    value: str = Field(max_length=200)


class EndedSession(SQLModel, table=True):
    """A session cookie signed out of: refused from then on, although its signature
    is still good, until it would have expired anyway (access.py, on cookies and CSRF)."""

    __tablename__ = "ended_sessions"

    digest: str = Field(primary_key=True, max_length=64)
    expires_at: datetime = Field(index=True)


# 64 bits (storage/log.py, on ids never reused); SQLite's INTEGER PRIMARY KEY already is, and
# only that exact type makes the column the rowid that AUTOINCREMENT needs.
EVENT_ID = BigInteger().with_variant(Integer(), "sqlite")


class Event(SQLModel, table=True):
    __tablename__ = "events"
    # Ids follow commit order and are never reused (storage/log.py, on ids in commit order).
    __table_args__ = {"sqlite_autoincrement": True}

    id: int | None = Field(default=None, sa_type=EVENT_ID, primary_key=True)
    kind: str = Field(max_length=32)
    channel_id: int = Field(foreign_key="channels.id", index=True)
    post_id: int | None = Field(default=None, foreign_key="posts.id")
    created_at: datetime
    # The identity a personal event is for (reading.py); None: an event for everyone.
    recipient: str | None = Field(default=None, max_length=80, index=True)


class ReadPosition(SQLModel, table=True):
    """How far ``name`` has read ``channel``: every event up to ``event_id``."""

    __tablename__ = "read_positions"
    __table_args__ = (UniqueConstraint("name", "channel_id"),)

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=80, index=True)
    channel_id: int = Field(foreign_key="channels.id", index=True)
    event_id: int = Field(sa_type=EVENT_ID)


class Reaction(SQLModel, table=True):
    """``name`` reacted to a post with ``reaction`` (one of ``FEED_REACTIONS``)."""

    __tablename__ = "reactions"
    __table_args__ = (UniqueConstraint("post_id", "name", "reaction"),)

    id: int | None = Field(default=None, primary_key=True)
    post_id: int = Field(foreign_key="posts.id", index=True)
    name: str = Field(max_length=80)
    reaction: str = Field(max_length=32)
    created_at: datetime


class ReactionWindow(SQLModel, table=True):
    """When a post's last ``post-reactions`` event was written, and the toggles made
    since that wait for the next one (storage/reactions.py, on coalescing)."""

    __tablename__ = "reaction_windows"

    post_id: int = Field(primary_key=True, foreign_key="posts.id")
    logged_at: datetime
    pending: bool = Field(default=False, index=True)
    # JSON: [[name, reaction, reacted], ...], the last toggle of each, bounded.
    changes: str = "[]"
    # Toggles beyond the bound, counted only.
    more: int = 0


class ReactionNews(SQLModel, table=True):
    """The toggles one ``post-reactions`` event reports: who changed what."""

    __tablename__ = "reaction_news"

    event_id: int = Field(sa_type=EVENT_ID, primary_key=True)
    changes: str = "[]"
    more: int = 0


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


@dataclass(frozen=True, slots=True)
class FrontPage:
    """Pinned and recent posts (newest first), where to page back from, the newest
    event id at the moment they were read, and the reader's own reactions then."""

    posts: list[PostView]
    older_before: int | None
    last_event_id: int
    # The reader's own reactions to those posts, by post id, from the same snapshot.
    mine: dict[int, tuple[str, ...]] = field(default_factory=dict)


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


@dataclass(frozen=True, slots=True)
class NewPost:
    """A post waiting to be written in a group (storage/posts.py): its body's HTML, if rendered
    yet, and the request's ``Idempotency-Key`` claim with how to write down its answer,
    if it came with one."""

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
