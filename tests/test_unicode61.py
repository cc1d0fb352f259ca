"""SQLite's unicode61 tokenizer, as the table keeps it: the SQLite this process links
still answers so for every code point, the live matcher splits and folds as it says,
and str.lower() stands in for the table only where the two agree."""

from __future__ import annotations

import sqlite3
import string
import unicodedata
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from feed import unicode61
from feed import unicode61_table as table
from feed.post_words import tokenize

MIGRATION = Path(unicode61.__file__).parent / "migrations" / "versions" / "0010_search.py"
REGENERATE = "the table is out of date: run python -m feed.unicode61"


class LiveMatcher:
    """The live matcher, asked as SQLite is."""

    def words(self, rows: Sequence[str]) -> list[list[str]]:
        return [tokenize(row) for row in rows]

    def holding(self, rows: Sequence[str], word: str) -> set[int]:
        return {n for n, row in enumerate(rows) if word in tokenize(row)}


@pytest.fixture(scope="module")
def sqlite() -> Iterator[unicode61.SQLiteTokenizer]:
    tokenizer = unicode61.SQLiteTokenizer()
    yield tokenizer
    tokenizer.close()


def test_this_sqlite_splits_and_folds_every_code_point_as_the_table_says(
    sqlite: unicode61.SQLiteTokenizer,
) -> None:
    answer = unicode61.measure(sqlite)
    assert answer == unicode61.recorded(), (
        f"SQLite {sqlite3.sqlite_version} answers otherwise than SQLite "
        f"{table.SQLITE_VERSION} did: {REGENERATE}"
    )


def test_the_live_matcher_splits_and_folds_every_code_point_as_the_table_says() -> None:
    assert unicode61.measure(LiveMatcher()) == unicode61.recorded()


def test_str_lower_differs_from_the_table_exactly_where_the_table_says() -> None:
    assert unicodedata.unidata_version == table.UNICODE_VERSION, REGENERATE
    assert unicode61.lower_differs(unicode61.recorded()) == table.LOWER_DIFFERS, REGENERATE


def test_the_table_is_for_the_tokenizer_the_index_is_made_with() -> None:
    assert f"tokenize='{unicode61.TOKENIZER}'" in MIGRATION.read_text()


def test_of_ascii_only_letters_and_digits_are_words_and_fold_to_lowercase() -> None:
    # A word holds no quote nor any operator of FTS5 or tsquery (search.py, on no user
    # text reaching an engine's query parser).
    assert tokenize(string.printable) == [string.digits + string.ascii_lowercase * 2]
    assert tokenize("".join(chr(c) for c in range(0x80) if not chr(c).isalnum())) == []


def test_the_tables_file_is_what_it_renders() -> None:
    rule = unicode61.recorded()
    text = unicode61.render(rule, table.SQLITE_VERSION, table.LOWER_DIFFERS, table.UNICODE_VERSION)
    assert Path(table.__file__).read_text() == text


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("meet at the cafe\u0301 later", ["meet", "at", "the", "cafe\u0301", "later"]),
        ("\u0301alone, not\u0305 a mark", ["alone", "not", "a", "mark"]),
        ("thanks🥳 everyone", ["thanks🥳", "everyone"]),
        ("party🎉time 👍🏽", ["party", "time", "🏽"]),
        ("ΣΟΦΙΑΣ σοφίας", ["σοφιασ", "σοφίασ"]),
        ("İZMİR \u13a0 µ", ["İzmİr", "\u13a0", "μ"]),  # Cherokee A: cased since 6.1
        ("हैलो", ["ह", "ल"]),
    ],
)
def test_words_end_and_fold_where_sqlite_says(
    sqlite: unicode61.SQLiteTokenizer, text: str, words: list[str]
) -> None:
    assert tokenize(text) == sqlite.words([text])[0] == words
