"""What a search asks and answers, beside its words (the language: search.py): the
filters that narrow it, the cursor of its next page, and a page of results."""

from __future__ import annotations

import math
import re
import struct
from dataclasses import dataclass
from datetime import datetime

from feed.limits import MAX_POST_ID
from feed.search import QueryError
from feed.values import PostView


@dataclass(frozen=True, slots=True)
class Filters:
    """What narrows a search besides its words; None: not narrowed by it."""

    channels: tuple[str, ...] | None = None
    author: str | None = None
    after: datetime | None = None
    before: datetime | None = None
    pinned: bool | None = None
    replies: bool | None = None  # False: top-level posts only


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where the next page starts (storage/search.py, on cursors): in the
    window of matches from post id ``bottom`` up to ``top``, after the result
    ``after`` (its id and score), the window's scores weighed by ``scale``.

    ``top`` None: the newest window; ``bottom`` None: a window not read yet, made of
    the newest ``WINDOW`` matches at or below ``top`` (``after`` is then None too)."""

    top: int | None = None
    bottom: int | None = None
    after: tuple[int, float] | None = None
    scale: float = 0.0

    @property
    def text(self) -> str:
        if self.bottom is None or self.after is None:
            return f"{self.top}"
        post_id, score = self.after
        return f"{self.top}.{self.bottom}.{post_id}.{_hex(score)}.{_hex(self.scale)}"

    @classmethod
    def parse(cls, text: str | None) -> Cursor:
        if not text:
            return cls()
        parts = text.split(".")
        ids = parts[:1] if len(parts) == 1 else parts[:3]
        numbers = parts[3:]
        if (
            len(parts) not in (1, 5)
            or not all(n.isascii() and n.isdigit() and len(n) <= 19 for n in ids)
            or not all(_HEX.fullmatch(n) for n in numbers)
        ):
            raise QueryError(_NOT_A_CURSOR)
        if any(int(n) > MAX_POST_ID for n in ids):
            raise QueryError(_NOT_A_CURSOR)  # no post has such an id
        if len(parts) == 1:
            return cls(int(ids[0]))
        top, bottom, post_id = (int(n) for n in ids)
        score, scale = (struct.unpack(">d", bytes.fromhex(n))[0] for n in numbers)
        if bottom > top or not (math.isfinite(score) and math.isfinite(scale)):
            raise QueryError(_NOT_A_CURSOR)
        return cls(top, bottom, (post_id, score), scale)


_NOT_A_CURSOR = "The cursor is not one a search gave; start from the first page."
# A score in a cursor: its eight bytes, so that it reads back exactly.
_HEX = re.compile(r"[0-9a-f]{16}")


def _hex(number: float) -> str:
    return struct.pack(">d", number).hex()


@dataclass(frozen=True, slots=True)
class Hit:
    """One result: the post as it is now, and a safe HTML snippet of it (5)."""

    post: PostView
    snippet: str


@dataclass(frozen=True, slots=True)
class Results:
    """A page of results, best first, the cursor of the next page (None: no more), and
    the event id the log ended at when they were read (storage/log.py, on one
    snapshot): a page of them streams on from there."""

    hits: list[Hit]
    next: Cursor | None
    last_event_id: int = 0
