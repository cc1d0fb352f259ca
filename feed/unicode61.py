"""Words as SQLite's ``unicode61`` tokenizer makes them, set up as the search index sets
it up (``remove_diacritics 0``: migration 0010_search), so that the live matcher splits
and folds a text exactly as the index does (search.py, on words).

Rationale:

1. Asked, not guessed. unicode61 decides by Unicode 6.1's categories and a list of its
   own, and Python's Unicode data is years newer: a character assigned since 6.1, a
   newer emoji among them, is a word character to unicode61, and of the combining
   marks only the accents on its list stay in a word. So the rule is what SQLite
   answers (``measure``), kept in unicode61_table.py, which ``python -m
   feed.unicode61`` writes; a test asks the SQLite this process links again, and the
   live matcher too, for every code point, so an answer that changes fails loudly.
2. The rule: a word begins with a character that may begin one and goes on with those
   and the ones that only continue a word (``CONTINUING``: the accents, so that
   ``cafe`` and a combining acute make one word, and a lone accent none); every other
   character separates (``SEPARATING``). Each character of a word folds to one
   character by the table (``FOLDING``), not by ``str.lower()``: a dotted capital I
   stays as it is, final sigma becomes sigma, and a capital letter cased after 6.1
   stays a capital. Folding keeps each character's kind, so a text can be folded
   first and split after; ``measure`` checks this shape as it reads.
3. How SQLite is asked: an in-memory FTS5 table with the index's tokenizer, and an
   ``fts5vocab`` table of its words. Every code point stands between two ``a``s
   (``aXaYa…``): one that goes on in a word shows there folded, any other ends the
   word. Then each one that goes on stands after a space and before an ``a``: where
   the ``a`` stands alone, the character cannot begin a word. A row stays far below
   FTS5's longest word (32 KB, past which it cuts a word). Lone surrogates cannot be
   stored, and feed takes none (text.py): here they separate.
4. Cost. The matcher splits every event's body on the event loop (post_words.py, on
   cost), so a text is folded by one call in C and split by one regular expression.
   ``str.lower()`` is the fastest, and folds as the table does but at the characters
   of ``LOWER_DIFFERS`` (as this Python's Unicode version lowercases; under another
   version, at any character beyond ASCII): a text without those and without
   characters beyond the BMP takes it. Any other is folded by ``str.translate`` with
   a table indexed by code point, several times slower, which also writes a space for
   each separator beyond the BMP below ``TABLE_TOP``: Python's ``re`` tests a
   character of the BMP against a class with one lookup, but one beyond it against
   each of the class's ranges in turn, and the separators there make dozens. So the
   pattern's classes hold the separators of the BMP and, beyond it, only those past
   ``TABLE_TOP`` (three ranges).
"""

from __future__ import annotations

import re
import sqlite3
import sys
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from feed import unicode61_table as table
from feed.text import SURROGATES

# The tokenizer as migration 0010_search creates the index with it (a test compares).
TOKENIZER = "unicode61 remove_diacritics 0"
LAST = 0x10FFFF
ASTRAL = 0x10000  # the first code point beyond the BMP
# The code points the translation table holds (4): every separator beyond the BMP but
# three ranges of tags and variation selectors, and every emoji.
TABLE_TOP = 0x20000
# Code points in one row of a probe (3): its words stay under 10 KB.
ROW = 2000
# The one character str.lower() folds by its neighbours: capital sigma, which ends a
# word as final sigma (4).
_CONTEXTUAL = 0x03A3

Ranges = tuple[tuple[int, int], ...]
# (first, last, step, delta): every step-th code point from first to last folds to
# itself plus delta.
Runs = tuple[tuple[int, int, int, int], ...]


class MeasureError(RuntimeError):
    """A tokenizer answered in a shape the rule (2) cannot describe."""


@dataclass(frozen=True, slots=True)
class Rule:
    """How unicode61 treats every code point but the surrogates (2)."""

    separating: Ranges
    continuing: Ranges
    folding: Runs


