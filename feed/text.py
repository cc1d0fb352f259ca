"""What feed takes as text: the one rule every string a client or the CLI can store
passes (post bodies, channel titles and descriptions, identity names).

Rationale:

1. A lone surrogate (U+D800 to U+DFFF) is not a character: JSON's ``"\\ud800"``
   escape makes one and Python's parser lets it through, but no UTF-8 encoder takes
   it, so such a string can be neither stored, rendered nor sent. Left to the
   database, it failed the write, and with it every post written in the same group
   (commits.py). It is refused where it comes in, as is invalid UTF-8 that the CLI
   reads from its arguments (Python hands those bytes on as lone surrogates).
2. Control characters (C0, DEL and C1) are not text people read: in a terminal
   they move the cursor, recolour it or set its title (C1's U+009B is a CSI of its
   own), and on a page they are invisible. Text that may span lines (a post's body,
   a channel's description) keeps tabs and line breaks; one-line text (titles,
   names) keeps neither, nor the Unicode line and paragraph separators.
3. A refusal names the character by its code point and position: the character
   itself may be invisible, and echoing it would carry it into the answer.
4. Output stays defensive as well (render.py): text stored before this rule, or
   written to the database by other means, is still escaped or stripped.
"""

from __future__ import annotations

import re

_SURROGATE = re.compile("[\ud800-\udfff]")
# C0 but tab, line feed and carriage return; DEL; C1.
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
# Every C0 and C1 control, DEL, and the line and paragraph separators.
_NOT_ONE_LINE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMES = {
    0x00: "NUL",
    0x09: "tab",
    0x0A: "line feed",
    0x0D: "carriage return",
    0x1B: "ESC",
    0x7F: "DEL",
    0x85: "next line",
    0x9B: "CSI",
    0x2028: "line separator",
    0x2029: "paragraph separator",
}


def _where(found: re.Match[str]) -> str:
    char = ord(found.group())
    name = _NAMES.get(char)
    shown = f"U+{char:04X}" + (f" ({name})" if name else "")
    return f"{shown} at character {found.start() + 1}"


def not_text(value: str) -> str | None:
    """Why ``value`` is no text at all (rationale 1), or None. A phrase to follow the
    subject: "The field 'body' " + phrase."""
    found = _SURROGATE.search(value)
    if found is None:
        return None
    return f"holds a lone surrogate, {_where(found)}, which is not a character"


def problem(value: str, *, multiline: bool) -> str | None:
    """Why ``value`` may not be stored as text (rationale 1, 2), or None. ``multiline``
    text may hold tabs and line breaks; other text is one line."""
    refused = not_text(value)
    if refused is not None:
        return refused
    if multiline:
        found = _CONTROL.search(value)
        rule = "must not hold control characters other than tabs and line breaks"
    else:
        found = _NOT_ONE_LINE.search(value)
        rule = "must be one line without control characters"
    if found is None:
        return None
    return f"{rule}, and holds {_where(found)}"
