"""What ``feed tail`` shows in a terminal: one readable line per event, coloured when
wanted. The stream itself is read by the client (client.py).

Rationale:

1. ``tail`` reads the JSON stream and draws its own lines, so it can colour them;
   the server's ``format=text`` stays plain for ``curl -N``.
2. What people wrote (bodies, names, titles) could carry escape sequences that would
   repaint the user's terminal: it is shown through ``terminal_safe``, and JSON
   through ``json_safe``, whatever the server sent. So is every other string of an
   event (its type, a channel's name), which feed's server never sends odd but another
   could; ids that are not numbers make the event one this feed cannot show.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TextIO

from feed.client import Client
from feed.terminal_text import json_safe, one_line, reactions_sentence, terminal_safe

_STYLES = {
    "dim": "2",
    "bold": "1",
    "channel": "36",
    "post-created": "32",
    "post-updated": "33",
    "post-deleted": "31",
    "post-pinned": "35",
    "post-unpinned": "35",
    "mention": "1",
    "reply-created": "32",
    "reply-updated": "33",
    "reply-deleted": "31",
    "post-reactions": "34",
}

# The events a text line shows (besides mentions).
SHOWN_PREFIXES = ("post-", "reply-", "channel-")


def want_colour(choice: str, stream: TextIO) -> bool:
    if choice != "auto":
        return choice == "always"
    return stream.isatty() and "NO_COLOR" not in os.environ


def _paint(text: str, style: str, colour: bool) -> str:
    return f"\033[{_STYLES[style]}m{text}\033[0m" if colour else text


def line(event: str, data: str, colour: bool) -> str:
    """One readable line for a JSON event from the stream."""
    payload = json.loads(data)
    if "post" not in payload:
        return _channel_line(event, payload["channel"], colour)
    post = payload["post"]
    if not all(isinstance(post.get(k), int | None) for k in ("parent", "id")) or "id" not in post:
        raise TypeError("a post's id and parent are numbers")
    if "changes" in payload:
        return _reactions_line(post, payload, colour)
    when = post["edited_at"] if event.endswith("-updated") else post["created_at"]
    stamp = _paint(time.strftime("%H:%M", _local(when)), "dim", colour)
    where = _paint(f"#{one_line(post['channel'])}", "channel", colour)
    who = _paint(terminal_safe(post["author"]), "bold", colour)
    verb = {
        "post-created": "",
        "post-updated": "edited ",
        "post-deleted": "deleted ",
        "post-pinned": "pinned ",
        "post-unpinned": "unpinned ",
        "post-reactions": "deleted ",  # only a deleted post's reactions come whole
    }.get(event, f"{one_line(event)} ")
    what = _paint(f"{verb}post {post['id']}", event if event in _STYLES else "dim", colour)
    # A body could carry escape sequences that would repaint the user's terminal.
    said = " ".join(terminal_safe(post["body"]).split())
    head = f"{stamp} {where} {who}"
    if event == "mention":
        place = "" if post.get("parent") is None else f" in a reply to post {post['parent']}"
        return f"{head} mentioned you{place}: {said}"
    if post.get("parent") is not None:
        return _reply_line(event, (stamp, where, who), post, said, colour)
    if event == "post-created":
        return f"{head}: {said}"
    return f"{head} {what}" + (f": {said}" if said and event != "post-deleted" else "")


def _reply_line(
    event: str, head: tuple[str, str, str], post: dict[str, Any], said: str, colour: bool
) -> str:
    """A reply's line: ``12:00 #general ↳ bo replied to post 12: …``."""
    stamp, where, who = head
    to = f"to post {post['parent']}"
    style = event if event in _STYLES else "dim"
    if event == "reply-created" and not post["deleted"]:
        return f"{stamp} {where} ↳ {who} {_paint('replied', style, colour)} {to}: {said}"
    verb = "deleted" if event == "reply-deleted" or post["deleted"] else "edited"
    what = _paint(f"{verb} reply {post['id']}", style, colour)
    tail = f": {said}" if said and verb == "edited" else ""
    return f"{stamp} {where} ↳ {who} {what} {to}{tail}"


