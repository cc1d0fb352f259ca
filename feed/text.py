"""What feed takes as text: the one rule every string a client or the CLI can store
passes (post bodies, channel titles and descriptions, identity names). The character
classes these rules are made of are defined here once; the output rules of terminal_text.py
(terminals, JSON) and logs.py (log lines) are built from them too.

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
3. One-line text refuses the bidirectional embeddings, overrides and isolates too: a
   title such as "Safe <U+202E>elif.exe" reads as "Safe exe.file", on a page as in a
   terminal, and no title needs them. It keeps the marks (LRM, RLM, ALM), which a
   right-to-left title may need beside digits or punctuation and which reorder nothing
   but the neutral characters next to them. Text that may span lines keeps all of
   them: a post in a right-to-left script may need any, and terminals are shown them
   escaped (terminal_text.py).
4. A refusal names the character by its code point and position: the character
   itself may be invisible, and echoing it would carry it into the answer.
5. Visible. Text that may not be empty may not show as empty either: a body of
   zero-width spaces, byte order marks, Hangul or Braille fillers or a variation
   selector would be an empty card on every screen. Blank means nothing but spaces,
   format characters (Unicode's Cf: the zero-width ones, direction marks, the byte
   order mark; not the few that are drawn), noncharacters, and the fillers and
   selectors Unicode lists as default-ignorable or as blank on purpose. A code point
   this Python's Unicode data does not know is not blank: it may be an emoji newer
   than the data, which the reader's browser draws. Such characters beside
   anything visible are kept: an emoji needs its variation selector, and a
   right-to-left line its marks.
6. Output stays defensive as well (terminal_text.py, render.py): text stored before this rule, or
   written to the database by other means, is still escaped or stripped.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

# The characters every rule about text is made of, here and in what renders or logs
# text (terminal_text.py, logs.py), as sets of code points.
TAB, LINE_FEED, CARRIAGE_RETURN = 0x09, 0x0A, 0x0D
C0 = frozenset(range(0x00, 0x20))
DEL = frozenset({0x7F})
C1 = frozenset(range(0x80, 0xA0))
CONTROLS = C0 | DEL | C1
# Unicode's line and paragraph separators: line breaks to str.splitlines and browsers.
SEPARATORS = frozenset({0x2028, 0x2029})
# The bidirectional embeddings, overrides and isolates, which reorder what follows.
BIDI_OVERRIDES = frozenset(range(0x202A, 0x202F)) | frozenset(range(0x2066, 0x206A))
# The bidirectional marks: LRM, RLM and the Arabic letter mark. Invisible, each takes
# one direction's side, and so can move the characters about it.
BIDI_MARKS = frozenset({0x200E, 0x200F, 0x061C})
BIDI_CONTROLS = BIDI_OVERRIDES | BIDI_MARKS
# Halves of UTF-16 pairs, which are no characters on their own (rationale 1).
SURROGATES = frozenset(range(0xD800, 0xE000))
# What shows as nothing though Unicode files it as a letter, a mark or a symbol
# (rationale 5): the Hangul fillers, the Braille blank, the combining grapheme joiner,
# two Khmer vowels inherent, and the variation selectors (Mongolian ones included).
FILLERS = (
    frozenset({0x115F, 0x1160, 0x3164, 0xFFA0, 0x2800, 0x034F, 0x17B4, 0x17B5})
    | frozenset({0x180B, 0x180C, 0x180D, 0x180F})
    | frozenset(range(0xFE00, 0xFE10))
    | frozenset(range(0xE0100, 0xE01F0))
)
# The noncharacters, never assigned: U+FDD0 to U+FDEF and the last two of each plane.
# Named one by one, not as "unassigned": what this Python's Unicode data does not know
# yet (an emoji newer than it) is a character to the reader's browser.
NONCHARACTERS = frozenset(range(0xFDD0, 0xFDF0)) | frozenset(
    plane + last for plane in range(0, 0x110000, 0x10000) for last in (0xFFFE, 0xFFFF)
)
# Format characters that are drawn: the prepended concatenation marks (an Arabic
# number sign, the end of an ayah...), which stand before the digits they mark.
DRAWN_FORMATS = frozenset({*range(0x0600, 0x0606), 0x06DD, 0x070F, 0x0890, 0x0891, 0x08E2})
DRAWN_FORMATS |= frozenset({0x110BD, 0x110CD})
# Unicode's general categories that never show: spaces, line and paragraph
# separators, controls and format characters.
_BLANK_CATEGORIES = frozenset({"Zs", "Zl", "Zp", "Cc", "Cf"})


def matching(code_points: Iterable[int]) -> re.Pattern[str]:
    """A pattern that matches any one character of ``code_points``."""
    ranges: list[list[int]] = []
    for point in sorted(set(code_points)):
        if ranges and ranges[-1][1] == point - 1:
            ranges[-1][1] = point
        else:
            ranges.append([point, point])
    spans = (f"\\U{a:08x}" + (f"-\\U{b:08x}" if b > a else "") for a, b in ranges)
    return re.compile(f"[{''.join(spans)}]")


_SURROGATE = matching(SURROGATES)
_CONTROL = matching(CONTROLS - {TAB, LINE_FEED, CARRIAGE_RETURN})
_NOT_ONE_LINE = matching(CONTROLS | SEPARATORS | BIDI_OVERRIDES)
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
    0x202A: "left-to-right embedding",
    0x202B: "right-to-left embedding",
    0x202C: "pop directional formatting",
    0x202D: "left-to-right override",
    0x202E: "right-to-left override",
    0x2066: "left-to-right isolate",
    0x2067: "right-to-left isolate",
    0x2068: "first strong isolate",
    0x2069: "pop directional isolate",
}


def _where(found: re.Match[str]) -> str:
    char = ord(found.group())
    name = _NAMES.get(char)
    shown = f"U+{char:04X}" + (f" ({name})" if name else "")
    return f"{shown} at character {found.start() + 1}"


def blank(value: str) -> bool:
    """Whether ``value`` shows nothing at all (rationale 5): true of ``""`` too. Stops
    at the first visible character, so a real text costs a character or two."""
    return all(_shows_nothing(char) for char in value)


def _shows_nothing(char: str) -> bool:
    point = ord(char)
    if point in FILLERS or point in NONCHARACTERS or char.isspace():
        return True
    return unicodedata.category(char) in _BLANK_CATEGORIES and point not in DRAWN_FORMATS


def not_text(value: str) -> str | None:
    """Why ``value`` is no text at all (rationale 1), or None. A phrase to follow the
    subject: "The field 'body' " + phrase."""
    found = _SURROGATE.search(value)
    if found is None:
        return None
    return f"holds a lone surrogate, {_where(found)}, which is not a character"


def problem(value: str, *, multiline: bool) -> str | None:
    """Why ``value`` may not be stored as text (rationale 1, 2, 3), or None. ``multiline``
    text may hold tabs and line breaks; other text is one line."""
    refused = not_text(value)
    if refused is not None:
        return refused
    if multiline:
        found = _CONTROL.search(value)
        rule = "must not hold control characters other than tabs and line breaks"
    else:
        found = _NOT_ONE_LINE.search(value)
        rule = "must be one line without control characters or direction overrides"
    if found is None:
        return None
    return f"{rule}, and holds {_where(found)}"