class Tokenizer(Protocol):
    """Something that splits texts into words, asked by ``measure``."""

    def words(self, rows: Sequence[str]) -> list[list[str]]:
        """Each row's words, in order."""
        ...

    def holding(self, rows: Sequence[str], word: str) -> set[int]:
        """The rows (by index) that hold ``word``."""
        ...


class SQLiteTokenizer:
    """unicode61 as the SQLite this process links runs it (3)."""

    def __init__(self) -> None:
        self._db = sqlite3.connect(":memory:")
        self._db.execute(f"CREATE VIRTUAL TABLE probe USING fts5(body, tokenize='{TOKENIZER}')")
        self._db.execute("CREATE VIRTUAL TABLE probe_words USING fts5vocab(probe, 'instance')")

    def close(self) -> None:
        self._db.close()

    def words(self, rows: Sequence[str]) -> list[list[str]]:
        self._fill(rows)
        found: list[list[str]] = [[] for _ in rows]
        query = "SELECT doc, term FROM probe_words ORDER BY doc, offset"
        for row, word in self._db.execute(query):
            found[row].append(word)
        return found

    def holding(self, rows: Sequence[str], word: str) -> set[int]:
        self._fill(rows)
        query = "SELECT rowid FROM probe WHERE probe MATCH ?"
        return {row for (row,) in self._db.execute(query, (f'"{word}"',))}

    def _fill(self, rows: Sequence[str]) -> None:
        self._db.execute("DELETE FROM probe")
        self._db.executemany("INSERT INTO probe(rowid, body) VALUES (?, ?)", enumerate(rows))


def measure(tokenizer: Tokenizer) -> Rule:
    """The rule ``tokenizer`` follows, asked of it for every code point (3)."""
    points = [c for c in range(LAST + 1) if c not in SURROGATES]
    separating, folds = _going_on(tokenizer, points)
    ends = set(separating)
    continuing = _not_beginning(tokenizer, [c for c in points if c not in ends])
    rule = Rule(_ranges(separating), _ranges(continuing), _runs(folds))
    _check_folding(rule)
    return rule


def _going_on(tokenizer: Tokenizer, points: list[int]) -> tuple[list[int], dict[int, int]]:
    """The code points that end a word, and how the others fold: each stands between
    two ``a``s, which a word character joins into one word (3)."""
    rows = [points[n : n + ROW] for n in range(0, len(points), ROW)]
    texts = ["a" + "".join(chr(c) + "a" for c in row) for row in rows]
    separating: list[int] = []
    folds: dict[int, int] = {}
    for row, words in zip(rows, tokenizer.words(texts), strict=True):
        at = 0
        for n, word in enumerate(words):
            if len(word) % 2 == 0 or word[::2].strip("a"):
                raise MeasureError(f"a word in no shape of the rule: {word[:20]!r}")
            for folded in word[1::2]:
                if at == len(row):
                    raise MeasureError(f"more words than characters from U+{row[0]:04X}")
                if folded != chr(row[at]):
                    folds[row[at]] = ord(folded)
                at += 1
            if n < len(words) - 1:
                separating.append(row[at])
                at += 1
        if at != len(row):
            raise MeasureError(f"fewer words than characters from U+{row[0]:04X}")
    return separating, folds


def _not_beginning(tokenizer: Tokenizer, going_on: list[int]) -> list[int]:
    """Of the characters that go on in a word, those that cannot begin one: after a
    space, an ``a`` after them stands alone (3). Rows are asked whole, and the few that
    hold a lone ``a`` character by character."""
    rows = [going_on[n : n + ROW] for n in range(0, len(going_on), ROW)]
    suspects = tokenizer.holding(["".join(f" {chr(c)}a" for c in row) for row in rows], "a")
    found: list[int] = []
    for n in sorted(suspects):
        alone = tokenizer.holding([f" {chr(c)}a" for c in rows[n]], "a")
        found += [rows[n][i] for i in sorted(alone)]
    return found