def _reactions_line(post: dict[str, Any], payload: dict[str, Any], colour: bool) -> str:
    """A ``post-reactions`` event (a replayed one of a deleted post reads as deleted)."""
    where = _paint(f"#{one_line(post['channel'])}", "channel", colour)
    changes = [(c["name"], c["reaction"], c["reacted"]) for c in payload["changes"]]
    counts = [(r["reaction"], r["count"]) for r in post["reactions"]]
    said = reactions_sentence(post["id"], changes, payload["more"], counts, post.get("parent"))
    return f"{where} {_paint(said, 'post-reactions', colour)}"


def _channel_line(event: str, channel: dict[str, Any], colour: bool) -> str:
    where = _paint(f"#{one_line(channel['name'])}", "channel", colour)
    title = " ".join(terminal_safe(channel["title"]).split())
    what = {
        "channel-created": f"was created: {title}",
        "channel-updated": f"is now titled: {title}",
        "channel-archived": "was archived",
        "channel-restored": "was restored",
    }.get(event, one_line(event))
    return _paint(f"{where} {what}", "dim", colour) if colour else f"{where} {what}"


def _local(iso: str) -> time.struct_time:
    from datetime import datetime

    return datetime.fromisoformat(iso).astimezone().timetuple()


@dataclass
class Tail:
    """Prints the events ``client`` follows, one per line, to ``out``; what goes wrong
    on the way to ``err``."""

    client: Client
    channels: Sequence[str]
    fmt: str
    last_id: int | None
    out: TextIO
    err: TextIO
    colour: bool
    # How many events to print before returning (None: until interrupted).
    limit: int | None = None
    # "mentions": the holder's mentions only (reading.py).
    only: str | None = None

    def run(self) -> None:
        printed = 0
        if self.limit is not None and self.limit < 1:
            return  # nothing asked for (the command refuses a count below 1)
        follow = self.client.follow(self.channels, self.last_id, self._reconnecting, self.only)
        for event in follow:
            if event.event == "resync" and event.id is None:
                self._say("what this stream may show changed; carrying on")
            elif event.event == "resync":
                self._say(
                    f"too many events were missed to replay; carrying on from event {event.id}"
                )
            elif event.event == "ended":
                self._say(f"the server ended this stream: {_reason(event.data)}")
            elif (
                event.event.startswith(("post-", "reply-", "channel-")) or event.event == "mention"
            ):
                printed += self._show(event.event, event.data)
                if self.limit is not None and printed >= self.limit:
                    return

    def _reconnecting(self, reason: str, delay: float) -> None:
        # The reason may quote whatever answered (a proxy's page): shown, not obeyed.
        said = " ".join(terminal_safe(reason).split())
        self._say(f"{said}; reconnecting in {delay:.1f} s")

    def _say(self, text: str) -> None:
        print(f"feed: {text}", file=self.err, flush=True)

    def _show(self, event: str, data: str) -> bool:
        """Print the event's line; whether it could."""
        try:
            shown = json_safe(data) if self.fmt == "json" else line(event, data, self.colour)
        except (ValueError, LookupError, TypeError, AttributeError, RecursionError):
            # Not what feed sends (another server, or a newer feed's event): said, and
            # the stream goes on.
            self._say(f"an event {terminal_safe(event)[:40]!r} this feed cannot show; skipped")
            return False
        print(shown, file=self.out, flush=True)
        return True


def _reason(data: str) -> str:
    """What an ``ended`` message says (sse.py, on messages that tell), terminal-safe."""
    try:
        said = json.loads(data).get("reason", data)
    except (ValueError, AttributeError):
        said = data
    return " ".join(terminal_safe(str(said)).split())
