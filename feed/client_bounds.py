"""How long the command line's client waits for an answer, and how much of one it
keeps: the limits are client.py's, the means of holding to them are here.

Rationale:

1. A read timeout bounds each read, not a request: a server that sends a byte every
   few seconds, of its headers or of its body, never trips it. ``within`` bounds the
   whole request instead, by making it in a thread the caller stops waiting for at the
   deadline. The thread is a daemon, left to its socket's own read timeout: the
   command ends at once, and nothing is held for long after.
2. An answer is read in chunks and refused (``TooLarge``) once it passes its limit,
   before it is all in memory: an endless answer would otherwise take every byte the
   machine has.
3. A stream is read the same way (``events``): httpx_sse keeps a line, and an event's
   lines, for as long as the server sends them without an end. Past the limit of one
   event, the stream is refused. The fields are read as the WHATWG rules say, as
   httpx_sse reads them: a block with only ``retry:`` in it is an event too (a
   "message"), and an event's id stays the last one given until another is.
"""

from __future__ import annotations

import codecs
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


class TooLarge(Exception):
    """An answer, or one event of a stream, longer than ``most`` bytes (2, 3)."""

    def __init__(self, most: int) -> None:
        super().__init__(f"more than {most} bytes")
        self.most = most

    @property
    def readable(self) -> str:
        """The limit, as people read it."""
        for unit, size in (("MiB", 1024 * 1024), ("KiB", 1024)):
            if self.most >= size and self.most % size == 0:
                return f"{self.most // size} {unit}"
        return f"{self.most} bytes"


class Late(Exception):
    """No whole answer within the deadline (1)."""


@dataclass(frozen=True, slots=True)
class Sent:
    """One event of a stream, with its fields as sent (the id as text)."""

    event: str
    data: str
    id: str
    retry: int | None


def within(seconds: float, work: Callable[[], T]) -> T:
    """What ``work()`` returns or raises, if it is done within ``seconds``; else
    ``Late`` (1)."""
    outcome: list[T] = []
    failed: list[BaseException] = []

    def run() -> None:
        try:
            outcome.append(work())
        except BaseException as exc:  # handed to the caller as it is
            failed.append(exc)

    worker = threading.Thread(target=run, name="feed-request", daemon=True)
    worker.start()
    worker.join(seconds)  # Ctrl-C interrupts the wait as it did the request
    if failed:
        raise failed[0]
    if not outcome:
        raise Late
    return outcome[0]


def capped(chunks: Iterable[bytes], most: int) -> bytes:
    """``chunks`` joined, or ``TooLarge`` once they pass ``most`` bytes (2)."""
    kept: list[bytes] = []
    size = 0
    for chunk in chunks:
        size += len(chunk)
        if size > most:
            raise TooLarge(most)
        kept.append(chunk)
    return b"".join(kept)


def events(chunks: Iterable[bytes], most: int) -> Iterator[Sent]:
    """Each event of a ``text/event-stream``; ``TooLarge`` once one takes more than
    ``most`` bytes, ended or not (3)."""
    fields = _Fields()
    for line in _lines(chunks, most):
        if line:
            fields.add(line)
            if fields.size > most:
                raise TooLarge(most)
        elif (sent := fields.dispatch()) is not None:
            yield sent


def _lines(chunks: Iterable[bytes], most: int) -> Iterator[str]:
    """The lines of ``chunks`` (ended by CR LF, LF or CR), none longer than ``most``."""
    decode = codecs.getincrementaldecoder("utf-8")(errors="replace").decode
    pending = ""
    for chunk in chunks:
        pending += decode(chunk)
        # A CR at the very end may be the first half of a CR LF: kept for the next chunk.
        cut = len(pending) - 1 if pending.endswith("\r") else len(pending)
        lines = pending[:cut].replace("\r\n", "\n").replace("\r", "\n").split("\n")
        pending = lines.pop() + pending[cut:]
        yield from lines
        if len(pending) > most:  # characters, each at least a byte
            raise TooLarge(most)


class _Fields:
    """The fields of the event being read, until a blank line ends it."""

    def __init__(self) -> None:
        self.event = ""
        self.data: list[str] = []
        self.id = ""
        self.retry: int | None = None
        self.size = 0  # characters of the event's lines so far

    def add(self, line: str) -> None:
        if line.startswith(":"):
            return  # a comment (a heartbeat, say)
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        self.size += len(line)
        if name == "event":
            self.event = value
        elif name == "data":
            self.data.append(value)
        elif name == "id" and "\0" not in value:
            self.id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            self.retry = int(value)

    def dispatch(self) -> Sent | None:
        if not (self.event or self.data or self.id or self.retry is not None):
            return None
        # An event without a name is a "message", as EventSource names it.
        sent = Sent(self.event or "message", "\n".join(self.data), self.id, self.retry)
        # The id is not reset: it stands until the stream gives another.
        self.event, self.data, self.retry, self.size = "", [], None, 0
        return sent