def _check_folding(rule: Rule) -> None:
    """Folding keeps each character's kind and folds a folded one no further (2)."""
    ends, only = _points(rule.separating), _points(rule.continuing)
    folds = _folds(rule.folding)
    for c, f in folds.items():
        if f in ends or (c in only) != (f in only) or f in folds:
            raise MeasureError(f"U+{c:04X} folds to U+{f:04X}, of another kind")


def lower_differs(rule: Rule) -> Ranges:
    """The code points where ``str.lower()`` makes other words than the table (4), as
    this Python's Unicode version lowercases."""
    ends, folds = _points(rule.separating), _folds(rule.folding)
    differs = [_CONTEXTUAL]
    for c in range(LAST + 1):
        if c in SURROGATES:
            continue
        lowered = chr(c).lower()
        if c in ends:
            # A separator may lower to another (Ⓐ to ⓐ): the words stay the same.
            if any(ord(x) not in ends for x in lowered):
                differs.append(c)
        elif lowered != chr(folds.get(c, c)):
            differs.append(c)
    return _ranges(sorted(set(differs)))


def recorded() -> Rule:
    """The rule as unicode61_table.py keeps it."""
    return Rule(table.SEPARATING, table.CONTINUING, table.FOLDING)


def render(rule: Rule, sqlite_version: str, differs: Ranges, unicode_version: str) -> str:
    """unicode61_table.py's text for ``rule``."""
    return "\n".join(
        [
            '"""How SQLite\'s unicode61 tokenizer splits and folds every code point, as',
            "feed's search index runs it (unicode61.py). Written by ``python -m",
            'feed.unicode61``, which asks SQLite: not by hand."""',
            "",
            "# The SQLite that answered, and the Unicode version of the Python whose",
            "# str.lower() LOWER_DIFFERS compares.",
            f'SQLITE_VERSION = "{sqlite_version}"',
            f'UNICODE_VERSION = "{unicode_version}"',
            "",
            "# Code points that separate words, (first, last).",
            *_tuple("SEPARATING", rule.separating),
            "# Code points that go on in a word but cannot begin one, (first, last).",
            *_tuple("CONTINUING", rule.continuing),
            "# Code points that fold to another: (first, last, step, delta), every step-th",
            "# one from first to last folding to itself plus delta.",
            *_tuple("FOLDING", rule.folding),
            "# Code points where str.lower() makes other words than FOLDING, (first, last).",
            *_tuple("LOWER_DIFFERS", differs),
            "",
        ]
    )


def _tuple(name: str, rows: Iterable[tuple[int, ...]]) -> Iterator[str]:
    """Code points in hexadecimal, steps and deltas in decimal."""
    yield f"{name} = ("
    for row in rows:
        fields = [f"0x{c:04X}" for c in row[:2]] + [str(n) for n in row[2:]]
        yield f"    ({', '.join(fields)}),"
    yield ")"


def _ranges(points: Iterable[int]) -> Ranges:
    ranges: list[tuple[int, int]] = []
    for c in sorted(points):
        if ranges and ranges[-1][1] == c - 1:
            ranges[-1] = (ranges[-1][0], c)
        else:
            ranges.append((c, c))
    return tuple(ranges)


def _points(ranges: Ranges) -> set[int]:
    return {c for first, last in ranges for c in range(first, last + 1)}


def _runs(folds: dict[int, int]) -> Runs:
    """``folds`` as runs of code points a step apart that fold by the same delta."""
    runs: list[tuple[int, int, int, int]] = []
    for c in sorted(folds):
        delta = folds[c] - c
        if runs:
            first, last, step, was = runs[-1]
            if was == delta and (c - last == step or (first == last and c - last == 2)):
                runs[-1] = (first, c, c - last, delta)
                continue
        runs.append((c, c, 1, delta))
    return tuple(runs)


def _folds(runs: Runs) -> dict[int, int]:
    return {c: c + delta for first, last, step, delta in runs for c in range(first, last + 1, step)}


# -- the matcher's side: built once, from the table --------------------------------


