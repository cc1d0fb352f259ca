"""The search language: a query parsed once into a small tree, and what each engine and
the live matcher make of that tree (a post's words, and what a live search shows of an
event: post_words.py).

A query is a list of terms, all of which must hold:

- ``word``: a post holding the word;
- ``"two words"``: a post holding them one after the other (a phrase);
- ``depl*``: a post holding a word that starts with ``depl`` (a prefix);
- ``-word`` or ``-"two words"``: a post that does *not* hold it.

Rationale:

1. Words are what SQLite's index makes of a text: ``unicode61``, without removing
   diacritics, splits and folds it, and the live matcher (``Query.matches``) splits
   and folds a post's body by the same table, which SQLite itself answered
   (unicode61.py), for every character: so a word matches the same posts live and in
   SQLite's index, and a kiosk that asks for its list again keeps what it showed
   live. A word is a run of the letters, digits and private-use characters of
   Unicode 6.1 and of the characters 6.1 had not assigned, newer emoji among them
   (``thanks🥳`` is one word, ``party🎉`` two); of the combining marks, the accents
   Latin letters take stay in their word (``cafe`` and a combining acute are one
   word) and any other separates. Everything else separates words, so ``e-mail`` is
   the phrase ``"e mail"``. Case is folded a character at a time by 6.1's table: a
   dotted capital I stays as it is, final sigma becomes sigma, and a letter cased
   since 6.1 keeps its case. PostgreSQL indexes with the ``simple`` configuration
   (no stemming, no stop words) and agrees on ordinary words, but its parser differs
   at the edges. It drops what looks like an HTML tag (``<b>``) and also keeps URLs,
   e-mail addresses and hyphenated words whole beside their parts, so a word inside
   a tag is found on SQLite and by live searches, not on PostgreSQL. It drops newer
   emoji, so "thanks" finds ``thanks🥳`` there only; it keeps every combining mark in
   its word, where SQLite splits a Hindi word at its vowel signs; and a private-use
   character separates words there. It lowercases a dotted capital I to "i", in the
   query's words as in the posts', so "İzmir" finds "İzmir" in every store, and
   "izmir" finds it on PostgreSQL only; it lowercases the letters cased since 6.1
   too, and keeps final sigma as it is.
2. No user text reaches an engine's query parser. The FTS5 expression is made of
   double-quoted tokens and the tsquery of single-quoted ones; of ASCII, a token holds
   letters and digits only (1), so it needs no escaping, and the operators come from
   the tree. A query the tree cannot hold (an unclosed quote, nothing but
   exclusions, a prefix of one letter, too many terms) is refused here with a
   sentence, before any engine sees it: a client gets a 400, never an error from
   FTS5 or ``to_tsquery``.
3. A query of nothing but exclusions is refused: it would match almost every post,
   and neither engine can find "every post without a word" through its index.
4. A prefix needs at least ``MIN_PREFIX`` characters: a one-letter prefix expands to
   a large part of the vocabulary in both engines. And a query holds at most
   ``MAX_PREFIXES`` of them: each one reads every post that holds any word it begins,
   whether it is looked for or left out, so a query's cost grows with its prefixes,
   and twelve broad ones (``wa* wb* … wl*``) cost twelve times one (docs/benchmarks.md,
   hostile searches).
5. Snippets are made here, from the post's stored body, for both stores alike: the
   text is HTML-escaped first and the ``<mark>`` tags added after, so no markup a body
   holds (a ``<script>``, a ``<mark>`` of its own, an entity) survives in a snippet.
6. Relevance is weighed here, from the words of the posts a search ranks, on SQLite
   (storage/search.py, on relevance): BM25's shape without its rarity weights. Each
   term's count in the post saturates (``K1``), and a post longer than the mean of
   those ranked with it counts for less (``B``); every term weighs the same. FTS5's
   own ``bm25`` weighs a term by how many posts hold it, and to know that it reads
   every post that matches: all of them for a common word, and for a phrase the
   positions in every post holding its words, whatever window is ranked.
7. Pairs. PostgreSQL keeps an index of the pairs of words that stand together in each
   post (migration 0014_search_pairs), and a phrase that must hold is looked up by its
   pairs there first (storage/search.py, on phrases by their word pairs): ``"a b c"``
   by ``'a b' & 'b c'``, and ``a.b*`` by ``'a b':*``. Only a phrase of ASCII letters
   and digits is: for those, the parser makes each word one lexeme, spelt as typed,
   so a post the phrase matches surely holds its pairs. A phrase of other words is
   checked as before, against every post that holds its words.
8. Composed and decomposed. An accented letter is typed as one character (``é``,
   composed) or as a letter and a combining accent (``e`` and U+0301, decomposed),
   and neither engine takes the two for one word: each indexes a post's words as they
   were typed. A post is kept as it was written, as its source always is: composing
   every body as it comes in would change what people wrote (a CJK compatibility
   ideograph becomes another character), and would leave the posts already stored as
   they are. So the query looks for both: a term whose words change when composed or
   decomposed is looked for in each spelling (``Term.forms``), by the live matcher and
   by both stores alike (``OR`` in FTS5, ``|`` in a tsquery), and a query typed
   either way is the same query, written composed. "café" finds the post that typed
   "cafe" and an accent, live and in the stores, and so does the query typed that
   way. At the edges: a dotted capital I (1) typed decomposed finds only what is
   typed so; a letter whose accents stand among other marks, which separate words
   (1), may split apart when decomposed; a word typed neither wholly composed nor
   wholly decomposed (an accent added to an accented letter, as some keyboards type
   Vietnamese) is found only by a query typed the same way; and a prefix is a prefix
   of the word as written, so "cafe*" finds the decomposed café, not the composed one.
"""

