"""A post's words, as the search index has them, and the live matcher: a body split
once for every live search that looks at it (``Words``), a term of a query found among
its words (``holds``) or counted there (``count``, for relevance: search.py, on
relevance), and what a live search shows of an event (``live``). The query language,
and why a word is what it is, are search.py's (on words).

Rationale:

1. Live searches match the post as the event carries it: as its transaction left it
   when the event goes out live, as it is now when it is read from the log (a replay,
   or a relay catching up), the same rule as every stream's payload (storage/log.py,
   on the current state). An event whose post matches goes out as it is, and so does
   a reply's event whose parent matches: a search shows the thread of a post it
   shows, or that post's reply count would stand still on a kiosk while people
   answered it (the event carries its parent's body with its summary:
   storage/threads.py, on bodies). An edit whose post matches neither way goes out as
   ``post-unmatched`` (the page drops the post if it shows it: whether it matched
   before is not known without reading it again, and need not be); a tombstone goes
   out as it is, since its text is gone; any other event goes nowhere. So after the
   last event of a post, live or replayed, a page shows that post exactly if it
   matches now, whichever way the events came: a replay is exactly the matching
   events after its id, judged by this one function.
2. Cost. Live matching runs on the event loop, once per event per distinct search,
   and anyone may open a search: so a term costs a dictionary lookup (a word), a
   binary search (a prefix) or a lookup and one substring search in C (a phrase, 3),
   never a pass in Python over a long body for each of many searches. The body is
   split once per event for all of them, in C: one pass folds it and one regular
   expression splits it (unicode61.py, on cost).
3. Phrases are found as substrings. A post's words are joined into one string, each
   between gaps no word holds (``joined``), and a phrase is then a substring of it,
   found and counted by ``str``'s own search. Compared word by word at each place its
   first word stands, a long phrase of a common word against a long post of it cost
   tens of milliseconds per search per event, on the event loop. A phrase that
   overlaps itself ("a a" in "a a a") is counted where it stands apart: once there.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from dataclasses import replace
from operator import methodcaller
from typing import TYPE_CHECKING

from feed import unicode61
from feed.models import EventKind
from feed.values import FeedEvent

if TYPE_CHECKING:
    from feed.search import Query, Term


class Words:
    """A body split into words once, for every live search that looks at it: where
    each word stands, and the words in order, so that a term costs a lookup, not a
    pass over the body (2)."""

    __slots__ = ("_joined", "_sorted", "positions", "tokens")

    def __init__(self, body: str) -> None:
        self.tokens = tokenize(body)
        self.positions: dict[str, list[int]] = {}
        for n, token in enumerate(self.tokens):
            self.positions.setdefault(token, []).append(n)
        self._sorted: list[str] | None = None
        self._joined: str | None = None

    @property
    def joined(self) -> str:
        """The words as one string, for phrases (``joined``)."""
        if self._joined is None:
            self._joined = joined(self.tokens)
        return self._joined

    def starting(self, prefix: str) -> bool:
        """Whether a word starts with ``prefix``."""
        if self._sorted is None:
            self._sorted = sorted(self.positions)
        at = bisect.bisect_left(self._sorted, prefix)
        return at < len(self._sorted) and self._sorted[at].startswith(prefix)


def live(
    query: Query,
    event: FeedEvent,
    words: Words | None = None,
    thread: Callable[[], Words] | None = None,
) -> FeedEvent | None:
    """What a live search of ``query`` shows of ``event`` (1): the event itself, a
    ``post-unmatched`` in its place, or nothing. ``words``: the post's body, split;
    ``thread``: a reply's parent's, split when first asked for."""
    post = event.post
    if post is None:
        return None  # channel events are not about matching posts
    if post.deleted:
        return event  # a tombstone: the page drops the post if it shows it
    if query.matches(words if words is not None else post.body):
        return event
    # A reply's event is also shown with the thread of a post the search shows.
    parent = event.thread.body if event.thread is not None and post.parent is not None else None
    if parent is not None and query.matches(thread() if thread is not None else parent):
        return event
    if event.kind in (EventKind.POST_UPDATED, EventKind.REPLY_UPDATED):
        return replace(event, kind=EventKind.POST_UNMATCHED)
    return None


def tokenize(text: str) -> list[str]:
    """The words of ``text`` as SQLite's index makes them (search.py, on words)."""
    return unicode61.WORD.findall(unicode61.folded(text))


def holds(term: Term, body: Words) -> bool:
    """Whether ``body`` holds ``term``, in any of its forms; whether the term is
    negated is the query's to weigh."""
    for words in term.forms:
        if len(words) == 1:
            if body.starting(words[0]) if term.prefix else words[0] in body.positions:
                return True
            continue
        # Every whole word of the phrase must stand somewhere before the body is
        # searched for it: a lookup each, where the substring search reads the whole
        # body (2). Most posts lack one: a lookup or two.
        whole = words[:-1] if term.prefix else words
        if all(word in body.positions for word in whole) and (
            _phrase(words, term.prefix) in body.joined
        ):
            return True
    return False


def count(term: Term, tokens: list[str], words_joined: str | None = None) -> int:
    """How often ``term`` stands in a post of these words (search.py, on relevance);
    ``words_joined``: the same words, ``joined``."""
    found = 0
    for words in term.forms:
        if len(words) > 1:
            words_joined = words_joined or joined(tokens)
            found += words_joined.count(_phrase(words, term.prefix))
        elif term.prefix:
            found += sum(map(methodcaller("startswith", words[0]), tokens))
        else:
            found += tokens.count(words[0])
    return found


# Either side of each word in ``joined``: no word holds it (NUL separates words:
# search.py, on words). Each word has its own, so that phrases standing one after the
# other are counted apart.
_GAP = "\x00"
_BETWEEN = _GAP * 2


def joined(tokens: list[str]) -> str:
    """``tokens`` as one string, each word between gaps, where a phrase is a substring
    (3)."""
    return _GAP + _BETWEEN.join(tokens) + _GAP


def _phrase(words: tuple[str, ...], prefix: bool) -> str:
    """The substring of ``joined`` words that is a term's ``words``: a prefix's last
    word is left open (3)."""
    return _GAP + _BETWEEN.join(words) + ("" if prefix else _GAP)
