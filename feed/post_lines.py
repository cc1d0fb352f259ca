"""The lines ``feed post --ndjson`` reads, as the items of batches (batch_sender.py
sends them), and the account of which lines a run has posted.

Rationale:

1. ``feed post --ndjson`` sends its lines in batches of at most ``MAX_BATCH_ITEMS``
   posts and ``BATCH_BYTES`` bytes, well under the server's batch limit with the
   default body limit, so a long input is many requests; a server whose limit is
   lower refuses a batch with 413, and it is split and the batches made smaller
   (batch_sender.py).
   Each item's answer is the server's, except for a line the server would refuse on
   its own, which is answered here as the server would answer it, without a request:
   a JSON object the server's parser refuses (a number that is not finite, a key
   named twice, nesting too deep: sent in an array, it would sink every line of its
   batch), a line that is not UTF-8, said so with the byte (standard_input.py), and a
   line larger than ``BATCH_BYTES`` on its own, which no batch may carry (413). The
   rest is left to the server to judge, item by item.
2. A line is a post of its text unless it is a JSON object: one that does not begin
   with ``{``, or does but is not JSON at all (``{braces} in a log line``), is text.
   What is JSON is an item as the batch API takes it, and refused with the reason if
   it is a bad one (1), rather than posted as text the writer did not mean as such.
3. A live pipe (``tail -f build.log``) is posted as it comes: a batch is sent when it
   is full, or once its first line has waited ``LINE_WAIT`` for more. A fifth of a
   second is too short to notice in a log that is watched and long enough for a
   producer of more than 5,000 lines a second to fill whole batches; and while a batch
   is being sent the next one's lines are read ahead (standard_input.py), so a fast
   producer's batches are whole whatever the server's pace. Counting from the first
   line, not from the last, a steady trickle is sent too, not only a pause.
4. Each item carries an ``idempotency_key`` made of the run's id and the line's
   number (unless the line gave its own), so a batch sent again after its answer was
   lost is written once (batch.py, on keys); the run's id is random, so another run
   of the same input posts it again, as asked.
5. ``Account`` says, when a run stops early, which lines were answered (each
   reported, also those past a line still unanswered), which were sent without an
   answer (written or not: nobody can tell), and which were not posted: not sent, or
   refused whole (a 401, a batch refused for the rate) and never sent before without
   an answer. Lines not posted up to the end are said as one span, from the first of
   them on, so the user knows what to send again (``tail -n +N``).
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from feed.errors import ClientError
from feed.inputs import loads
from feed.limits import MAX_BATCH_ITEMS
from feed.standard_input import LineReader, Mark, RawLine, not_utf8

BATCH_BYTES = 1024 * 1024  # a quarter of the server's batch limit by default (1)
LINE_WAIT = 0.2  # seconds a line waits for others before its batch is sent (3)


@dataclass(frozen=True, slots=True)
class Line:
    """One line of ``feed post --ndjson``: its number, and the item to send, or the
    result it already has (1)."""

    number: int
    item: dict[str, Any]
    result: dict[str, Any] | None = None


def new_run() -> str:
    """A run's id, the first part of its items' keys (4)."""
    return f"ndjson-{secrets.token_hex(8)}"


def line_item(raw: RawLine, channel: str, run: str) -> Line | None:
    """The post of one line: a JSON object as it is (with ``channel`` if it names no
    place), any other line a post of its text to ``channel`` (2); None for a blank
    line."""
    number = raw.number
    if raw.cut:
        return _refused(number, f"longer than a batch's {BATCH_BYTES} bytes", 413)
    wrong = not_utf8(raw.data)
    if wrong is not None:
        return _refused(number, wrong)
    line = raw.data.decode("utf-8")
    if not line.strip():
        return None
    key = {"idempotency_key": f"{run}-{number}"}  # (4)
    if not line.lstrip().startswith("{"):
        return Line(number, {"channel": channel, "body": line} | key)
    try:
        item = loads(raw.data)
    except ClientError as exc:
        if not _json(line):
            return Line(number, {"channel": channel, "body": line} | key)
        said = f"{exc.message} ({exc.detail})" if isinstance(exc.detail, str) else exc.message
        return _refused(number, said, exc.status)
    if "channel" in item or "parent" in item:
        return Line(number, key | item)
    return Line(number, {"channel": channel} | key | item)


def _json(line: str) -> bool:
    """Whether ``line`` is JSON, if read without the server's refusals (2)."""
    try:
        json.loads(line)
    except json.JSONDecodeError:
        return False
    except (ValueError, RecursionError):  # a number too long, nesting too deep
        return True
    return True


