"""``@name`` in a post: how a mention is written, marked in the HTML, and found again.

Rationale:

1. One pattern. A mention is ``@`` and a name of letters, digits, ``_``, ``.`` and
   ``-`` (not ending in ``.`` or ``-``, so "@bob." mentions bob), not right after a
   letter or digit (an address such as ``a@b.org`` mentions nobody). Names with
   other characters (identity.py allows spaces) cannot be mentioned.
2. Marked by the Markdown parser, not by a search in the text: a mention inside a
   code span, a code block or a link's URL is no mention. The parser rule makes a
   ``<mark data-mention="name">`` element; raw HTML is off (markdown.py), so no
   body can make one any other way, and the sanitiser lets only that attribute
   through on it.
3. Found in the HTML. Who a post mentions is read from its stored HTML, the very
   marks readers see highlighted, so what is counted and what is shown never differ:
   when a post is written, for whom to tell, and when mentions are listed or
   counted, so a name edited out of a post is no longer its mention
   (storage/reading.py, on mentions).
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence

from markdown_it import MarkdownIt
from markdown_it.renderer import RendererHTML
from markdown_it.rules_inline import StateInline
from markdown_it.token import Token
from markdown_it.utils import EnvType, OptionsDict

# The most people one post tells it mentions them: each is an event row.
MAX_MENTIONED = 20
NAME = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,78}[A-Za-z0-9_])?")
_BEFORE = re.compile(r"[A-Za-z0-9_@.]")
MARK_TAG = "mark"
MARK_ATTRIBUTE = "data-mention"
# The mark as the sanitiser leaves it: the name is plain text, quoted by html.escape.
MARK_START = f'<{MARK_TAG} {MARK_ATTRIBUTE}="'
MARK_END = '">'
_MARK = re.compile(re.escape(MARK_START) + r'([^"]+)' + re.escape(MARK_END))


def _mention(state: StateInline, silent: bool) -> bool:
    """The markdown-it inline rule (2)."""
    pos = state.pos
    if state.src[pos] != "@":
        return False
    if pos > 0 and _BEFORE.match(state.src[pos - 1]):
        return False
    found = NAME.match(state.src, pos + 1, state.posMax)
    if found is None:
        return False
    if not silent:
        token = state.push("mention", "", 0)
        token.content = found.group()
    state.pos = found.end()
    return True


def _render(
    self: RendererHTML, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType
) -> str:
    name = html.escape(tokens[idx].content)
    return f'<{MARK_TAG} {MARK_ATTRIBUTE}="{name}">@{name}</{MARK_TAG}>'


def enable(parser: MarkdownIt) -> MarkdownIt:
    """``parser`` with mentions marked (2)."""
    parser.inline.ruler.before("emphasis", "mention", _mention)
    parser.add_render_rule("mention", _render)
    return parser


def mentioned(post_html: str) -> list[str]:
    """The names a post's sanitised HTML mentions, each once, in order (3)."""
    if MARK_START not in post_html:  # most posts: a plain search, not the expression's
        return []
    names = (html.unescape(found) for found in _MARK.findall(post_html))
    return list(dict.fromkeys(names))


def mark(name: str) -> str:
    """The start of the mark of ``name`` in a post's HTML, as the parser writes it (2)."""
    return f"{MARK_START}{html.escape(name)}{MARK_END}"


def addressed(post_html: str, author: str) -> list[str]:
    """Who a post tells it mentions them: the names it mentions but its author's, at
    most ``MAX_MENTIONED``."""
    return [name for name in mentioned(post_html) if name != author][:MAX_MENTIONED]
