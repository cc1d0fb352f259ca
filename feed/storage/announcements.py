"""The commit announcement: what each write transaction committed, handed to the
store's listeners (the relay, the broker, the access caches, the metrics) in commit
order, and the note that spares a process reading back its own commits.

Rationale:

1. The commit announcement. Every write transaction goes through one write context
   (log.py, ``_write`` and its kin), which notes what the transaction changed: the
   events it appended, each with its post or channel as the transaction left it
   (log.py, on the current state), and what it changed of access. Once the
   transaction has committed, and while its writer still holds the write lock, the
   store hands that ``Commit`` to its listeners (``listen``) on the event loop of the
   caller. The lock makes the order of announcements the order of commits. Store
   methods run in worker threads, and their caller resumes through the same loop
   queue, after the announcement: whatever a client asks next of this process
   already reflects its own write. No caller announces a change itself, so a new kind
   of change reaches every screen with no call site to forget.
2. Our own hints, heard first. With the PostgreSQL broker a process also hears the
   NOTIFY of its own commits, often before its writer has announced them: the
   listening connection is told as soon as the writing one. Acted on, such a hint
   would send the relay to read back what the announcement delivers a moment later.
   So before it commits, the writer notes the newest event of the commit
   (``committing``), and a hint up to it needs no read (``brings``): its event is in
   this commit or committed before this commit took the lock (log.py, on one writer
   at a time), and the announcement either delivers it or wakes the relay to read it
   (relay.py). A commit that fails puts the note back as it was, and announces a
   commit of nothing that ends where the log ended when it took the lock: a hint held
   back meanwhile (another process's event, committed before the lock) is then read,
   not left for the next poll.
3. Where it is told. A write in a worker thread announces on its caller's loop
   (``call_soon_threadsafe``); a write on the loop itself (log.py, on the write on
   the loop) queues its announcement there too (``call_soon``), rather than telling
   at once, so that a commit a thread made just before, whose announcement the loop
   has not run yet, is still told first.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from feed.storage.engine import caller_loop
from feed.values import Commit, FeedEvent

logger = logging.getLogger("feed.store")


class Announcer:
    """A store's listeners, and the newest event its commits have announced or are
    about to (2)."""

    def __init__(self) -> None:
        self._listeners: list[Callable[[Commit], object]] = []
        self._announced = 0

    def listen(self, listener: Callable[[Commit], object]) -> None:
        """Call ``listener`` with each commit, in commit order (1)."""
        self._listeners.append(listener)

    def brings(self, event_id: int) -> bool:
        """Whether the announcements bring ``event_id``, or a reason to read it (2)."""
        return event_id <= self._announced

    @contextmanager
    def committing(self, end: int, written: list[FeedEvent]) -> Iterator[None]:
        """Around a commit of ``written``, in a log that ended at ``end`` when its
        writer took the lock: note first the newest event it is to announce, and take
        the note back if it fails (2)."""
        before = self._announced
        if written:
            self._announced = written[-1].id
        try:
            yield
        except BaseException:
            self._announced = before  # nothing of it will be announced
            if written:
                # A hint held back for this commit is owed a read (2).
                self.announce(Commit(end, []))
            raise

    def announce(self, commit: Commit) -> None:
        """Tell the listeners of ``commit`` on the loop of the write's caller (1, 3)."""
        loop = caller_loop()
        if loop is not None:
            loop.call_soon_threadsafe(self._tell, commit)
            return
        try:
            asyncio.get_running_loop().call_soon(self._tell, commit)  # (3)
        except RuntimeError:  # called outside any event loop: nobody awaits an answer
            self._tell(commit)

    def _tell(self, commit: Commit) -> None:
        for listener in self._listeners:
            try:
                listener(commit)
            except Exception:  # committed: a listener's bug must not say otherwise
                logger.exception("a commit listener failed")
