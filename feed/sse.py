"""Server-Sent Events on the wire: the formats a stream carries and the bytes of each
message, heartbeats included.

Every function here is pure: it takes text and returns the exact bytes a client
reads. The hub (events.py) hands these bytes out; it never builds them.

Rationale:

1. Framing is sse-starlette's ``ServerSentEvent`` with ``\\n`` line ends, a byte
   a line less than its default ``\\r\\n``. Multi-line data becomes several
   ``data:`` lines, and CR and LF are removed from ``event`` and ``id``, so what a
   client sent can never start a field of its own. An event (``frame``), framed once
   per format for every event the hub hands out, is written here in the same bytes
   (tests/test_sse.py compares them) without building the object, its buffer and
   its expression's passes: one string when the data is one line.
2. Heartbeats: pages need to *see* them (an offline badge appears when they stop),
   but an EventSource drops SSE comments, so HTML streams get a named ``heartbeat``
   event; JSON and text streams keep the comment, so scripts and ``curl -N`` see no
   noise. Neither carries an ``id:``, which would reset the browser's
   ``Last-Event-ID``. Both are encoded once, at import.
3. The hello: an HTML stream opens with a ``hello`` event naming the server's
   release and heartbeat interval. A page compares the release with the one it was
   rendered with and reloads itself after a deploy.
4. ``chunk`` frames a message as one HTTP/1.1 chunk, so the hub can write it straight
   to a connection's transport (subscribers.py, on attaching); the bytes must be
   exactly what uvicorn would have written for the same message.
5. Told, not left to guess. Two messages say what the stream's reader cannot see for
   itself. ``resync``: the page is to re-fetch its list, because it missed more than
   a replay holds (with the id its list is to reach: resume.py), or because what the
   stream may show changed under it (a channel made private or public, a membership
   given or taken: watch.py), with no id. ``ended``: the identity behind the stream
   lost its access (signed out, revoked, expired, a channel it named taken away),
   and the stream ends after it: a page reloads, to show what it may show now,
   rather than reconnect as somebody else (a signed-out browser has no session to
   send) and go on looking live.
"""

from __future__ import annotations

import functools
import json
import random
import re
from collections.abc import Mapping
from enum import StrEnum

from sse_starlette import ServerSentEvent

SEP = "\n"
# What ends a line in SSE, as sse-starlette splits data and cleans fields (1).
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
# What a heartbeat says: the comment's text, and the event's name on HTML streams (2).
HEARTBEAT_NAME = "heartbeat"
HEARTBEAT = f": {HEARTBEAT_NAME}\n\n".encode()
HEARTBEAT_EVENT = f"event: {HEARTBEAT_NAME}\ndata: \n\n".encode()


class Format(StrEnum):
    """The renderings one stream can carry."""

    HTML = "html"
    JSON = "json"
    TEXT = "text"


# The heartbeat of each format (2).
HEARTBEATS: Mapping[Format, bytes] = {
    Format.HTML: HEARTBEAT_EVENT,
    Format.JSON: HEARTBEAT,
    Format.TEXT: HEARTBEAT,
}


def frame(data: str, *, event: str | None = None, id: int | None = None) -> bytes:
    """One SSE message. Multi-line data becomes several ``data:`` lines; CR and LF
    are removed from ``event`` so a field can never start a new one (1)."""
    head = "" if id is None else f"id: {id}\n"  # a number: no line break in it
    if event is not None:
        if "\n" in event or "\r" in event:
            event = _LINE_BREAK.sub("", event)
        head += f"event: {event}\n"
    if "\n" in data or "\r" in data:
        lines = "".join(f"data: {line}\n" for line in _LINE_BREAK.split(data))
        return f"{head}{lines}\n".encode()
    return f"{head}data: {data}\n\n".encode()


def position(event_id: int) -> bytes:
    """A message with only an ``id:``. EventSource dispatches nothing for it but does
    take the id as its Last-Event-ID, so a reconnect resumes from here even if no
    event arrived in between."""
    return ServerSentEvent(id=str(event_id), sep=SEP).encode()


def retry_hint(milliseconds: int) -> bytes:
    return ServerSentEvent(retry=milliseconds, sep=SEP).encode()


def comment(text: str) -> bytes:
    return ServerSentEvent(comment=text, sep=SEP).encode()


# The last message of a stream the server ends, whichever endpoint serves it.
CLOSING = comment("stream closed; reconnect to resume")

# The last message of a stream that reached ``FEED_MAX_STREAM_SECONDS``: come back
# soon, not after the usual spread delay (reconnects.py, on the maximum age).
AGED_RETRY_MS = 250
AGED = retry_hint(AGED_RETRY_MS) + comment("stream reached its maximum age; reconnect to resume")

# The last message of a thread's stream after its post's tombstone: a reconnect would
# be refused (thread_streams.py), so it is not invited.
THREAD_OVER = comment("its thread's post was deleted; nothing more will come")


def lifetime(seconds: float) -> float:
    """How long one stream lasts under ``FEED_MAX_STREAM_SECONDS``: that long plus up to
    a quarter more, at random (reconnects.py, on the maximum age)."""
    return seconds * (1 + random.random() / 4)


@functools.lru_cache(maxsize=4)
def hello(release: str, heartbeat: float) -> bytes:
    """The first event of an HTML stream: what the server runs and how often it beats (3)."""
    data = json.dumps({"release": release, "heartbeat": heartbeat}, separators=(",", ":"))
    return frame(data, event="hello")


def chunk(data: bytes) -> bytes:
    """``data`` as one HTTP/1.1 chunk, ready to go on the wire of a chunked response (4)."""
    return b"%x\r\n%b\r\n" % (len(data), data)


RESYNC = "resync"
ENDED = "ended"


def resync_frame(fmt: Format, event_id: int | None, reason: str) -> bytes:
    """Re-fetch your list (5); ``event_id``: the one the list is to reach, if any."""
    if fmt is Format.JSON:
        data = json.dumps({"id": event_id, "type": RESYNC, "reason": reason}, separators=(",", ":"))
    elif fmt is Format.TEXT:
        data = f"resync: {reason}"
    else:
        data = ""
    return frame(data, event=RESYNC, id=event_id)


def ended_frame(fmt: Format, reason: str) -> bytes:
    """The last message of a stream whose identity lost its access (5)."""
    if fmt is Format.JSON:
        data = json.dumps({"type": ENDED, "reason": reason}, separators=(",", ":"))
    elif fmt is Format.TEXT:
        data = f"ended: {reason}"
    else:
        data = reason
    return frame(data, event=ENDED)
