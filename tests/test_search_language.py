"""The search language: queries parse into one tree, a bad one is a sentence, and the
live matcher agrees with SQLite's FTS5 on which posts match."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from feed.models import EventKind
from feed.post_words import Words, live, tokenize
from feed.search import QueryError, Term, parse
from feed.search_values import Cursor
from feed.values import FeedEvent, PostView

VOCABULARY = ["lift", "deploy", "deployed", "outage", "the", "café", "e", "mail", "x1"]
# Words whose ends only SQLite's own table knows: a decomposed accent continues a word
# ("cafe" and an acute), and so does an emoji newer than Unicode 6.1 (🥳); one that
# 6.1 knew (🎉) separates.
EDGES = ["cafe", "cafe\u0301", "thanks", "thanks🥳", "🥳", "party🎉"]
# A word str.lower() would split: its dotted capital I becomes two characters, where
# FTS5 keeps it as it is.
UNEVEN = ["İzmir", "İZMİR", "İ"]


def test_a_query_is_words_phrases_prefixes_and_exclusions() -> None:
    query = parse('lift "out of order" depl* -outage -"e-mail"')
    assert query.terms == (
        Term(("lift",)),
        Term(("out", "of", "order")),
        Term(("depl",), prefix=True),
        Term(("outage",), negated=True),
        Term(("e", "mail"), negated=True),
    )
    assert query.text == 'lift "out of order" depl* -outage -"e mail"'
    assert query.fts5() == '("lift" AND "out of order" AND "depl" *) NOT "outage" NOT "e mail"'
    assert query.tsquery() == (
        "'lift' & ('out' <-> 'of' <-> 'order') & 'depl':* & !'outage' & !('e' <-> 'mail')"
    )


def test_phrases_of_plain_words_are_looked_up_by_their_pairs() -> None:
    query = parse('lift "out of order" -"e mail" "out of" lift-ou* "café lift" deploy')
    # The pairs of every phrase that must hold, once each; a prefix's last pair as a
    # prefix; not a phrase left out, nor one of words beyond ASCII letters and digits.
    assert query.pairs() == "'lift ou':* & 'of order' & 'out of'"
    assert parse("lift depl*").pairs() is None
    assert parse('"café lift"').pairs() is None


def test_the_same_query_typed_differently_is_the_same_query() -> None:
    assert parse("  Lift   MAINTENANCE ").text == parse("lift maintenance").text
    assert parse("lift lift").terms == (Term(("lift",)),)


@pytest.mark.parametrize(
    ("text", "sentence"),
    [
        ('lift "broken', "never closed"),
        ("-lift -outage", "not only words to leave out"),
        ("*** ---", "at least one word"),
        ("", "at least one word"),
        ("d*", "at least 2 letters"),
        ("x" * 201, "at most 200 characters"),
        (" ".join(f"w{n}" for n in range(13)), "at most 12 words"),
        # Each prefix reads every post holding any word it begins: a few at most.
        ("wa* wb* wc* wd*", "at most 3 words ending in"),
        ('lift wa* -wb* "c d" wc* wd.ef*', "at most 3 words ending in"),
    ],
)
def test_a_query_the_language_cannot_hold_is_refused_with_a_sentence(
    text: str, sentence: str
) -> None:
    with pytest.raises(QueryError, match=sentence):
        parse(text)


def test_a_query_of_three_prefixes_and_more_words_is_one_the_language_holds() -> None:
    query = parse("wa* -wb* wc* lift lifts lifted")
    assert [t.prefix for t in query.terms] == [True, True, True, False, False, False]


def test_the_matcher_knows_words_phrases_prefixes_and_exclusions() -> None:
    body = "The lift is **out of order** again; deployment at 5."
    assert parse("lift").matches(body)
    assert parse('"out of order"').matches(body)
    assert not parse('"order out"').matches(body)
    assert parse("depl*").matches(body)
    assert not parse("deploy").matches(body)
    assert not parse("lift -again").matches(body)
    assert parse("LIFT -outage").matches(body)
    assert not parse("lift").matches("")


def test_a_snippet_carries_no_markup_from_the_body() -> None:
    body = 'Note <script>alert("lift")</script> <mark>fake</mark> &amp; the lift &lt;b&gt;'
    snippet = parse("lift").snippet(body)
    assert "<script>" not in snippet and "<mark>fake" not in snippet
    assert snippet == (
        "Note &lt;script&gt;alert(&quot;<mark>lift</mark>&quot;)&lt;/script&gt; "
        "&lt;mark&gt;fake&lt;/mark&gt; &amp;amp; the <mark>lift</mark> &amp;lt;b&amp;gt;"
    )


def test_a_snippet_is_a_window_around_the_first_match() -> None:
    body = " ".join(f"w{n}" for n in range(100)) + " lift " + " ".join("z" * 50)
    snippet = parse("lift").snippet(body)
    assert snippet.startswith("…w88 w89 ") and "<mark>lift</mark>" in snippet
    assert snippet.endswith("…")


@pytest.mark.parametrize("text", ["", None])
def test_no_cursor_is_the_first_page(text: str | None) -> None:
    assert Cursor.parse(text) == Cursor()


@pytest.mark.parametrize(
    "text",
    [
        "x",
        "1.",
        "-1",
        "1.0",
        "1.2.3",
        "\u0661",
        "9" * 20,
        "9.3.4." + "0" * 16 + "." + "0" * 15,
        "9.3.4." + "0" * 16 + "." + "0" * 15 + "G",
        "9.3.4." + "0" * 16 + "." + "7ff0000000000000",  # infinite
        "9.3.\u0664." + "0" * 16 + "." + "0" * 16,
    ],
)
def test_a_cursor_no_search_gave_is_refused(text: str) -> None:
    with pytest.raises(QueryError, match="cursor"):
        Cursor.parse(text)


@pytest.mark.parametrize(
    "cursor",
    [Cursor(7), Cursor(9, 0, (4, 0.0), 0.0), Cursor(90, 3, (40, 1.0 / 3), 7.25)],
)
def test_a_cursor_reads_back_exactly_as_it_was_written(cursor: Cursor) -> None:
    assert Cursor.parse(cursor.text) == cursor


@pytest.fixture(scope="module")
def fts() -> Iterator[sqlite3.Connection]:
    db = sqlite3.connect(":memory:")
    db.execute("CREATE VIRTUAL TABLE t USING fts5(body, tokenize='unicode61 remove_diacritics 0')")
    db.execute("CREATE VIRTUAL TABLE t_words USING fts5vocab(t, 'instance')")
    yield db
    db.close()


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(max_size=60))
def test_any_text_is_a_query_or_a_sentence_and_fts5_takes_every_query(
    fts: sqlite3.Connection, text: str
) -> None:
    try:
        query = parse(text)
    except QueryError as exc:
        assert str(exc).endswith((".", "*")) or ":" in str(exc)
        return
    fts.execute("SELECT rowid FROM t WHERE t MATCH ?", (query.fts5(),)).fetchall()
    assert parse(query.text) == query


words = st.sampled_from(VOCABULARY + UNEVEN + EDGES)
# Any character, from every plane alike (st.characters() favours the first ones): most
# of the code space is characters Unicode 6.1 left unassigned.
any_character = st.one_of(
    st.characters(exclude_categories=("Cs",)),
    st.integers(0, 0x10FFFF).filter(lambda c: not 0xD800 <= c < 0xE000).map(chr),
)
term_text = st.one_of(
    words,
    words.map(lambda w: w[:2] + "*"),
    st.lists(words, min_size=2, max_size=3).map(lambda ws: '"' + " ".join(ws) + '"'),
)
query_text = st.lists(
    st.tuples(st.booleans(), term_text).map(lambda t: ("-" if t[0] else "") + t[1]),
    min_size=1,
    max_size=4,
)
body_text = st.lists(
    st.one_of(
        words, st.sampled_from([" ", ", ", "-", "_", "**", "É", "\n", *UNEVEN]), any_character
    ),
    max_size=20,
).map("".join)


@settings(max_examples=400, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(query_text, st.lists(body_text, min_size=1, max_size=6))
def test_the_live_matcher_agrees_with_fts5(
    fts: sqlite3.Connection, terms: list[str], bodies: list[str]
) -> None:
    try:
        query = parse(" ".join(terms))
    except QueryError:
        return
    fts.execute("DELETE FROM t")
    fts.executemany("INSERT INTO t(rowid, body) VALUES (?, ?)", enumerate(bodies, 1))
    found = {n for (n,) in fts.execute("SELECT rowid FROM t WHERE t MATCH ?", (query.fts5(),))}
    assert found == {n for n, body in enumerate(bodies, 1) if query.matches(body)}


@settings(max_examples=400, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.one_of(any_character, words, st.just(" ")), max_size=40).map("".join))
def test_a_text_is_split_and_folded_into_the_words_fts5_makes_of_it(
    fts: sqlite3.Connection, body: str
) -> None:
    fts.execute("DELETE FROM t")
    fts.execute("INSERT INTO t(rowid, body) VALUES (1, ?)", (body,))
    made = [w for (w,) in fts.execute("SELECT term FROM t_words ORDER BY offset")]
    assert tokenize(body) == made


@pytest.mark.parametrize(
    ("body", "asked", "found"),
    [
        ("meet at the cafe\u0301 later", "cafe", False),
        ("meet at the cafe\u0301 later", "cafe\u0301", True),
        ("thanks🥳 everyone", "thanks", False),
        ("thanks🥳 everyone", "thanks🥳", True),
        ("party🎉 time", "party", True),
        ("\u0301 alone", "alone", True),
    ],
)
def test_a_word_ends_where_fts5_ends_it(
    fts: sqlite3.Connection, body: str, asked: str, found: bool
) -> None:
    fts.execute("DELETE FROM t")
    fts.execute("INSERT INTO t(rowid, body) VALUES (1, ?)", (body,))
    query = parse(asked)
    in_fts5 = fts.execute("SELECT rowid FROM t WHERE t MATCH ?", (query.fts5(),)).fetchall()
    assert (in_fts5 == [(1,)], query.matches(body)) == (found, found)


@pytest.mark.parametrize(
    "asked", ["café", "cafe\u0301", "CAFE\u0301", '"the café"', '"THE cafe\u0301"', "café*"]
)
def test_a_word_typed_composed_or_decomposed_finds_both_live_and_in_fts5(
    fts: sqlite3.Connection, asked: str
) -> None:
    bodies = ["meet at the café", "meet at the cafe\u0301", "meet at the cafe", "cafés"]
    fts.execute("DELETE FROM t")
    fts.executemany("INSERT INTO t(rowid, body) VALUES (?, ?)", enumerate(bodies, 1))
    query = parse(asked)
    found = {n for (n,) in fts.execute("SELECT rowid FROM t WHERE t MATCH ?", (query.fts5(),))}
    assert found == {n for n, body in enumerate(bodies, 1) if query.matches(body)}
    assert found == ({1, 2, 4} if query.terms[0].prefix else {1, 2})


def test_a_word_typed_composed_or_decomposed_is_the_same_query() -> None:
    assert parse("cafe\u0301 -Ne\u0301e") == parse("café -née")
    assert parse("cafe\u0301 -Ne\u0301e").text == "café -née"
    # A prefix is a prefix of the word as written: a decomposed café begins "cafe".
    assert parse("cafe*").matches("cafe\u0301") and not parse("cafe*").matches("café")


def test_words_are_letters_and_digits_lowercased() -> None:
    assert tokenize("E-mail_me at Café X1!") == ["e", "mail", "me", "at", "café", "x1"]


def test_words_are_lowercased_a_character_at_a_time_as_the_engines_do(
    fts: sqlite3.Connection,
) -> None:
    assert tokenize("İZMİR to İzmir, Straße") == ["İzmİr", "to", "İzmir", "straße"]
    fts.execute("DELETE FROM t")
    fts.execute("INSERT INTO t(rowid, body) VALUES (1, 'Ferry to İzmir')")
    for text in ("İzmir", "İz*", '"to İzmir"'):
        query = parse(text)
        found = fts.execute("SELECT rowid FROM t WHERE t MATCH ?", (query.fts5(),)).fetchall()
        assert found == [(1,)] and query.matches("Ferry to İzmir"), text


@pytest.mark.parametrize(
    ("kind", "parent"), [(EventKind.POST_UPDATED, None), (EventKind.REPLY_UPDATED, 7)]
)
def test_an_edit_that_stops_matching_is_unmatched_for_posts_and_replies(
    kind: EventKind, parent: int | None
) -> None:
    at = datetime(2026, 11, 30, tzinfo=UTC)
    post = PostView(8, "general", "bo", "nothing here", at, at, False, False, "", parent)
    shown = live(parse("lift"), FeedEvent(9, kind, "general", post))
    assert shown is not None and shown.kind is EventKind.POST_UNMATCHED and shown.id == 9
    created = EventKind.POST_CREATED if parent is None else EventKind.REPLY_CREATED
    assert live(parse("lift"), FeedEvent(9, created, "general", post)) is None


@pytest.mark.parametrize("text", ["0.00*", "ab.cd* lift", '"lift maint" depl*', "-x1.y2* lift"])
def test_a_query_written_out_again_reads_back_the_same(text: str) -> None:
    assert parse(parse(text).text) == parse(text)


def test_relevance_counts_where_each_term_stands_and_weighs_length() -> None:
    query = parse('"lift out" dep* -stairs')
    twice = tokenize("lift out then lift out, deploy")
    once = tokenize("lift out then out lift, deploy")
    longer = tokenize("lift out then out lift, deploy and more words here")
    assert query.relevance(twice, 6) > query.relevance(once, 6) > query.relevance(longer, 6)
    # A prefix counts every word it starts; an exclusion counts for nothing.
    assert parse("dep*").relevance(tokenize("deploy deployed x"), 3) > parse("dep*").relevance(
        tokenize("deploy x x"), 3
    )
    assert parse("lift -stairs").relevance(once, 6) == parse("lift").relevance(once, 6)


def test_a_long_phrase_against_a_long_post_costs_a_substring_search() -> None:
    # Every word but the last stands at each of the post's 5,000 places: word by word,
    # each live search of it held the event loop for tens of milliseconds per post.
    body = "a " * 5000
    phrases = [" ".join(["a"] * 96) + f" b{n}" for n in range(20)]
    queries = [parse(f'"{phrase}"') for phrase in phrases]
    started = time.perf_counter()
    words = Words(body)
    assert not any(query.matches(words) for query in queries)
    tokens = tokenize(body)
    assert all(query.relevance(tokens, 5000) == 0 for query in queries)
    # Word by word this took 1.3 s here; as a substring search, a few milliseconds. The
    # bound sits between the two with room for a busy machine.
    assert time.perf_counter() - started < 0.5
    # Where the phrase does stand, at its end and as a prefix, it is found and counted.
    assert parse(f'"{phrases[0]}"').matches(Words(body + "b0"))
    assert parse("a.a.b0x*").matches(Words(body + "b0xyz"))
    assert not parse("a.a.b0x*").matches(Words("a a xb0xyz b0x a"))
    assert parse('"lift out"').relevance(tokenize("lift out, lift out"), 4) > parse(
        '"lift out"'
    ).relevance(tokenize("lift out, lift in"), 4)
