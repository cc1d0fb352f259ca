"""Reactions: toggles, each stored, and the ``post-reactions`` events that report them.

Rationale:

1. Coalescing. A popular post can take a thousand toggles a second while thousands of
   screens watch it; an event for each would send every screen a thousand updates a
   second. So a toggle commits its reaction row at once, and in the same transaction
   writes a ``post-reactions`` event only if the post's last one is older than the
   window (``FEED_REACTION_WINDOW``); otherwise it notes the toggle on the post's
   window row (``reaction_windows``) as pending. When the window ends, a flusher
   (feed/reactions.py) writes one event for every post whose toggles wait. A post thus
   gets at most one reaction event per window, and every toggle is in the database
   the moment it is answered.
2. The log stays the truth. Each reaction event is an ordinary event, with a fresh id
   in commit order, and it reads as every event does, with the post as it is now
   (log.py, on the current state): its counts and first names when it is read. So
   live delivery, replays and resumes are exact without the hub knowing about
   reactions, and the last event any screen gets for a post carries the final
   counts. Coalescing in the hub instead would delay frames that carry ids already
   passed, which the id filters drop.
3. Who changed what. An event also reports the toggles it covers (``reaction_news``):
   the last of each person's toggles of each reaction, at most ``MAX_CHANGES``, the
   rest counted. A page marks the reactions that are its reader's own from a set it
   keeps (the page's render, its own toggles); a toggle made on another tab or device
   reaches that set through these reports, which name the person, not through bytes
   rendered for one reader. Who reacted is no secret from anyone who may read the
   channel (``GET /api/posts/{id}/reactions`` lists it).
4. A crash between a pending toggle and its flush leaves the window row pending: the
   flusher of any process writes it at start-up, and its regular sweep finds it later
   too; a toggle to that post also writes it, the window having long ended.
5. A deleted post loses its reactions with its body (posts.py, on tombstones), and its
   reaction events replay as the tombstone: no count outlives the post.
6. Toggles written in groups. Writers take turns, and a storm of toggles one commit
   each would be as slow as the database's commits. Toggles go through a group commit
   (commits.py), as new posts do: those that arrive while one write runs share the
   next transaction, and a post's toggles in one group make at most one event.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine, func
from sqlmodel import Session, col, select

from feed.commits import UNWRITTEN, GroupCommit
from feed.models import Channel, Event, EventKind, Post, Reaction, ReactionNews, ReactionWindow
from feed.storage import tallies
from feed.storage.engine import caller_loop, in_thread, now
from feed.storage.log import EventLog
from feed.storage.posts import _live_post
from feed.storage.refusals import StoreError, StoreUnavailable, Unstorable
from feed.values import PostView, ReactionChange, ReactionToggle, _feed_event, _post_view, _utc

# Toggles one event reports by name (3); a window with more counts the rest.
MAX_CHANGES = 100
# Names ``who_reacted`` lists for each reaction, at most.
MAX_LISTED = 1000


class Reactions(EventLog):
    """The store's reactions."""

    def __init__(self, engine: Engine, *, notify: bool = False) -> None:
        super().__init__(engine, notify=notify)
        self._pending_listeners: list[Callable[[float], object]] = []
        self._toggles: GroupCommit[Toggle, ReactionToggle] = GroupCommit(
            self._write_toggles,
            isolate=lambda exc: isinstance(exc, Unstorable),
            unwritten=lambda: StoreUnavailable(UNWRITTEN),
        )

    def on_pending(self, listener: Callable[[float], object]) -> None:
        """Call ``listener``, on the event loop of the toggle's caller, with the end of
        the window a committed toggle waits for (1)."""
        self._pending_listeners.append(listener)

    def _waits(self, due: float) -> None:
        loop = caller_loop()
        for listener in self._pending_listeners:
            if loop is None:
                listener(due)
            else:
                loop.call_soon_threadsafe(listener, due)

    async def toggle_reaction(
        self, post_id: int, name: str, reaction: str, reacted: bool, window: float
    ) -> ReactionToggle:
        """Give ``name``'s ``reaction`` to the post (``reacted``) or take it back; doing
        what is already so changes nothing. Written with the toggles waiting (6), and
        reported at once or when the post's window ends (1)."""
        return await self._toggles.submit(Toggle(post_id, name, reaction, reacted, window))

    @in_thread
    def _write_toggles(self, batch: Sequence[Toggle]) -> list[ReactionToggle | StoreError]:
        """Write a group of toggles in one transaction; each one's own outcome."""
        with self._write() as session:
            found: dict[int, tuple[Post, Channel] | StoreError] = {}
            changes: dict[int, list[ReactionChange]] = defaultdict(list)
            changed: list[bool] = []
            for toggle in batch:
                if toggle.post_id not in found:
                    try:
                        found[toggle.post_id] = _live_post(session, toggle.post_id)
                    except StoreError as exc:
                        found[toggle.post_id] = exc
                if isinstance(found[toggle.post_id], StoreError):
                    changed.append(False)
                    continue
                did = _toggle(session, toggle)
                changed.append(did)
                if did:
                    changes[toggle.post_id].append(
                        ReactionChange(toggle.name, toggle.reaction, toggle.reacted)
                    )
            reported: dict[int, tuple[int | None, float | None]] = {}
            for post_id, made in changes.items():
                row = found[post_id]
                assert not isinstance(row, StoreError)  # only live posts change
                reported[post_id] = self._report(session, *row, made, batch[0].window)
            views = _views(session, found)
            own = tallies.mine_of(session, [(t.name, t.post_id) for t in batch])
        answers: list[ReactionToggle | StoreError] = []
        for toggle, did in zip(batch, changed, strict=True):
            post = found[toggle.post_id]
            if isinstance(post, StoreError):
                answers.append(post)
                continue
            event_id, due = reported.get(toggle.post_id, (None, None))
            view = views[toggle.post_id]
            mine = own.get((toggle.name, toggle.post_id), ())
            answers.append(ReactionToggle(view, did, mine, event_id, due))
        for due in {due for _, due in reported.values() if due is not None}:
            self._waits(due)  # committed: the flusher may count on it
        return answers

    def _report(
        self,
        session: Session,
        post: Post,
        channel: Channel,
        made: Sequence[ReactionChange],
        window: float,
    ) -> tuple[int | None, float | None]:
        """Write the post's reaction event now, or leave the changes ``made`` pending
        (1): the event's id, or when its window ends."""
        assert post.id is not None
        at = now()
        span = timedelta(seconds=window)
        row = session.get(ReactionWindow, post.id)
        first = row is None
        if row is None:
            row = ReactionWindow(post_id=post.id, logged_at=at)
            session.add(row)
        changes, more = list(tallies.parse_changes(row.changes)), row.more
        for change in made:
            changes, more = _merged(changes, more, change)
        if not first and _ends(row.logged_at, span) > at:
            row.pending, row.changes, row.more = True, tallies.dump_changes(changes), more
            return None, _ends(row.logged_at, span).timestamp()
        row.logged_at, row.pending, row.changes, row.more = at, False, "[]", 0
        return self._log_reactions(session, post, channel, changes, more), None

    def _log_reactions(
        self,
        session: Session,
        post: Post,
        channel: Channel,
        changes: Sequence[ReactionChange],
        more: int,
    ) -> int:
        event = Event(
            kind=EventKind.POST_REACTIONS.value,
            channel_id=post.channel_id,
            post_id=post.id,
            created_at=now(),
        )
        session.add(event)
        session.flush()
        assert event.id is not None
        session.add(
            ReactionNews(event_id=event.id, changes=tallies.dump_changes(changes), more=more)
        )
        session.flush()
        self._noted(session, tallies.on_events(session, [_feed_event(event, post, channel)]))
        return event.id

    @in_thread
    def flush_reactions(self, window: float) -> float | None:
        """Write one event for each post whose pending toggles' window has ended (1, 4);
        when the next window of those still waiting ends (a POSIX time), if any."""
        span = timedelta(seconds=window)
        with self._read() as session:
            waiting = session.exec(
                select(ReactionWindow.logged_at).where(col(ReactionWindow.pending).is_(True))
            ).all()
        ends = [_ends(at, span) for at in waiting]
        if not ends:
            return None
        if min(ends) > now():
            return min(ends).timestamp()
        with self._write() as session:
            at = now()
            rows = session.exec(
                select(ReactionWindow, Post, Channel)
                .join(Post, col(Post.id) == col(ReactionWindow.post_id))
                .join(Channel, col(Channel.id) == col(Post.channel_id))
                .where(col(ReactionWindow.pending).is_(True))
                .order_by(col(ReactionWindow.post_id))
            ).all()
            later = []
            for row, post, channel in rows:
                end = _ends(row.logged_at, span)
                if end > at:
                    later.append(end)
                    continue
                changes, more = tallies.parse_changes(row.changes), row.more
                row.logged_at, row.pending, row.changes, row.more = at, False, "[]", 0
                if not post.deleted:
                    self._log_reactions(session, post, channel, changes, more)
        return min(later).timestamp() if later else None

    @in_thread
    def who_reacted(self, post_id: int) -> list[tuple[str, int, list[str]]]:
        """Each reaction to the post, in the order first made: how many, and who, in the
        order they reacted (at most ``MAX_LISTED`` names each)."""
        with self._read() as session:
            rows = session.exec(
                select(Reaction.reaction, Reaction.name)
                .where(Reaction.post_id == post_id)
                .order_by(col(Reaction.id))
            ).all()
        listed: dict[str, tuple[int, list[str]]] = {}
        for reaction, name in rows:
            count, names = listed.get(reaction, (0, []))
            if len(names) < MAX_LISTED:
                names.append(name)
            listed[reaction] = (count + 1, names)
        return [(reaction, count, names) for reaction, (count, names) in listed.items()]

    @in_thread
    def my_reactions(self, name: str | None, post_ids: Sequence[int]) -> dict[int, tuple[str, ...]]:
        """The reactions ``name`` has made to each of ``post_ids``."""
        with self._read() as session:
            return tallies.mine(session, name, post_ids)

    @in_thread
    def pending_reactions(self) -> int:
        """Posts whose toggles wait for their window to end."""
        with self._read() as session:
            query = select(func.count()).where(col(ReactionWindow.pending).is_(True))
            return session.exec(query.select_from(ReactionWindow)).one()


