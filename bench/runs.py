"""Counting a subscriber's events as runs of ids: the load client's cheap way to prove
that every post reached it, in order, once, at hundreds of thousands of events a second.

A subscriber's stream is checked one read at a time, up to the read's last complete
event. Most subscribers do a constant amount of Python per read, whatever it holds; one
subscriber per load-client process, the witness, reads every event. Together they prove
what reading every event at every subscriber would.

Rationale:

1. An event id is a counter, optionally after a time that resets it: feed's ids are
   integers that go up by one per event (the bench's posts are the only events), and
   Nchan's are ``time:tag``, the tag counting from 0 within each second. The event
   after ``a`` is ``a`` with its counter one up, or (Nchan) a later time with the
   counter at 0 (``follows``).
2. A read's events form a run when its first id follows the previous read's last, and
   its last id has the first's prefix and a counter ``n - 1`` more, ``n`` being the
   events in the read (each has one ``data:`` line: ``bytes.count`` in C). That is a
   constant amount of Python per read: a lost or an extra event changes the count or
   the ends, and so does an event out of place across reads. A read that is not a
   run (Nchan's second changed, or something is wrong) is read event by event, and
   any id that does not follow is ``broken``.
3. What a run cannot see, events swapped within one read, or one doubled and one
   lost in the same read, the witness does: it reads every event, checks that its id
   follows the last and that the post number in its body is one it has not seen,
   and at the end that it has seen every post. The server sends every subscriber the
   same events in the same order (it encodes each once), so the witness's order is
   theirs. Every other subscriber of the process must end on the witness's last id
   with as many events, and the parent compares the processes' witnesses (``run``).
4. Latency is sampled, not taken per pair: the first event of each read, weighted by
   the read's events. The first was sent no later than the others of its read (a
   batch's markers are taken in order; single posts are committed about in the order
   they were sent), so the figure leans high, never low. The witness times every
   event. Samples are kept as counts per latency rounded to three significant digits:
   a few thousand numbers, however many pairs.
5. What is counted is the first event's ``event:`` line with the ``data:`` line after
   it, when it has one (feed's ``\\nevent: post-created\\ndata: ``), else ``\\ndata: ``
   (Nchan): ``bytes.count`` skips ahead by the length of what it looks for, so the
   longer one costs less than half as much a read. An event of another type is then
   not counted, its id is still in the run, and the run breaks (2).
"""

from __future__ import annotations

import collections
import re

# One per event that has data: heartbeats, comments and an id-only position have none.
DATA = b"\ndata: "
ID = b"\nid:"
FRAME_ID = re.compile(rb"(?:^|\n)id: ?([^\r\n]*)")
MARKER = re.compile(rb"bench post (\d+) at (\d+);")
# An incomplete event longer than this means the stream is not SSE: give up on it.
MAX_PENDING = 1 << 20

EventId = tuple[int, ...]


def event_id(raw: bytes) -> EventId | None:
    """``12`` or ``1700000000:3`` as numbers (1); None if it is neither."""
    try:
        return tuple(int(part) for part in raw.strip().split(b":"))
    except ValueError:
        return None


def follows(before: EventId | None, after: EventId) -> bool:
    """Whether ``after`` is the event right after ``before`` (1); anything follows None."""
    if before is None:
        return True
    if len(after) != len(before):
        return False
    if after[:-1] == before[:-1]:
        return after[-1] == before[-1] + 1
    return after[:-1] > before[:-1] and after[-1] == 0


def id_at(buf: bytes, at: int) -> EventId | None:
    """The id on the ``\\nid:`` line found at ``at`` (the newline's place, which may be
    just before ``buf``)."""
    start = at + len(ID)
    return event_id(buf[start : buf.find(b"\n", start)])


def rounded(value: int) -> int:
    """``value`` to three significant digits (4)."""
    digits = len(str(abs(value)))
    return value if digits <= 3 else round(value, 3 - digits)


class Run:
    """One subscriber's events so far, checked as runs of ids (2); the witness reads
    every event (3)."""

    def __init__(self, posts: int, witness: bool) -> None:
        self.last: EventId | None = None
        self.first: EventId | None = None
        self.count = 0  # events that followed
        self.broken = 0  # events whose id did not follow, or that were no bench post
        self.witness = witness
        self.seen = bytearray(posts) if witness else bytearray()
        self.doubled = 0  # (witness) posts seen twice
        self.one_by_one = 0  # reads checked event by event
        self.mark: bytes | None = None  # what is counted, once seen (5)

    def read(
        self, buf: bytes, start: int, end: int, now: int, latencies: collections.Counter[int]
    ) -> int:
        """Check ``buf[start:end]``, whole events; returns how many events followed."""
        n = buf.count(self.mark or self._learn(buf, start, end), start, end)
        if not n:
            return 0
        if not self.witness:
            # A read may begin at the first event's id line, with no newline before it.
            at = start - 1 if buf.startswith(ID[1:], start) else buf.find(ID, start, end)
            found = at == start - 1 or at >= 0
            first = id_at(buf, at) if found else None
            last = first if n == 1 else id_at(buf, buf.rfind(ID, start, end)) if found else None
            if self._is_run(first, last, n):
                assert first is not None and last is not None
                self.first = self.first or first
                self.last = last
                self.count += n
                sample = MARKER.search(buf, start, end)
                if sample is not None:
                    latencies[rounded((now - int(sample[2])) // 1000)] += n
                return n
        return self._each(buf[start:end], now, latencies)

    def _learn(self, buf: bytes, start: int, end: int) -> bytes:
        """The first event's type and data lines, when it has a type; else its data's
        start (5)."""
        at = buf.find(DATA, start, end)
        if at < 0:
            return DATA
        line = buf[max(start, buf.rfind(b"\n", start, at)) : at]
        self.mark = line + DATA if line.startswith(b"\nevent: ") else DATA
        return self.mark

    def _is_run(self, first: EventId | None, last: EventId | None, n: int) -> bool:
        if first is None or last is None or not follows(self.last, first):
            return False
        return last[:-1] == first[:-1] and last[-1] - first[-1] + 1 == n

    def _each(self, part: bytes, now: int, latencies: collections.Counter[int]) -> int:
        """Event by event (2, 3)."""
        self.one_by_one += 1
        good = 0
        sent_ns = 0  # the first good event's, for a subscriber other than the witness
        for frame in part.split(b"\n\n"):
            if not frame.startswith(DATA[1:]) and DATA not in frame:
                continue  # a comment, a heartbeat, a position
            found = FRAME_ID.search(frame)
            event = event_id(found[1]) if found is not None else None
            marker = MARKER.search(frame)
            if event is None or marker is None or not follows(self.last, event):
                self.broken += 1
                if event is not None:
                    self.last = event  # go on from here, so one fault counts once
                continue
            if self.witness:
                post = int(marker[1])
                if post >= len(self.seen) or self.seen[post]:
                    self.doubled += 1
                    self.broken += 1
                    continue
                self.seen[post] = 1
                latencies[rounded((now - int(marker[2])) // 1000)] += 1
            elif not sent_ns:
                sent_ns = int(marker[2])
            self.first = self.first or event
            self.last = event
            good += 1
        if sent_ns:
            latencies[rounded((now - sent_ns) // 1000)] += good
        self.count += good
        return good

    def missing(self, posts: int) -> int:
        """(witness) posts 0..posts-1 it has not seen."""
        return posts - sum(self.seen[:posts])


def shown(event: EventId | None) -> str:
    return ":".join(map(str, event)) if event is not None else ""
