"""Standard input as ``feed post`` reads it: whole, as text, or line by line with a
deadline, for ``feed post --ndjson`` fed by a live pipe (``tail -f build.log``).

Rationale:

1. Text is UTF-8, and input that is not is said to be so, naming where: Python would
   carry the bytes on as lone surrogates, and the refusal would then speak of those,
   which the user never wrote.
2. A thread reads the lines and the command waits for the next one with a deadline, so
   a batch can be sent while the pipe stays open (post_lines.py). ``select`` would do
   for a pipe or a terminal, but a regular file is always "ready" and then blocks in
   the read all the same; a thread reading the descriptor works for all three. It
   reads with ``os.read``, not through ``sys.stdin``'s buffered reader: a daemon thread
   blocked inside that reader holds its lock, and Python's shutdown, which flushes the
   standard streams, would abort on it. Waiting on a condition, the command still
   hears Ctrl-C.
3. Bounded: the thread stops reading while ``MAX_QUEUED_LINES`` lines or
   ``MAX_QUEUED_BYTES`` bytes wait to be taken, and keeps at most ``max_line`` bytes
   of a line; a longer one is marked ``cut``, its refusal is the command's, and a line
   of gigabytes costs no more memory than one at the limit.
4. A line ends at a line feed, as the server reads NDJSON (batch_input.py), and
   exactly one ending is taken off, ``\\n`` or ``\\r\\n``: a bare carriage return,
   or one before a CRLF's, is part of its line.
5. Read whole, it is read up to a limit and no further (``at_most``): a post longer
   than any request the server takes is refused here, having cost no more memory than
   the limit, however much more (``yes |``) was on its way.
"""

from __future__ import annotations

import enum
import os
import threading
from collections import deque
from dataclasses import dataclass
from typing import BinaryIO

from feed.limits import MAX_BATCH_ITEMS

CHUNK = 64 * 1024  # what one read asks for
MAX_QUEUED_LINES = MAX_BATCH_ITEMS  # a batch's worth read ahead while one is sent (3)
MAX_QUEUED_BYTES = 2 * 1024 * 1024  # twice a batch (post_lines.BATCH_BYTES) (3)


class NotUTF8(ValueError):
    """Input that is not UTF-8 text, and where (1)."""


def utf8_text(data: bytes, what: str) -> str:
    """``data`` as text; NotUTF8, naming the line and byte, if it is not UTF-8 (1)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise NotUTF8(
            f"{what} is not valid UTF-8: byte 0x{data[exc.start]:02x} at line {line}, byte {column}"
        ) from None


class TooLong(ValueError):
    """Input longer than the limit it was read with (5)."""


def at_most(stream: BinaryIO, limit: int) -> bytes:
    """All of ``stream``, if it holds no more than ``limit`` bytes; TooLong if it holds
    more, having read one byte past the limit and no more (5)."""
    data = stream.read(limit + 1)
    if len(data) > limit:
        raise TooLong(limit)
    return data


def not_utf8(data: bytes) -> str | None:
    """Why one line is not UTF-8, as the batch API says it (batch_input.py), with the
    byte; None if it is."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return (
            f"This line is not valid UTF-8 (byte 0x{data[exc.start]:02x} at byte {exc.start + 1})."
        )
    return None


@dataclass(frozen=True, slots=True)
class RawLine:
    """One line as read: its number (from 1), its bytes without its ending (4), and
    whether it was ``cut`` at the reader's limit (3)."""

    number: int
    data: bytes
    cut: bool = False


class Mark(enum.Enum):
    """What ``LineReader.next`` says when it has no line to give."""

    QUIET = "no line came within the time given"
    END = "the input has ended"


class LineReader:
    """The lines of a file descriptor, read ahead by a thread (2, 3)."""

    def __init__(self, fd: int, max_line: int) -> None:
        self._fd, self._max_line = fd, max_line
        self._queue: deque[RawLine] = deque()
        self._queued_bytes = 0
        self._ended = False
        self._changed = threading.Condition()
        threading.Thread(target=self._read, name="standard input", daemon=True).start()

    def next(self, timeout: float | None) -> RawLine | Mark:
        """The next line; ``Mark.QUIET`` if none came within ``timeout`` seconds
        (None: wait for as long as it takes), ``Mark.END`` once the input has ended."""
        with self._changed:
            if not self._changed.wait_for(lambda: self._queue or self._ended, timeout):
                return Mark.QUIET
            if not self._queue:
                return Mark.END
            line = self._queue.popleft()
            self._queued_bytes -= len(line.data)
            self._changed.notify_all()
            return line

    def _put(self, line: RawLine) -> None:
        with self._changed:
            # A line is always taken into an empty queue, however long (3).
            self._changed.wait_for(
                lambda: (
                    not self._queue
                    or (
                        len(self._queue) < MAX_QUEUED_LINES
                        and self._queued_bytes + len(line.data) <= MAX_QUEUED_BYTES
                    )
                )
            )
            self._queue.append(line)
            self._queued_bytes += len(line.data)
            self._changed.notify_all()

    def _read(self) -> None:
        number, pending, cut = 0, bytearray(), False
        try:
            while chunk := os.read(self._fd, CHUNK):
                start = 0
                while (end := chunk.find(b"\n", start)) >= 0:
                    number += 1
                    pending, cut = self._keep(pending, cut, chunk[start:end])
                    data = bytes(pending)
                    if data.endswith(b"\r") and not cut:
                        data = data[:-1]  # a CRLF's CR, and only that one (4)
                    self._put(RawLine(number, data, cut))
                    pending, cut, start = bytearray(), False, end + 1
                pending, cut = self._keep(pending, cut, chunk[start:])
        except OSError:
            pass  # standard input closed or unreadable: there is no more of it
        if pending or cut:
            self._put(RawLine(number + 1, bytes(pending), cut))  # the last, unended line
        with self._changed:
            self._ended = True
            self._changed.notify_all()

    def _keep(self, pending: bytearray, cut: bool, more: bytes) -> tuple[bytearray, bool]:
        """``pending`` and ``more``, up to ``max_line`` bytes, and whether any were cut."""
        room = self._max_line - len(pending)
        if len(more) > room:
            more, cut = more[: max(room, 0)], True
        pending += more
        return pending, cut
