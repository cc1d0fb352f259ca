"""The JSON that posts, channels and events take, in API answers and on streams,
and its encoding.

Rationale:

1. Terminals. JSON events are read in terminals too: every control character in
   them is a ``\\u`` escape (terminal_text.py, on JSON).
2. An event's JSON is written by the json module's C encoder, made once
   (``event_dumps``): ``json.dumps``, and ``JSONEncoder.encode`` too, make a new one
   for every call, which cost about a third of encoding a new post's event. It is
   the encoder ``JSONEncoder`` itself would use, with the same arguments; where the
   C part is missing, ``JSONEncoder.encode`` serves.
3. Times are formatted through a small cache: every post of a group is written at the
   same moment, and a batch's answer and events show it once per post.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

from feed.terminal_text import json_safe
from feed.values import Change, ChannelView, PostView, ReactionCount, Thread

# ``json.dumps`` with options builds an encoder for every call: events share this one.
EVENT_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def _event_dumps() -> Callable[[Any], str]:
    """``EVENT_JSON.encode``, with its C encoder made once (2)."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # a Python without the json module's C part
        return EVENT_JSON.encode
    # The arguments ``JSONEncoder.iterencode`` passes, without its check for cycles:
    # an event's JSON is made of fresh dicts and lists.
    chunks = make(
        None, EVENT_JSON.default, json.encoder.encode_basestring, None, ":", ",", False, False, True
    )
    return lambda value: "".join(chunks(value, 0))


# An event's JSON text, as ``json.dumps(value, ensure_ascii=False, separators=(",", ":"))``.
event_dumps = _event_dumps()


def json_event(dumped: str) -> str:
    """``json_safe`` for what ``json.dumps`` made (1): it escapes C0 itself,
    so ASCII text can hold only DEL raw, found without the expression's scan."""
    return dumped.replace("\x7f", "\\u007f") if dumped.isascii() else json_safe(dumped)


@functools.lru_cache(maxsize=64)  # (3)
def isotime(moment: datetime | None) -> str:
    return "" if moment is None else moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def reactions_json(reactions: Iterable[ReactionCount]) -> list[dict[str, Any]]:
    return [{"reaction": r.reaction, "count": r.count, "names": list(r.names)} for r in reactions]


def post_json(post: PostView) -> dict[str, Any]:
    return {
        "id": post.id,
        "channel": post.channel,
        "author": post.author,
        "body": post.body,
        "html": post.html,
        "created_at": isotime(post.created_at),
        "edited_at": isotime(post.edited_at) or None,
        "pinned": post.pinned,
        "deleted": post.deleted,
        "parent": post.parent,
        "replies": post.replies,
        "repliers": list(post.repliers),
        "reactions": reactions_json(post.reactions),
    }


def change_json(change: Change, mine: Sequence[str] = ()) -> dict[str, Any]:
    """A new or changed post and the event it logged, as the API answers them: the
    post with the caller's own reactions (``mine``; a new post has none)."""
    post = post_json(change.post) | {"mine": list(mine)}
    return {"post": post, "event_id": change.event_id}


def thread_json(thread: Thread) -> dict[str, Any]:
    return {"post": thread.post, "replies": thread.replies, "repliers": list(thread.repliers)}


def channel_json(channel: ChannelView) -> dict[str, Any]:
    return {
        "name": channel.name,
        "title": channel.title,
        "description": channel.description,
        "archived": channel.archived,
        "private": channel.private,
        "announcement_only": channel.announcement_only,
        "replies": channel.replies,
    }
