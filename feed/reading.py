"""Read state and mentions, as readers see them: who has any, and their answers in JSON.

The positions, counts and mentions are kept by the store (storage/reading.py); the
events that carry them to a person's other tabs and devices are personal events
(events.py, on personal events).

Rationale:

1. Who has read state. A signed-in person, by name, on every credential they use (a
   session, a token of theirs): one person's devices share it. A kiosk link is
   nobody (permissions.py, on kiosk links), and a token limited to some channels gets
   no personal events on its streams, since a read position or mention of another
   channel would tell it of channels outside its scope; its read state is still
   there for the unlimited credentials of the same person.
2. What is counted is what the reader may read now: the channels of
   ``Permissions.readable`` and, in SQL, the private ones they may read as those are
   in that very query (storage/history.py, on reads for a reader).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from feed.errors import ClientError
from feed.identity import Identity
from feed.permissions import Permissions, grantee
from feed.shapes import post_json
from feed.storage.reading import COUNT_CAP
from feed.values import Mention, Unread

# ``GET /events?only=mentions``: a stream of the reader's mentions and nothing else.
STREAM_ONLY = ("mentions",)


def person(who: Identity) -> str | None:
    """Whose read state ``who`` reads and moves, and whose personal events its streams
    get; None: nobody's (1)."""
    name = grantee(who)
    return name if who.scope is None else None


def no_person() -> ClientError:
    return ClientError(
        401,
        "Sign in (or use a token of your own, not limited to some channels) to have "
        "read state and mentions.",
    )


def the_person(perms: Permissions) -> str:
    """``person``, or the 401 that says why there is none."""
    name = person(perms.identity)
    if name is None:
        raise no_person()
    return name


def readable_names(perms: Permissions) -> list[str]:
    """The channels whose read state ``perms`` may see (2)."""
    return [c.name for c in perms.readable()]


def unread_json(found: list[Unread]) -> dict[str, Any]:
    return {
        "channels": {
            u.channel: {"unread": u.posts, "mentions": u.mentions, "read_up_to": u.read_up_to}
            for u in found
        },
        "total": sum(u.posts for u in found),
        "mentions": sum(u.mentions for u in found),
        "cap": COUNT_CAP,
    }


def mention_json(found: Mention, mine: Sequence[str] = ()) -> dict[str, Any]:
    """A mention as the API answers it: its post with the reader's own reactions."""
    post = post_json(found.post) | {"mine": list(mine)}
    return {"event_id": found.event_id, "unread": found.unread, "post": post}