from __future__ import annotations

import itertools
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from html import escape
from typing import Literal

from feed import post_words, unicode61
from feed.post_words import Words, tokenize

MAX_QUERY_CHARS = 200
MAX_TERMS = 12
MIN_PREFIX = 2
MAX_PREFIXES = 3  # (4)
# Words of context on each side of the first match in a snippet.
SNIPPET_WORDS = 12
# BM25's usual constants: how soon a term's count saturates, and how much a post's
# length counts (6).
K1 = 1.2
B = 0.75

# One term of the query's text: an optional "-", then a quoted phrase or a bare word.
_TERM = re.compile(r'\s*(-?)(?:"([^"]*)"|([^\s"]+))')
# A word of a phrase looked up by its pairs on PostgreSQL (7).
_PLAIN = re.compile(r"[a-z0-9]{1,100}")


class QueryError(ValueError):
    """A query the language cannot hold, said as a sentence for the person who typed it."""


@dataclass(frozen=True, slots=True)
class Term:
    """Words that must follow each other (one word: just that word); ``prefix``: the
    last one may be the start of a word; ``negated``: the post must not hold it.
    ``forms``: the words as a post holds them written composed or decomposed, any of
    which the term looks for (8); ``words`` first."""

    words: tuple[str, ...]
    prefix: bool = False
    negated: bool = False
    forms: tuple[tuple[str, ...], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "forms", _forms(self.words))


