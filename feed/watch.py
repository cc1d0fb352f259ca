"""The recheck of open streams against access as it is now.

Access is checked when a stream opens (access.py), but a stream may stay open for
days: a token revoked or a membership taken away later must still reach it. A
``Watch`` re-reads, every ``FEED_ACCESS_RECHECK`` seconds and at once when this
process changed access, the revocations and memberships behind the open streams,
then ends or narrows them (access.py, 5). Each process runs one for its own streams.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable

from feed import tasks
from feed.access import Access, Identity, Via, digest
from feed.events import Hub, Subscriber
from feed.presence import Presence
from feed.store import StoreUnavailable

# Kept under feed.access, as before watch.py existed, so log filters on it still match.
logger = logging.getLogger("feed.access")


class Watch:
    """Ends or narrows open streams whose access changed (access.py, 5)."""

    def __init__(self, access: Access, hub: Hub, presence: Presence, interval: float) -> None:
        self.access = access
        self.hub = hub
        self.presence = presence
        self.interval = interval
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="feed-access")

    async def close(self) -> None:
        await tasks.stop(self._task)
        self._task = None

    async def _run(self) -> None:
        while True:
            try:
                await self.recheck()
            except StoreUnavailable:
                pass  # the next round tries again; the relay already reports outages
            except Exception:
                logger.exception("could not recheck open streams' access")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.access.dirty.wait(), self.interval)
            self.access.dirty.clear()

    async def recheck(self) -> int:
        """Apply revocations and membership changes to open streams; returns how many
        streams it ended."""
        channels = await self.access.store.list_channels()
        self.access.changed_channels(channels)
        streams: dict[Identity, list[Subscriber]] = {}
        for sub in self.hub.subscribers():
            who = sub.who
            # Anonymous streams and admins by header have nothing that can be taken away.
            if isinstance(who, Identity) and (
                who.credential is not None
                or who.via is Via.SESSION
                or (who.signed_in and not who.is_admin)
            ):
                streams.setdefault(who, []).append(sub)
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
        for who, subs in streams.items():
            if who.credential in revoked:
                ended += _end(subs, f"{who.via.value} of {who.name!r} revoked")
                continue
            if who in ended_sessions:
                ended += _end(subs, f"{who.name!r} signed out")
                continue
            perms = everyone[who]
            private = perms.private_readable()
            for sub in subs:
                sub.private = private
                if sub.channels is not None and not all(perms.may_read(c) for c in sub.channels):
                    ended += _end([sub], f"{who.name!r} may no longer read a channel")
        return ended


def _end(subs: Iterable[Subscriber], why: str) -> int:
    count = 0
    for sub in subs:
        if not sub.closed:
            with contextlib.suppress(Exception):
                sub.close()
            count += 1
    if count:
        logger.info("ended %d stream(s): %s", count, why)
    return count
