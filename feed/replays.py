"""Replays, read in pages shared by streams that resume from the same place at the same
moment, and written in pieces.

Rationale:

1. After a restart or a network cut every screen reconnects within seconds, most of them
   with the same ``Last-Event-ID``. Each used to run its own query and render every
   event it had missed: a query and a render per kiosk, which kept a storm of them
   from being live again for a long time (docs/benchmarks.md, connect storm). Now the
   first stream to ask for a count or a page runs the query; the others that ask for
   the same one await that answer, and each page is encoded once per format.
2. When is an answer "the same one"? A stream joins the hub before it asks for its
   replay (stream.py, on joining before the replay), so it needs the replay to hold
   every event the relay published before it joined. The key therefore includes the
   id the relay had delivered when the stream joined: a stream that joined after the
   relay published anything newer gets answers of its own. Within one key, any change
   made after the query has its own, newer event, which every such stream receives
   live, so a shared page is never wrong by the time it is applied. Answers are kept
   for ``TTL`` seconds at most, and at most ``MAX_PAGES`` pages at once.
3. A replay can be up to ``FEED_REPLAY_LIMIT`` events of up to ``FEED_MAX_POST_CHARS``
   each, and a client that resumes may never read it. So a replay is read from the
   store ``PAGE`` events at a time and written in pieces of a quarter of the stream's
   backlog (``FEED_SUBSCRIBER_BACKLOG``), each piece only once the connection has
   taken the one before (uvicorn's ``send`` waits for its write buffer to drain below
   the transport's high-water mark, 64 KiB, before it writes). Between pieces a stream
   keeps only its ``Cursor``, never a page. So a stalled stream holds a piece waiting
   to go, and its write buffer the one before and the high-water mark: about half its
   backlog, however large the replay; a page lives only as long as the cache keeps
   it. A stream that comes back for the rest of a page after the cache let it go reads
   a page of its own from where it stopped. Most replays after a restart fit in one
   piece, sent with the stream's opening: one write per stream.
4. Whether the replay is longer than ``FEED_REPLAY_LIMIT`` (then the client gets one
   ``resync`` instead) is counted in the database before anything is written, so the
   decision never waits for the pages.
5. On personal events. A signed-in reader's replay holds their own personal events
   (storage/history.py, on personal events), so its pages cannot be shared with anyone
   else's. Most resumes have none in their range, though: a small indexed question
   (asked once per person and place, like ``has_event``) tells, and a reader without
   any shares everyone's pages, as in (1). The answer holds for every event up to
   the relay's delivered id when the stream joined, which the replay covers; later
   ones come live (stream.py, on joining before the replay). So that id is part of
   the question's key, as of a page's (2): a stream that joined after the relay
   delivered more asks again, or a mention written since an answer of "none" would
   be neither in its replay nor live.
6. A live search's replay reads the same pages of the log and keeps the events that
   search shows, judged as live delivery judges them (post_words.py, on live searches):
   exactly the matching events after the resume id. Its pages are shared by the
   streams of the same search (the query's text is part of the key); a page ends
   where its read of the log ended, not at its last kept event, so the cursor moves
   past what it left out. Its limit is counted on the log, before matching: it bounds
   the work of the replay, not only what it sends.
7. Where a replay ends. It ends at the newest id the relay had delivered when the
   stream joined, or at the resume id if that is newer (another process's, which
   this one has not delivered yet): ``Cursor.upto``. It ends there even when its
   last page holds newer events: those reach the stream live, judged as live
   delivery judges them, by the stream's access and its person as they are when each
   event comes. Sent with the replay instead, they were judged as the replay was when
   it began, which a slow reader can make minutes ago: a post in a channel taken from
   the reader since went out, and the reader's own mention, left out of a shared
   page, was then dropped live as already passed. For the same reason the rest of a
   replay is read with the private channels the stream may read now
   (``Cursor.follow``, before every piece).
8. Turns per client. Streams that resume from many places at once read a page each
   and render it: from one client address (a script, or an attacker who need not
   even read what it asked for), hundreds of those held every worker thread and the
   loop, and everyone else's requests waited seconds. So one client's streams build
   at most ``PIECES_AT_ONCE`` pieces at once, the rest waiting their turn in order,
   while other clients' pieces go ahead (``Turns``). A resume's questions before its
   replay (resume.py) take a turn too. Only the building and the asking take turns,
   not the write: a client that reads slowly holds none. Screens behind one address
   (an office's) resuming after a restart mostly resume alike, from pages they share.
"""

from __future__ import annotations

import bisect
import itertools
import sys
from dataclasses import dataclass, field

from feed import post_words
from feed.render import Renderer
from feed.search import Query
from feed.sharing import Shared, Turns
from feed.sse import Format
from feed.store import Store
from feed.values import FeedEvent

