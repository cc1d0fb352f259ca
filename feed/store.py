"""Persistence: the one ``Store``, put together from its parts in ``feed/storage/``.
The tables are in models.py, the values the queries return in values.py; every
query is in the store.

The database is the event log (storage/log.py). Each change a reader can see writes an
``events`` row in the same transaction as the change itself; the row's id is the SSE
id. Every write goes through one write context, and once it has committed the store
announces what it changed to its listeners (``on_commit``; storage/log.py, on the
commit announcement): the relay, the broker and the access caches. Nothing else
announces a change.

Where each rule is kept:

- ids in commit order, never reused, the rollback guard, one snapshot, hints inside
  the transaction, the commit announcement: storage/log.py;
- reads for a reader (private channels filtered in SQL, personal events for their
  person alone), the log read back after an id: storage/history.py;
- worker threads, ``BEGIN IMMEDIATE``, the bound on waiting, unavailable and
  unstorable values, synced commits: storage/engine.py;
- new posts written in groups: storage/new_posts.py; rendering at write time,
  tombstones: storage/posts.py;
- a list's pinned section and its history, read from the index of pinned posts, and
  the events a page's posts carry: storage/lists.py;
- reactions, coalesced into one event per post per window: storage/reactions.py, with
  the counts every read carries in storage/tallies.py;
- idempotency keys: storage/keys.py;
- one level of replies, thread summaries, a post deleted with its replies:
  storage/threads.py;
- token digests: storage/grants.py;
- read positions and mentions, personal events: storage/reading.py;
- the search index and its windows: storage/search.py.
"""

from __future__ import annotations

from sqlalchemy import text

from feed import schema
from feed.storage.channels import Channels, seed_channels
from feed.storage.engine import in_thread, make_engine
from feed.storage.grants import Grants
from feed.storage.history import History
from feed.storage.lists import Lists
from feed.storage.new_posts import NewPosts
from feed.storage.posts import Posts
from feed.storage.reactions import Reactions
from feed.storage.reading import Reading
from feed.storage.refusals import (
    ChannelArchived,
    ChannelExists,
    ChannelNotFound,
    IdempotencyKeyReused,
    NotAThread,
    PostDeleted,
    PostNotFound,
    ReplyNotPinned,
    StoreError,
    StoreUnavailable,
    TokenNotFound,
    Unstorable,
)
from feed.storage.search import Searches

__all__ = [
    "ChannelArchived",
    "ChannelExists",
    "ChannelNotFound",
    "IdempotencyKeyReused",
    "NotAThread",
    "PostDeleted",
    "PostNotFound",
    "ReplyNotPinned",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "TokenNotFound",
    "Unstorable",
    "make_engine",
]


class Store(NewPosts, Posts, Lists, Reactions, Searches, Channels, Grants, Reading, History):
    """The feed's tables and queries. Public methods are coroutines."""

    @classmethod
    def from_url(cls, url: str, *, notify: bool = False) -> Store:
        """A store on ``url``; ``notify`` sends the other processes' hints by NOTIFY
        inside each write (storage/log.py, on hints inside the transaction)."""
        return cls(make_engine(url), notify=notify)

    @in_thread
    def create_schema(self) -> None:
        """Bring the tables up to date, create the channels every feed starts with, and
        put the next event id past any this log may have handed out (storage/log.py, on
        ids never reused)."""
        schema.upgrade(self._writer)
        with self._write() as session:
            seed_channels(session)
            self._skip_event_ids(session)

    @in_thread
    def ping(self) -> None:
        """Raise ``StoreUnavailable`` unless the database answers."""
        with self._engine.connect() as connection:
            connection.execute(text("SELECT 1"))
