"""The newest event this process saw committed, and the skip of event ids past it when
the log is found to have gone back (log.py, on ids never reused)."""

from __future__ import annotations

import logging
import threading
import time

from sqlalchemy import text
from sqlmodel import Session

from feed.storage import postgres, sqlite
from feed.storage.sqlite import PlainWrite

logger = logging.getLogger("feed.store")


class HighWater:
    """The newest event this process saw committed, written or read, and how many
    times a write found the log ended before it."""

    def __init__(self) -> None:
        self._value = 0
        self._lock = threading.Lock()
        # Times a write found the log gone back and skipped ids: the relay ends the
        # streams that hold what is lost (relay.py).
        self.rollbacks = 0

    @property
    def value(self) -> int:
        return self._value

    def saw(self, event_id: int) -> None:
        """Note that ``event_id`` is committed and may be on screens."""
        with self._lock:
            self._value = max(self._value, event_id)

    def gone_back(self, end: int) -> bool:
        """Whether the log, found to end at ``end``, went back."""
        if end >= self._value:
            return False
        logger.error(
            "the event log ends at %d, before event %d that was committed: the "
            "database was restored or rolled back. New events skip past it.",
            end,
            self._value,
        )
        return True

    def went_back(self, end: int) -> None:
        """The skip of event ids is committed: the log ends at ``end`` now."""
        with self._lock:
            self._value = end
            self.rollbacks += 1


def skip_event_ids(write: Session | PlainWrite, on_postgres: bool) -> None:
    """Put the next event id at least at the time in microseconds, never lower."""
    floor = {"floor": time.time_ns() // 1000}
    if isinstance(write, PlainWrite):
        write.cursor.execute(sqlite.SKIP_EVENT_IDS, floor)
        write.cursor.execute(sqlite.START_EVENT_IDS, floor)
    elif on_postgres:
        write.connection().exec_driver_sql(postgres.SKIP_EVENT_IDS, floor)
    else:
        write.execute(text(sqlite.SKIP_EVENT_IDS), floor)
        write.execute(text(sqlite.START_EVENT_IDS), floor)