def _class(ranges: Iterable[tuple[int, int]]) -> str:
    """The inside of a character class holding ``ranges``."""
    return "".join(_char(a) + ("-" + _char(b) if b > a else "") for a, b in ranges)


def _char(c: int) -> str:
    return re.escape(chr(c)) if c < 0x80 else chr(c)


def _below(ranges: Ranges, top: int) -> Ranges:
    return tuple((a, min(b, top - 1)) for a, b in ranges if a < top)


def _above(ranges: Ranges, top: int) -> Ranges:
    return tuple((max(a, top), b) for a, b in ranges if b >= top)


def _word_pattern(separating: Ranges, continuing: Ranges) -> re.Pattern[str]:
    """A word (2) in a text ``folded`` returns: the separators it leaves as they are,
    those of the BMP and those past ``TABLE_TOP``, are in the classes (4)."""
    surrogates = (min(SURROGATES), max(SURROGATES))
    ends = _class(_below(separating, ASTRAL)) + _class([surrogates])
    ends += _class(_above(separating, TABLE_TOP))
    return re.compile(f"[^{ends}{_class(continuing)}][^{ends}]*")


def _needs_table(differs: Ranges) -> re.Pattern[str]:
    """A character ``str.lower()`` cannot fold (4): one where it folds otherwise than
    the table, or any beyond the BMP. Under another Unicode version than the table's,
    any beyond ASCII."""
    if unicodedata.unidata_version != table.UNICODE_VERSION:
        return re.compile(r"[^\x00-\x7f]")
    return re.compile(f"[{_class(_below(differs, ASTRAL))}{_class([(ASTRAL, LAST)])}]")


def _translation(separating: Ranges, folding: Runs) -> str:
    """The table ``str.translate`` folds by, as a string indexed by code point: each
    character below ``TABLE_TOP`` as it folds, or a space for a separator beyond the
    BMP (4)."""
    identity = _identity(TABLE_TOP)
    changes = {
        c: " " for a, b in _above(_below(separating, TABLE_TOP), ASTRAL) for c in range(a, b + 1)
    }
    changes.update((c, chr(f)) for c, f in _folds(folding).items())
    pieces: list[str] = []
    at = 0
    for c in sorted(changes):
        pieces += [identity[at:c], changes[c]]
        at = c + 1
    pieces.append(identity[at:])
    return "".join(pieces)


def _identity(size: int) -> str:
    """The code points below ``size`` (a multiple of 0x10000), in order: made as UTF-32
    bytes, a column of bytes at a time in C. A character at a time it took a few
    milliseconds more of every start."""
    units = bytearray(4 * size)
    units[0::4] = bytes(range(0x100)) * (size // 0x100)
    units[1::4] = b"".join(bytes([n]) * 0x100 for n in range(0x100)) * (size // 0x10000)
    units[2::4] = b"".join(bytes([n]) * 0x10000 for n in range(size // 0x10000))
    return units.decode("utf-32-le", "surrogatepass")


WORD = _word_pattern(table.SEPARATING, table.CONTINUING)
_NEEDS_TABLE = _needs_table(table.LOWER_DIFFERS)
_TRANSLATION = _translation(table.SEPARATING, table.FOLDING)


def folded(text: str) -> str:
    """``text`` folded character for character as unicode61 folds words, in which
    ``WORD`` finds the words unicode61 makes of it, where they stand in ``text`` (2, 4)."""
    if text.isascii() or _NEEDS_TABLE.search(text) is None:
        return text.lower()
    return text.translate(_TRANSLATION)


def main() -> None:
    """Ask this process's SQLite, and write unicode61_table.py from its answer."""
    tokenizer = SQLiteTokenizer()
    try:
        rule = measure(tokenizer)
    finally:
        tokenizer.close()
    text = render(rule, sqlite3.sqlite_version, lower_differs(rule), unicodedata.unidata_version)
    path = Path(__file__).with_name("unicode61_table.py")
    path.write_text(text, encoding="utf-8")
    print(f"{path}: SQLite {sqlite3.sqlite_version}", file=sys.stderr)


if __name__ == "__main__":
    main()
