"""The tables, and the kinds of event the log holds.

The SQLModel tables here must match what the migrations (feed/migrations) build. Rows
stay in the store's worker threads: what leaves the store is values.py's. The
queries, and the reasons behind how the tables are written and read, are in the
store's parts (feed/storage/).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, Index, Integer, UniqueConstraint, text
from sqlmodel import Field, SQLModel


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
    # (post_words.py, on live searches).
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
# Which rows of ``events`` the index of personal events holds.
PERSONAL = "recipient IS NOT NULL"


# Which rows of ``posts`` the index of pinned posts holds, in the words each database's
# reads use: a database uses a partial index only for a query whose conditions it can
# match with the index's own (storage/lists.py, on reading the pinned section).
PINNED_SQLITE = "pinned IS 1"
PINNED_POSTGRESQL = "pinned IS true"


# 64 bits (storage/log.py, on ids never reused); SQLite's INTEGER PRIMARY KEY already is, and
# only that exact type makes the column the rowid that AUTOINCREMENT needs.
EVENT_ID = BigInteger().with_variant(Integer(), "sqlite")


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
    # The event that last made it private or public; None: never (storage/history.py,
    # on channels changed while away).
    privacy_event: int | None = Field(default=None, sa_type=EVENT_ID)


class Post(SQLModel, table=True):
    __tablename__ = "posts"
    # A channel's or an author's newest posts, read from the index in id order
    # (storage/search.py, on filters; migration 0012_search_indexes).
    __table_args__ = (
        Index("ix_posts_channel_id_id", "channel_id", "id"),
        Index("ix_posts_author_id", "author", "id"),
        # A thread's live replies, walked newest first from the index
        # (storage/threads.py, on summaries of long threads; migration
        # 0015_thread_summaries); every other lookup of a post's replies too
        # (migration 0017_one_thread_index).
        Index("ix_posts_parent_id_deleted_id", "parent_id", "deleted", "id"),
        # A list's pinned section, read from its few posts rather than by walking
        # every post (storage/lists.py, on reading the pinned section; migration
        # 0021_pinned_posts_index).
        Index(
            "ix_posts_pinned",
            "channel_id",
            "id",
            sqlite_where=text(PINNED_SQLITE),
            postgresql_where=text(PINNED_POSTGRESQL),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    channel_id: int = Field(foreign_key="channels.id")
    # The post this one answers (always a top-level one, in the same channel); None
    # for a top-level post (storage/posts.py, on replies).
    parent_id: int | None = Field(default=None, foreign_key="posts.id")
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
    # Of a top-level post: its live replies, kept by every write that changes them
    # (storage/threads.py, on the stored count; migration 0016_reply_counts).
    reply_count: int = Field(default=0, sa_column_kwargs={"server_default": "0"})


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


class Event(SQLModel, table=True):
    __tablename__ = "events"
    # Ids follow commit order and are never reused (storage/log.py, on ids in commit order).
    # Personal events indexed by their person alone: shared events, nearly all of
    # them, are left out (storage/history.py, on personal events; migration
    # 0019_personal_events_index).
    __table_args__ = (
        Index(
            "ix_events_recipient",
            "recipient",
            sqlite_where=text(PERSONAL),
            postgresql_where=text(PERSONAL),
        ),
        {"sqlite_autoincrement": True},
    )

    id: int | None = Field(default=None, sa_type=EVENT_ID, primary_key=True)
    kind: str = Field(max_length=32)
    channel_id: int = Field(foreign_key="channels.id", index=True)
    post_id: int | None = Field(default=None, foreign_key="posts.id", index=True)
    created_at: datetime
    # The identity a personal event is for (reading.py); None: an event for everyone.
    recipient: str | None = Field(default=None, max_length=80)


class ReadPosition(SQLModel, table=True):
    """How far ``name`` has read ``channel``: every event up to ``event_id``."""

    __tablename__ = "read_positions"
    __table_args__ = (UniqueConstraint("name", "channel_id"),)

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=80, index=True)
    channel_id: int = Field(foreign_key="channels.id", index=True)
    event_id: int = Field(sa_type=EVENT_ID)


class MembershipChange(SQLModel, table=True):
    """The log's newest event id when ``name`` was last given or refused a channel: a
    stream of theirs resuming from before it is told to re-fetch its list
    (storage/grants.py, on memberships changed while away)."""

    __tablename__ = "membership_changes"

    name: str = Field(max_length=80, primary_key=True)
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