TTL = 2.0
PAGE = 100  # events read from the store at a time
PIECES = 4  # a piece is this part of the stream's backlog, or one event if larger
MAX_PAGES = 64  # so at most 6,400 events are kept, whatever FEED_REPLAY_LIMIT is
# ...and at most this much of them: pages of posts at the length limit, encoded in
# three formats, come to tens of MB each.
MAX_PAGE_BYTES = 32 * 1024 * 1024
PIECES_AT_ONCE = 2  # pieces one client's streams build at once (8)
MAX_COUNTS = 256
MAX_KNOWN = 1024

# (after, channels, readable private channels, relay's delivered id, the identity
# whose personal events it holds, the one kind it holds if only one, thread or None,
# live search's text or None)
Key = tuple[
    int,
    tuple[str, ...] | None,
    tuple[str, ...] | None,
    int,
    str | None,
    str | None,
    int | None,
    str | None,
]


class Cursor:
    """Where one stream is in its replay (rationale 3)."""

    __slots__ = (
        "after",
        "channels",
        "client",
        "delivered",
        "done",
        "format",
        "only",
        "person",
        "piece",
        "private",
        "search",
        "sent",
        "start",
        "thread",
        "upto",
    )

    def __init__(
        self,
        fmt: Format,
        after: int,
        channels: frozenset[str] | None,
        private: frozenset[str] | None,
        delivered: int,
        upto: int,
        backlog: int,
        person: str | None = None,
        only: str | None = None,
        thread: int | None = None,
        search: Query | None = None,
    ) -> None:
        self.format = fmt
        # Personal events are read for their identity only (storage/history.py, on personal
        # events); the key keeps each identity's pages apart.
        self.person = person
        self.only = only
        self.thread = thread  # one thread's events only (storage/threads.py)
        self.search = search
        self.piece = backlog // PIECES
        self.after = after  # the last event written
        self.start = after  # where the page it is reading begins
        self.channels = None if channels is None else tuple(sorted(channels))
        self.private = None if private is None else tuple(sorted(private))
        self.delivered = delivered
        self.upto = upto  # the replay ends at this id; newer ones come live (7)
        self.sent = 0  # events in the pieces so far
        self.done = False  # the last piece is out
        self.client = ""  # whose turns its pieces take (8): the client's address

    def follow(self, private: frozenset[str] | None) -> None:
        """The private channels the stream may read now (watch.py): the rest of its
        replay is read with them (7)."""
        self.private = None if private is None else tuple(sorted(private))

    def key(self, after: int) -> Key:
        return (
            after,
            self.channels,
            self.private,
            self.delivered,
            self.person,
            self.only,
            self.thread,
            None if self.search is None else self.search.text,
        )


@dataclass
class Encoded:
    """A page's events in one format: joined once, and where each one ends."""

    data: bytes
    ends: list[int]


@dataclass
class Page:
    """Up to ``PAGE`` events after a key's id, and their encodings; for a live search,
    those it shows of them (6)."""

    events: list[FeedEvent]
    # The last event id read, and whether the read was a full one (6); by default,
    # those of ``events``.
    end: int = 0
    more: bool | None = None
    ids: list[int] = field(init=False)
    encoded: dict[Format, Encoded] = field(default_factory=dict)
    text: int = field(init=False)  # the memory of its posts' text

    def __post_init__(self) -> None:
        self.ids = [event.id for event in self.events]
        if self.ids:
            self.end = max(self.end, self.ids[-1])
        if self.more is None:
            self.more = len(self.events) >= PAGE
        # Each string once: the replies to one post share its body.
        kept = {id(text): text for event in self.events for text in event.texts}
        self.text = sum(map(sys.getsizeof, kept.values()))

    @property
    def full(self) -> bool:
        """There may be more events after this page."""
        return bool(self.more)

    def weight(self) -> int:
        """The memory the page keeps: its posts' text and its encodings."""
        return self.text + sum(len(found.data) for found in self.encoded.values())


