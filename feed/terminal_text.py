"""Text that is safe to show in a terminal, for the server's text and JSON streams
(render.py, shapes.py) and for ``feed tail`` (terminal.py) alike. It needs nothing
but the character classes of text.py, so the command-line client imports it without
the server's libraries.

Rationale:

1. Plain text. The text rendering is for terminals (``curl -N``): C0 and C1 control
   characters, ESC included, are removed, so a post cannot move a reader's cursor,
   recolour their terminal or set its title.
2. JSON. JSON events are read in terminals too (``curl -N``, ``feed tail --format
   json``): there every control character, C1 (U+009B is a CSI of its own) and DEL
   included, is a ``\\u`` escape instead, which means the same in JSON text.
3. Bidirectional controls (embeddings, overrides, isolates, and the LRM, RLM and ALM
   marks) reorder what a terminal shows after them: "Safe <U+202E>elif.exe" reads as
   "Safe exe.file". In plain text they are shown as the escape ``\\u202e`` rather than
   dropped, so that a reader sees that the text tried to reorder itself, and where.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from feed.text import BIDI_CONTROLS, CONTROLS, LINE_FEED, TAB, matching

# C0 and C1 controls and DEL; tabs and newlines are kept for callers that split lines.
_CONTROLS = matching(CONTROLS - {TAB, LINE_FEED})
_BIDI = matching(BIDI_CONTROLS)


def terminal_safe(text: str) -> str:
    """``text`` without control characters (1), its bidirectional ones escaped (3)."""
    return _BIDI.sub(_escaped, _CONTROLS.sub("", text))


def _escaped(found: re.Match[str]) -> str:
    return f"\\u{ord(found.group()):04x}"


def one_line(said: object) -> str:
    """``said`` (a server's text, or an exception saying it) made safe (1) and folded
    onto one line."""
    return " ".join(terminal_safe(str(said)).split())


# json.dumps(ensure_ascii=False) escapes C0 but leaves DEL and C1 raw, and the
# bidirectional controls, which reorder what a terminal shows after them. In valid
# JSON text a control character can only stand inside a string, where its \u escape
# means the same; C0 is included for JSON that did not come from json.dumps.
_RAW_IN_JSON = matching(CONTROLS | BIDI_CONTROLS)


def json_safe(text: str) -> str:
    """JSON text with every control character escaped, C1, DEL and the bidirectional
    ones too (2)."""
    return _RAW_IN_JSON.sub(_escaped, text)


def reactions_sentence(
    post_id: int,
    changes: Sequence[tuple[str, str, bool]],
    more: int,
    counts: Sequence[tuple[str, int]],
    parent: int | None = None,
) -> str:
    """ "ada reacted 🎉 to post 12 (now 🎉 3, 👍 1)": the last toggle an event reports,
    how many others it covers, and the post's counts; safe for a terminal (1). A reply
    is named with its thread ("reply 13 to post 12"), since its id alone reads as a
    post of its own."""
    target = f"post {post_id}" if parent is None else f"reply {post_id} to post {parent}"
    shown = ", ".join(f"{terminal_safe(r)} {n}" for r, n in counts)
    now = f"now {shown}" if shown else "no reactions now"
    if not changes:
        return f"{target} has {now}"
    name, reaction, reacted = changes[-1]
    who, what = one_line(name), terminal_safe(reaction)
    did = f"reacted {what} to" if reacted else f"took back {what} from"
    others = len(changes) - 1 + more
    also = f" (and {others} more change{'' if others == 1 else 's'})" if others else ""
    return f"{who} {did} {target}{also} ({now})"