@dataclass(frozen=True, slots=True)
class Query:
    """A parsed query: every term must hold."""

    terms: tuple[Term, ...]

    @property
    def text(self) -> str:
        """The query written out again, the same for every way of typing it: live
        searches that are the same query share one match per event (events.py)."""
        return " ".join(_written(term) for term in self.terms)

    def fts5(self) -> str:
        """The SQLite FTS5 MATCH expression (2)."""
        wanted = " AND ".join(_fts5_term(t) for t in self.terms if not t.negated)
        unwanted = "".join(f" NOT {_fts5_term(t)}" for t in self.terms if t.negated)
        return f"({wanted}){unwanted}"

    def tsquery(self) -> str:
        """The text of a PostgreSQL ``to_tsquery('simple', …)`` (2)."""
        return " & ".join(_ts_term(term) for term in self.terms)

    def pairs(self) -> str | None:
        """The tsquery text of the word pairs the phrases that must hold are made of, as
        PostgreSQL's index of pairs holds them (7); None if there are none."""
        pairs = [_pair_term(term) for term in self.terms if _paired(term)]
        return " & ".join(sorted(set(itertools.chain(*pairs)))) or None

    def matches(self, body: str | Words) -> bool:
        """Whether a post with this body matches: the live matcher, the engines' rule
        without the engines (1). Give it ``Words`` to split a body once for many
        queries."""
        words = body if isinstance(body, Words) else Words(body)
        if not words.tokens:
            return False
        return all(post_words.holds(term, words) != term.negated for term in self.terms)

    def relevance(self, tokens: list[str], mean_length: float) -> float:
        """How well a post of these words (``tokenize``) matches, higher better, among
        posts of ``mean_length`` words on average (6)."""
        norm = K1 * (1 - B + B * len(tokens) / max(1.0, mean_length))
        phrases = any(len(words) > 1 for term in self.terms for words in term.forms)
        words_joined = post_words.joined(tokens) if phrases else None
        counts = (
            post_words.count(term, tokens, words_joined) for term in self.terms if not term.negated
        )
        return sum(n * (K1 + 1) / (n + norm) for n in counts)

    def snippet(self, body: str) -> str:
        """Safe HTML: a window of ``body`` around the first word the query wanted, that
        word and the others wanted marked (5). The body is folded in one pass in C and
        split only as far as the window's end: a long post's words past it cost no
        more."""
        wants = self._wanted()
        spans: list[tuple[int, int, bool]] = []
        first = -1
        more = False  # words after the window
        # The folded body's words stand where the body's do (unicode61.py).
        for m in unicode61.WORD.finditer(unicode61.folded(body)):
            if first >= 0 and len(spans) > first + SNIPPET_WORDS:
                more = True
                break
            wanted = wants(m.group())
            if wanted and first < 0:
                first = len(spans)
            spans.append((m.start(), m.end(), wanted))
        if not spans:
            return ""
        first = max(first, 0)
        lo, hi = max(0, first - SNIPPET_WORDS), min(len(spans), first + SNIPPET_WORDS + 1)
        more = more or hi < len(spans)
        # The whole text at an end that is not cut.
        start = spans[lo][0] if lo > 0 else 0
        end = spans[hi - 1][1] if more else len(body)
        parts = ["…" if lo > 0 else ""]
        cursor = start
        for s, e, wanted in spans[lo:hi]:
            if wanted:
                parts += [escape(body[cursor:s]), "<mark>", escape(body[s:e]), "</mark>"]
                cursor = e
        parts.append(escape(body[cursor:end]))
        parts.append("…" if more else "")
        return " ".join("".join(parts).split())

    def _wanted(self) -> Callable[[str], bool]:
        """Whether a word is one the query looks for: a word of a term, or one that
        begins as a prefix term does (one call of ``startswith`` for all of them)."""
        looked_for = [t for t in self.terms if not t.negated]
        exact = frozenset(w for t in looked_for for words in t.forms for w in words)
        prefixes = tuple(words[-1] for t in looked_for if t.prefix for words in t.forms)
        if not prefixes:
            return exact.__contains__
        return lambda token: token in exact or token.startswith(prefixes)