class Replays:
    def __init__(self, store: Store, renderer: Renderer) -> None:
        self._store = store
        self._renderer = renderer
        self.turns = Turns(PIECES_AT_ONCE)
        self._counts: Shared[tuple[Key, int], int] = Shared(MAX_COUNTS, TTL)
        self._pages: Shared[Key, Page] = Shared(MAX_PAGES, TTL, Page.weight, MAX_PAGE_BYTES)
        self._known: Shared[tuple[int, int], bool] = Shared(MAX_KNOWN, TTL)
        self._personal: Shared[tuple[str, int, int, int], bool] = Shared(MAX_KNOWN, TTL)
        self._changed: Shared[tuple[Key, int], bool] = Shared(MAX_KNOWN, TTL)
        self._members: Shared[tuple[str, int, int], bool] = Shared(MAX_KNOWN, TTL)

    def __len__(self) -> int:
        return len(self._pages)

    async def personal(self, person: str | None, after: int, delivered: int) -> str | None:
        """``person`` if they have personal events after ``after``, else None: their
        replay is then everyone's, shared with every stream resuming from there that
        joined when the relay had delivered up to ``delivered`` (5)."""
        if person is None:
            return None
        key = (person, after, delivered, self._store.rollbacks)
        found = await self._personal.get(key, lambda: self._store.has_personal_after(person, after))
        return person if found else None

    async def has_event(self, event_id: int) -> bool:
        """Whether the log holds ``event_id`` (storage/log.py, on ids never reused), asked of
        the store once however many streams resume from it at the same moment."""
        # A write that finds the log gone back counts it (storage/log.py) before it answers:
        # an answer from before that is no answer now.
        key = (event_id, self._store.rollbacks)
        return await self._known.get(key, lambda: self._store.has_event(event_id))

    async def channels_changed(self, cursor: Cursor) -> bool:
        """Whether a channel the cursor's stream follows changed after its resume id in a
        way its replay cannot show (storage/history.py, on channels changed while
        away), asked once for every stream resuming from the same place."""
        after, channels, private = cursor.after, cursor.channels, cursor.private
        key = (cursor.key(after), self._store.rollbacks)
        return await self._changed.get(
            key,
            lambda: self._store.channels_changed_after(
                after,
                None if channels is None else list(channels),
                private=None if private is None else list(private),
            ),
        )

    async def memberships_changed(self, name: str, after: int) -> bool:
        """Whether ``name`` was given or refused a channel since event ``after``
        (storage/grants.py, on memberships changed while away), asked once for every
        stream of theirs resuming from the same place."""
        key = (name, after, self._store.rollbacks)
        return await self._members.get(
            key, lambda: self._store.memberships_changed_after(name, after)
        )

    def forget(self) -> None:
        """Drop every answer: the log went back (relay.py)."""
        self._counts.clear()
        self._pages.clear()
        for answers in (self._known, self._personal, self._changed, self._members):
            answers.clear()

    async def count(self, cursor: Cursor, limit: int) -> int:
        """How many events the cursor's replay holds, counted up to ``limit`` (4)."""
        after, channels, private, _, person, only, thread, _ = key = cursor.key(cursor.after)
        return await self._counts.get(
            (key, limit),
            lambda: self._store.count_events_after(
                after,
                None if channels is None else list(channels),
                limit=limit,
                private=None if private is None else list(private),
                person=person,
                kinds=None if only is None else [only],
                thread=thread,
            ),
        )

    async def next_piece(self, cursor: Cursor) -> bytes:
        """The next piece of the cursor's replay, which it moves past, setting
        ``cursor.done`` after the last one. A piece takes events from as many pages as
        it needs to fill up; an empty replay has one empty piece. Built in its
        client's turn (8)."""
        async with self.turns.turn(cursor.client):
            return await self._next_piece(cursor)

    async def _next_piece(self, cursor: Cursor) -> bytes:
        parts: list[bytes] = []
        room = cursor.piece
        while True:
            if cursor.key(cursor.start) not in self._pages:
                cursor.start = cursor.after  # its page was let go: read on from here
            page = await self._page(cursor.key(cursor.start), cursor.search)
            room -= self._take(page, cursor, room, parts)
            last = max(min(page.end, cursor.upto), cursor.after)  # (7)
            if cursor.after < last:
                break  # the piece is full
            if not page.full or last >= cursor.upto:
                cursor.done = True
                break
            cursor.start = cursor.after
            del page  # while the next is read
        return b"".join(parts)

    async def _page(self, key: Key, query: Query | None) -> Page:
        after, channels, private, _, person, only, thread, _ = key

        async def read() -> Page:
            events = await self._store.events_after(
                after,
                None if channels is None else list(channels),
                limit=PAGE,
                private=None if private is None else list(private),
                person=person,
                kinds=None if only is None else [only],
                thread=thread,
            )
            if query is None:
                return Page(events)
            end = events[-1].id if events else after
            shown = [found for e in events if (found := post_words.live(query, e)) is not None]
            return Page(shown, end, len(events) >= PAGE)

        return await self._pages.get(key, read)

    def _take(self, page: Page, cursor: Cursor, room: int, parts: list[bytes]) -> int:
        """Add to ``parts`` the events of ``page`` after the cursor that fit in ``room``
        bytes (one at least, if ``parts`` is empty), and move the cursor past them;
        returns their size. A whole page is added as the page's own bytes, not a copy."""
        found = page.encoded.get(cursor.format)
        if found is None:
            encode = self._renderer.encode
            each = [encode(event, cursor.format) for event in page.events]
            found = Encoded(b"".join(each), list(itertools.accumulate(map(len, each))))
            page.encoded[cursor.format] = found
        first = bisect.bisect_right(page.ids, cursor.after)
        # What the page holds after the stream joined is the live path's (7).
        until = bisect.bisect_right(page.ids, cursor.upto)
        page_end = min(page.end, cursor.upto)
        if first >= until:
            # Nothing left to send of it: past what a search left out, too (6).
            cursor.after = max(cursor.after, page_end)
            return 0
        start = found.ends[first - 1] if first else 0
        end = min(bisect.bisect_right(found.ends, start + room), until)
        if end == first and not parts:
            end = first + 1
        if end == first:
            return 0
        stop = found.ends[end - 1]
        parts.append(found.data[start:stop])
        cursor.after = page.ids[end - 1] if end < until else max(page.ids[end - 1], page_end)
        cursor.sent += end - first
        return stop - start
