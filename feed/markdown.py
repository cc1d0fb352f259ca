"""A post's body, in Markdown, as the sanitised HTML every reader is shown.

Bodies are hostile input. Rationale:

1. Markdown is rendered with raw HTML off (markdown-it shows it as text), and the
   result is then cleaned by nh3 against an allow-list of the tags and attributes
   markdown itself produces. Either layer alone would do today; the second one
   keeps a future markdown plugin or option from opening a hole. No ``id``,
   ``class``, ``style``, ``on*`` or ``hx-*`` attribute survives: an ``id`` could
   clobber a post's element for htmx's out-of-band swaps, and ``hx-*`` attributes
   would make htmx fetch things on a reader's behalf.
2. Links and images keep only http(s) and mailto URLs (and relative ones); every
   link gets ``rel="noopener noreferrer"``.
3. A body is rendered once, when it is written, in the store's worker thread, and
   the HTML is stored with the post (storage/posts.py). Rendering is pure Python and costs
   more than anything else done with a post (docs/benchmarks.md): done on the event
   loop, for every reader of a replay or a page, one hostile body held up every
   stream's delivery. Readers never render Markdown.
4. Because the stored HTML is what readers get, a change to the allow-list (1, 2)
   must come with a migration that renders ``posts.html`` again, as the one that
   added the column did for the posts before it. A post with no HTML at all is
   rendered when it is read, in the reading thread, as a fallback.
5. Rendering is still work a writer can make expensive: markdown-it looks for the end
   of every link and image, so a body of nothing but ``![`` cost ten times what other
   bodies of its length did. A body with more than ``MAX_BRACKETS`` opening brackets
   (a post of 256 links is no post) is rendered with links and images off, its
   brackets shown as they are.
6. A body of plain words (``plain``: letters, digits, spaces and ``, ; : . ? ! '``,
   starting with a letter, on one line, not ending in a space) is one paragraph of
   text to markdown-it, which nh3 leaves as it is: it is written as that paragraph
   without either. Nothing in it could start a list, a heading, a link, an entity, a
   mention or a tag, and a test holds the shortcut to the parser's output for such
   bodies. Scripts' posts (alerts, build lines, batches of them) are mostly this, and
   the parser was the largest part of writing a batch of them.
"""

from __future__ import annotations

import re

import nh3
from markdown_it import MarkdownIt

from feed import mentions

# Raw HTML in a post is shown as text, never interpreted; markdown-it also refuses
# javascript:, vbscript: and data: link targets.
_OPTIONS = {"html": False, "linkify": False, "typographer": False}
_markdown = mentions.enable(MarkdownIt("commonmark", _OPTIONS))
# Rationale 5: more brackets than any post of links needs, and links and images are
# read as text.
MAX_BRACKETS = 256
# Bodies longer than this are rendered on their own (storage/posts.py, on rendering
# at write time): below it, the slowest bodies cost little more than a thread hop would.
RENDER_APART = 1000
_without_links = mentions.enable(MarkdownIt("commonmark", _OPTIONS).disable(["link", "image"]))

# What CommonMark produces, and the attributes it needs; nothing else survives.
_ALLOWED_TAGS = {
    *("p", "br", "hr", "em", "strong", "code", "pre", "blockquote"),
    *("ul", "ol", "li", "a", "img", *(f"h{n}" for n in range(1, 7))),
    mentions.MARK_TAG,  # a mention (mentions.py); raw HTML is off, so only ours
}
_ALLOWED_ATTRIBUTES = {
    "a": {"href", "title"},
    "img": {"src", "alt", "title"},
    "ol": {"start"},
    mentions.MARK_TAG: {mentions.MARK_ATTRIBUTE},
}
_cleaner = nh3.Cleaner(
    tags=_ALLOWED_TAGS,
    attributes=_ALLOWED_ATTRIBUTES,
    url_schemes={"http", "https", "mailto"},
    link_rel="noopener noreferrer",
    strip_comments=True,
)


# Rationale 6: a body of these alone is a paragraph of plain text.
_PLAIN = re.compile(r"[A-Za-z][A-Za-z0-9 ,;:.?!']*")


def plain(source: str) -> bool:
    """Whether ``source`` is plain words that render as one paragraph as they are (6)."""
    return _PLAIN.fullmatch(source) is not None and not source.endswith(" ")


def to_html(source: str) -> str:
    """``source`` as sanitised HTML (rationale 1, 2); call it off the event loop (3)."""
    if plain(source):
        return f"<p>{source}</p>\n"
    return render(source)


def render(source: str) -> str:
    """``to_html`` through the parser and the sanitiser, whatever ``source`` is."""
    if not source:
        return ""
    parser = _markdown if source.count("[") <= MAX_BRACKETS else _without_links
    return str(_cleaner.clean(parser.render(source)))