def parse(text: str) -> Query:
    """The query ``text`` as a tree; ``QueryError`` with a sentence if it cannot be one."""
    if len(text) > MAX_QUERY_CHARS:
        raise QueryError(f"A search may be at most {MAX_QUERY_CHARS} characters long.")
    if text.count('"') % 2:
        raise QueryError('A search has a quote (") that is never closed.')
    terms: list[Term] = []
    for found in _TERM.finditer(text):
        negated = found.group(1) == "-"
        phrase, bare = found.group(2), found.group(3)
        term = _term(phrase, bare, negated)
        if term is not None and term not in terms:
            terms.append(term)
    if not terms:
        raise QueryError("A search needs at least one word of letters or digits.")
    if all(term.negated for term in terms):
        raise QueryError(
            "A search needs at least one word to look for, not only words to leave out."
        )
    if len(terms) > MAX_TERMS:
        raise QueryError(f"A search may have at most {MAX_TERMS} words or phrases.")
    if sum(term.prefix for term in terms) > MAX_PREFIXES:
        raise QueryError(f"A search may have at most {MAX_PREFIXES} words ending in *.")
    return Query(tuple(terms))


def _term(phrase: str | None, bare: str | None, negated: bool) -> Term | None:
    if phrase is not None:
        words = _typed(phrase)
        return Term(words, False, negated) if words else None
    assert bare is not None
    prefix = bare.endswith("*")
    words = _typed(bare)
    if not words:
        return None
    if prefix and len(words[-1]) < MIN_PREFIX:
        raise QueryError(
            f"A word ending in * needs at least {MIN_PREFIX} letters before the *: {bare}"
        )
    return Term(words, prefix, negated)


def _typed(text: str) -> tuple[str, ...]:
    """The words of a term's text; composed, if that is the same term (8)."""
    words = tuple(tokenize(text))
    if text.isascii():
        return words
    composed = _spelt(words, "NFC")
    if composed == words or _spelt(composed, "NFC") != composed:
        return words  # already so, or composing it again would change it
    return composed if set(_forms(composed)) == set(_forms(words)) else words


def _forms(words: tuple[str, ...]) -> tuple[tuple[str, ...], ...]:
    """``words``, then the words a post holds that writes them composed, and decomposed,
    where those differ (8)."""
    if all(word.isascii() for word in words):
        return (words,)
    forms = [words]
    for spelt in (_spelt(words, "NFC"), _spelt(words, "NFD")):
        if spelt and spelt not in forms:
            forms.append(spelt)
    return tuple(forms)


def _spelt(words: tuple[str, ...], form: Literal["NFC", "NFD"]) -> tuple[str, ...]:
    return tuple(tokenize(unicodedata.normalize(form, " ".join(words))))


def _written(term: Term) -> str:
    if term.prefix:
        # A quoted phrase takes no *: words joined by a dot, as typed in ``0.00*``,
        # read back as the same words with the last one a prefix.
        words = ".".join(term.words) + "*"
    elif len(term.words) > 1:
        words = '"' + " ".join(term.words) + '"'
    else:
        words = term.words[0]
    return ("-" if term.negated else "") + words


def _fts5_term(term: Term) -> str:
    # One double-quoted string per form: FTS5 reads it as a phrase of its tokens (2).
    star = " *" if term.prefix else ""
    phrases = [f'"{" ".join(words)}"{star}' for words in term.forms]
    return phrases[0] if len(phrases) == 1 else f"({' OR '.join(phrases)})"


def _ts_term(term: Term) -> str:
    phrases = [_ts_phrase(words, term.prefix) for words in term.forms]
    either = phrases[0] if len(phrases) == 1 else f"({' | '.join(phrases)})"
    return f"!{either}" if term.negated else either


def _ts_phrase(words: tuple[str, ...], prefix: bool) -> str:
    pieces = [f"'{word}'" for word in words]
    if prefix:
        pieces[-1] += ":*"
    joined = " <-> ".join(pieces)
    return f"({joined})" if len(pieces) > 1 else joined


def _paired(term: Term) -> bool:
    # Words PostgreSQL's parser is sure to keep as they are, one token each (7).
    return (
        len(term.words) > 1
        and not term.negated
        and all(_PLAIN.fullmatch(word) for word in term.words)
    )


def _pair_term(term: Term) -> list[str]:
    words = term.words
    pairs = [f"'{a} {b}'" for a, b in itertools.pairwise(words)]
    if term.prefix:
        pairs[-1] += ":*"
    return pairs