@dataclass(frozen=True, slots=True)
class Toggle:
    """A toggle waiting to be written in a group (6)."""

    post_id: int
    name: str
    reaction: str
    reacted: bool
    window: float


def _toggle(session: Session, toggle: Toggle) -> bool:
    """Make ``toggle`` so; whether that changed anything."""
    found = session.exec(
        select(Reaction).where(
            Reaction.post_id == toggle.post_id,
            Reaction.name == toggle.name,
            Reaction.reaction == toggle.reaction,
        )
    ).first()
    if (found is not None) == toggle.reacted:
        return False
    if found is not None:
        session.delete(found)
    else:
        session.add(
            Reaction(
                post_id=toggle.post_id, name=toggle.name, reaction=toggle.reaction, created_at=now()
            )
        )
    session.flush()
    return True


def _views(
    session: Session, found: dict[int, tuple[Post, Channel] | StoreError]
) -> dict[int, PostView]:
    """The posts toggled, with their reactions now."""
    live = [_post_view(post, channel.name) for post, channel in _live(found)]
    return {view.id: view for view in tallies.with_counts(session, live)}


def _live(found: dict[int, tuple[Post, Channel] | StoreError]) -> list[tuple[Post, Channel]]:
    return [row for row in found.values() if not isinstance(row, StoreError)]


def _merged(
    changes: Sequence[ReactionChange], more: int, change: ReactionChange
) -> tuple[list[ReactionChange], int]:
    """``changes`` with ``change`` last, as the one toggle of its person and reaction,
    and no more than ``MAX_CHANGES`` of them: the oldest beyond are counted (3)."""
    kept = [c for c in changes if (c.name, c.reaction) != (change.name, change.reaction)]
    kept.append(change)
    dropped = max(0, len(kept) - MAX_CHANGES)
    return kept[dropped:], more + dropped


def _ends(started: datetime, span: timedelta) -> datetime:
    """When a window that began at ``started`` ends (SQLite gives moments back naive)."""
    return (_utc(started) or started) + span
