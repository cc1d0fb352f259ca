"""Which reactions a feed offers: the default set, and the rules a set must meet to
be offered (``FEED_REACTIONS``, settings.py). A reaction is a path segment of the
API (``/api/posts/{id}/reactions/{reaction}``), so it holds no character that
would end or escape one."""

from __future__ import annotations

DEFAULT_REACTIONS = "\U0001f44d \u2764\ufe0f \U0001f389 \U0001f604 \U0001f62e \U0001f440"
MAX_REACTIONS = 20
MAX_REACTION_CHARS = 16  # code points: an emoji with modifiers and joiners takes several
REACTION_SET_WORDS = (
    f"1 to {MAX_REACTIONS} different reactions separated by spaces, each 1 to "
    f"{MAX_REACTION_CHARS} characters without controls or punctuation of paths (/ ? # % \\)"
)


def _is_reaction(word: str) -> bool:
    return (
        0 < len(word) <= MAX_REACTION_CHARS
        and word.isprintable()
        and not any(c in "/?#%\\" for c in word)
        and not any(0xD800 <= ord(c) < 0xE000 for c in word)
    )


def is_reaction_set(value: str) -> bool:
    """Whether ``value`` is a set of reactions feed can offer."""
    words = value.split()
    return (
        0 < len(words) <= MAX_REACTIONS
        and len(set(words)) == len(words)
        and all(_is_reaction(w) for w in words)
    )