def _refused(number: int, error: str, status: int = 400) -> Line:
    return Line(number, {}, {"status": status, "error": error, "detail": None})


def batches(
    source: LineReader, channel: str, run: str, budget: Callable[[], int] = lambda: BATCH_BYTES
) -> Iterator[list[Line]]:
    """The lines of ``source`` in batches the server takes whole (1), of at most
    ``budget()`` bytes (a line larger alone in its batch), each sent when full or when
    its first line has waited ``LINE_WAIT`` (3)."""
    batch: list[Line] = []
    size, due = 2, 0.0
    while True:  # as many times as there are lines: the input's end ends it
        got = source.next(max(due - time.monotonic(), 0.0) if batch else None)
        if got is Mark.END:
            break
        if got is Mark.QUIET:
            yield batch
            batch, size = [], 2
            continue
        line = line_item(got, channel, run)
        if line is None:
            continue
        cost = len(json.dumps(line.item)) + 1
        if cost > BATCH_BYTES:  # alone it would still be too large: refused alone (1)
            line = _refused(line.number, f"longer than a batch's {BATCH_BYTES} bytes", 413)
            cost = 3
        if batch and size + cost > budget():
            yield batch
            batch, size = [], 2
        if not batch:
            due = time.monotonic() + LINE_WAIT
        batch.append(line)
        size += cost
        if len(batch) == MAX_BATCH_ITEMS:
            yield batch
            batch, size = [], 2
    if batch:
        yield batch


# What became of a line, as the account of a run that stops says it (5).
ANSWERED = "posted or refused, as reported above"
UNCONFIRMED = "sent but not confirmed (each may or may not have been posted)"
NOT_POSTED = "not posted"


@dataclass
class Account:
    """Which lines of a run were answered, which may have been written without an
    answer, and which were not posted (5): every line before the batch being sent was
    answered; that batch's lines each have their result, or were sent in a request
    whose answer never came (``lost``) or has not come yet (``in_flight``), or neither
    (not posted: not sent yet, or refused whole)."""

    done: int = 0  # the last line of the batches before this one, all answered
    batch: list[Line] = field(default_factory=list)  # the batch being sent
    results: dict[int, dict[str, Any]] = field(default_factory=dict)  # of its lines
    lost: set[int] = field(default_factory=set)  # its lines sent without an answer
    in_flight: list[Line] = field(default_factory=list)  # its lines awaiting one now
    reported: int = 0  # how many of its lines have been reported, in order

    def begin(self, batch: list[Line]) -> None:
        """Start the account of ``batch``, with the results its lines already have."""
        if self.batch:
            self.done = self.batch[-1].number
        self.batch, self.lost, self.in_flight, self.reported = batch, set(), [], 0
        self.results = {line.number: line.result for line in batch if line.result is not None}

    def unanswered(self) -> list[Line]:
        """The batch's lines that have no result yet, in order."""
        return [line for line in self.batch if line.number not in self.results]

    def answer(self, line: Line, result: dict[str, Any]) -> None:
        self.results[line.number] = result
        self.lost.discard(line.number)

    def to_report(self, everything: bool = False) -> list[tuple[Line, dict[str, Any]]]:
        """The results not reported yet, in order: those up to the first line without
        one, or, for a run that stops, all of them (5). They count as reported."""
        found: list[tuple[Line, dict[str, Any]]] = []
        for line in self.batch[self.reported :]:
            result = self.results.get(line.number)
            if result is None and not everything:
                break
            if result is not None:
                found.append((line, result))
            self.reported += 1
        return found

    def summary(self) -> str:
        """What became of the lines, in a sentence, for a run that stops here (5)."""
        spans: list[tuple[str, int, int]] = [(ANSWERED, 1, self.done)] if self.done else []
        maybe = self.lost | {line.number for line in self.in_flight}
        for line in self.batch:
            number = line.number
            what = (
                ANSWERED
                if number in self.results
                else UNCONFIRMED
                if number in maybe
                else NOT_POSTED
            )
            if spans and spans[-1][0] == what:
                spans[-1] = (what, spans[-1][1], number)
            else:
                spans.append((what, number, number))
        rest = (self.batch[-1].number if self.batch else self.done) + 1
        if spans and spans[-1][0] == NOT_POSTED:
            rest = spans.pop()[1]  # the lines not posted up to the end: all one span
        if not spans:
            return "no line was posted"
        said = [f"{_lines(first, last)} {what}" for what, first, last in spans]
        return "; ".join([*said, f"lines from {rest} on were not posted"])


def _lines(first: int, last: int) -> str:
    return f"line {first} was" if first == last else f"lines {first} to {last} were"
