"""The recheck of open streams against access as it is now.

Access is checked when a stream opens (access.py), but a stream may stay open for
days: a token revoked, a session signed out of or expired, or a membership taken away
later must still reach it. A ``Watch`` re-reads the revocations, sign-outs and
memberships behind the open streams, then ends or narrows them (access.py, on
rechecking streams): whenever any process announces a change of access, before the
relay delivers what was committed after it (``follow``), and every
``FEED_ACCESS_RECHECK`` seconds besides, for expiries and for changes nobody
announced. Each process runs one for its own streams.

Rationale:

1. Every long-lived response registers itself here while it lasts (``add`` and
   ``discard``, or ``watching``): ``/events`` streams, the admin page's stream, and any
   later one. The Watch knows of no endpoint, so a new kind of stream is rechecked by
   registering, never by a copy of these rules. A stream whose identity has nothing
   that can be taken away (anonymous, or an admin by the proxy's header, which the
   proxy vouches for on every request) is not kept at all: kiosks are most streams.
2. What the Watch needs of a stream is who opened it, whether it is closed, and a
   way to end it, saying why. Hub subscribers also follow their channel grants: a
   private channel taken away stops reaching them, and one that asked for it by
   name ends.
3. Told, not left to guess (sse.py, on messages that tell). A stream whose identity
   lost its access (a hub subscriber, the admin page's) gets ``ended`` before it
   ends, so a page reloads rather than reconnect as somebody else (a browser signed
   out in another tab has no session left to send). One whose private channels
   changed, and every stream that follows a channel made private or public and is
   no member of it (kiosks and anonymous pages included, which the Watch does not
   keep: the hub finds them, ``on_privacy``), gets ``resync``: its list gains or
   loses that channel's posts, which no event of the log brings, and a page
   re-fetches it.
4. One recheck at a time. The periodic one and one after a change may overlap, and
   the one that read first may finish last: applied last, its older grants would
   give a stream back a channel just taken away. So a recheck waits for the one
   running, and every recheck asked for while one waits is served by the next one
   to begin, which reads after all of them were asked for, if it succeeds; if it
   fails, each tries again itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Protocol

from feed import tasks
from feed.access import Access
from feed.identity import Identity, Via, digest
from feed.permissions import Permissions
from feed.sse import resync_frame
from feed.store import StoreUnavailable
from feed.subscribers import Subscriber, item
from feed.values import AccessChange, Commit

logger = logging.getLogger("feed.watch")

# Told of channels made private or public: those, every private channel now, and the
# kept streams that are members of some of them, with which (3).
PrivacyListener = Callable[
    [frozenset[str], frozenset[str], Mapping[Subscriber, frozenset[str]]], None
]


class Watched(Protocol):
    """A long-lived response, as the Watch sees it (rationale 2)."""

    @property
    def who(self) -> object: ...

    @property
    def closed(self) -> bool: ...

    def end(self, why: str) -> None:
        """End it, telling its reader ``why`` first (3)."""


def may_lose_access(who: object) -> bool:
    """Whether anything behind ``who`` can be revoked, signed out of or expire."""
    return isinstance(who, Identity) and (
        who.credential is not None or who.via is Via.SESSION or (who.signed_in and not who.is_admin)
    )


class Watch:
    """Ends or narrows open streams whose access changed (access.py, on rechecking
    streams)."""

    def __init__(self, access: Access, interval: float) -> None:
        self.access = access
        self.interval = interval
        self._streams: set[Watched] = set()
        self._task: asyncio.Task[None] | None = None
        self._on_privacy: list[PrivacyListener] = []
        # The private channels at the last recheck, and all of them (3).
        self._private: frozenset[str] | None = None
        self._known: frozenset[str] | None = None
        # One recheck at a time (4): how many were asked for, how many of those the
        # last one to begin covers, and how many wait for the one running.
        self._turn = asyncio.Lock()
        self._asked = 0
        self._covered = 0
        self.waiting = 0

    def on_privacy(self, listener: PrivacyListener) -> None:
        """Call ``listener`` with the channels made private or public, every private
        channel now, and the kept streams that are members of some of them (3)."""
        self._on_privacy.append(listener)

    def add(self, stream: Watched) -> None:
        """Recheck ``stream`` from now on, if anything can be taken away from it (1)."""
        if may_lose_access(stream.who):
            self._streams.add(stream)

    def discard(self, stream: Watched) -> None:
        self._streams.discard(stream)

    @contextlib.contextmanager
    def watching(self, stream: Watched) -> Iterator[None]:
        """``add`` for as long as the block lasts."""
        self.add(stream)
        try:
            yield
        finally:
            self.discard(stream)

    def __len__(self) -> int:
        return len(self._streams)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="feed-access")

    async def close(self) -> None:
        await tasks.stop(self._task)
        self._task = None

    def committed(self, commit: Commit) -> None:
        """What this process just committed (``Store.on_commit``): a change of access
        holds from its next request on, before its writer is answered."""
        if commit.access:
            self.access.changed(commit.access)

    async def follow(self, change: AccessChange) -> None:
        """A change of access, made here or elsewhere (``Relay.on_access``): the open
        streams follow it before any later event reaches them."""
        self.access.changed(change)
        await self.recheck()

    async def _run(self) -> None:
        while True:
            try:
                await self.recheck()
            except StoreUnavailable:
                pass  # the next round tries again; the relay already reports outages
            except Exception:
                logger.exception("could not recheck open streams' access")
            await asyncio.sleep(self.interval)

    async def recheck(self) -> int:
        """Apply revocations, sign-outs, expiries and membership changes to open
        streams; returns how many streams it ended (none, when a recheck that began
        after this one was asked for did the work)."""
        self._asked += 1
        asked = self._asked
        self.waiting += 1
        try:
            await self._turn.acquire()
        finally:
            self.waiting -= 1
        try:
            if self._covered >= asked:
                return 0
            # Those asked for so far are covered once this one is done, not before: a
            # recheck that fails leaves them to the next one (4).
            began = self._asked
            ended = await self._recheck_now()
            self._covered = began
            return ended
        finally:
            self._turn.release()

    async def _recheck_now(self) -> int:
        names = frozenset(await self.access.channels(fresh=True))
        private_now = self.access.private_channels()
        # Against what this Watch saw last, not the access caches, which other reads
        # and the log's channel events keep fresh too (3). A channel made since was
        # never shown to anyone: made private, it hid nothing.
        before = private_now if self._private is None else self._private
        known = names if self._known is None else self._known
        flipped = (before ^ private_now) & known
        self._private, self._known = private_now, names
        members: dict[Subscriber, frozenset[str]] = {}
        try:
            return await self._recheck(before, flipped, members)
        finally:
            # A member reads the channel either way: it is no outsider (3).
            if flipped:
                for listener in self._on_privacy:
                    listener(flipped, private_now, members)

    async def _recheck(
        self,
        before: frozenset[str],
        flipped: frozenset[str],
        members: dict[Subscriber, frozenset[str]],
    ) -> int:
        streams: dict[Identity, list[Watched]] = {}
        for stream in self._streams:
            who = stream.who
            assert isinstance(who, Identity)
            streams.setdefault(who, []).append(stream)
        if not streams:
            return 0
        ids = sorted({w.credential for w in streams if w.credential is not None})
        revoked = await self.access.store.revoked_tokens(ids)
        sessions = {digest(w.csrf): w for w in streams if w.via is Via.SESSION and w.csrf}
        signed_out = await self.access.store.ended_sessions(sorted(sessions))
        # Before the streams end, so that their reconnects are refused.
        self.access.forget(revoked)
        self.access.forget_sessions(signed_out)
        ended_sessions = {sessions[kept] for kept in signed_out}
        ended = 0
        everyone = await self.access.permissions_of(streams, fresh=True)
        now = time.time()
        for who, subs in streams.items():
            if who.credential in revoked:
                ended += _end(subs, f"{who.via.value} of {who.name!r} revoked")
            elif who in ended_sessions:
                ended += _end(subs, f"{who.name!r} signed out")
            elif who.expires_at is not None and who.expires_at <= now:
                ended += _end(subs, f"the session of {who.name!r} expired")
            else:
                ended += _narrow(subs, everyone[who], before, flipped, members)
        return ended


def _narrow(
    streams: Iterable[Watched],
    perms: Permissions,
    before: frozenset[str],
    flipped: frozenset[str],
    members: dict[Subscriber, frozenset[str]],
) -> int:
    """Hub subscribers follow their grants: private channels taken away stop reaching
    them, and one that asked for such a channel by name ends (2). One whose
    memberships changed is told to re-fetch (3); a channel made private or public that
    it may read either way changes nothing it shows."""
    private = perms.private_readable()
    ended = 0
    for sub in streams:
        if not isinstance(sub, Subscriber):
            continue
        was = frozenset() if sub.private is None else sub.private
        now = frozenset() if private is None else private
        # Made private or public since the last recheck, as this one's channels show
        # it or as the map of these permissions, read a moment later, does.
        moved = flipped | {
            name
            for name in was ^ now
            if name in perms.channels and perms.channels[name].private != (name in before)
        }
        changed = sub.private is not None and bool((was ^ now) - moved)
        if moved & (was | now):
            members[sub] = moved & (was | now)
        sub.private = private
        if sub.channels is not None and not all(perms.may_read(c) for c in sub.channels):
            ended += _end([sub], f"{perms.identity.name!r} may no longer read a channel")
        elif changed:
            reason = f"the private channels {perms.identity.name!r} may read changed"
            sub.offer(item(None, resync_frame(sub.format, None, reason)))  # (3)
    return ended


def _end(streams: Iterable[Watched], why: str) -> int:
    count = 0
    for stream in streams:
        if not stream.closed:
            with contextlib.suppress(Exception):
                stream.end(why)
            count += 1
    if count:
        logger.info("ended %d stream(s): %s", count, why)
    return count
