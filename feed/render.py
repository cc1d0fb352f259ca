"""Turning posts and events into what readers see: HTML, JSON and text.

Pages and streams render a post through the same partial (``partials/post.html``),
so a post delivered live looks exactly like one rendered with the page. Every page
and partial is rendered here, the one way (``Renderer.page``, ``Renderer.template``).

HTML stream payloads are built for htmx's sse extension and one ``sse-swap`` on
the page's post list (``hx-swap="afterbegin"``):

- a new post is plain markup, inserted at the top of the list;
- an edit, pin or unpin is the post marked ``hx-swap-oob="outerHTML"``, which
  replaces the element with the same id wherever it is and inserts nothing;
- a deleted post, or one a live search no longer matches (``post-unmatched``), is an
  empty element marked ``hx-swap-oob="delete"``;
- a reply's event is the reply (``partials/reply.html``, marked with its parent, or
  its tombstone) for a thread open on the page, followed by its parent's reply
  summary marked ``hx-swap-oob="outerHTML"``, so a list of cards shows counts, not
  replies (storage/threads.py, on summaries).
- a post's reactions are its chips (``partials/reactions.html``) marked
  ``hx-swap-oob="outerHTML"``: counts and first names, the same for every reader.

Payloads always show a post's *current* state (storage/log.py, on the current state),
so replaying an old ``post-created`` for a post deleted since removes it instead of
showing it.

Bodies are hostile input. Rationale:

1. A post's HTML is made from its Markdown once, when it is written, and sanitised
   then (markdown.py); nothing here renders Markdown, so no reader's page, replay
   or stream waits for it.
2. Templates autoescape everything else a post carries (author, channel, times).
3. The same cleaned HTML goes to pages, HTML streams and the ``html`` field of
   JSON posts, so a script consuming JSON need not sanitise again.
4. The text rendering is for terminals (``curl -N``): control characters are
   removed and bidirectional ones shown escaped, and JSON events escape them all
   instead (terminal_text.py).
5. Personal events (a read position, a mention: storage/reading.py) are rendered once
   each, like any event, for the one identity they are addressed to (events.py, on
   personal events). On HTML streams they are a small element of data attributes
   and the text line, autoescaped, which feed-unread.js reads; no list swaps them in.
6. Reactions are the same bytes for every reader. Which chips are the reader's own
   is not in them: pages render it for their reader, and feed-reactions.js keeps it
   after each swap (storage/reactions.py, on who changed what). A ``post-reactions``
   event carries only the post's id, channel and reactions in JSON, never its body
   again.
7. The encode cache finds an event by its id and format, and serves what it kept
   only for an equal event (the post in the same state): hashing a whole event, its
   post's text included, twice for every new one was most of what the cache cost.
   An event seen in another state (an old ``post-created`` replayed after an edit)
   replaces the entry. Live delivery (``frames``) encodes without the cache: a
   committed event is new, so looking it up never found it, and keeping it, once the
   cache was full and each new entry pushed an old one out, cost over half as much
   again as encoding it. The first replay of an event encodes it for the cache, and
   the replays after that share what it kept.
"""

from __future__ import annotations

import sys
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jinja2
from markupsafe import Markup
from starlette.responses import HTMLResponse

from feed.models import EventKind
from feed.reaction_set import DEFAULT_REACTIONS
from feed.shapes import (
    channel_json,
    event_dumps,
    isotime,
    json_event,
    post_json,
    reactions_json,
    thread_json,
)
from feed.sse import Format, frame
from feed.terminal_text import one_line, reactions_sentence
from feed.values import FeedEvent, PostView, ReactionCount, Thread

PACKAGE_DIR = Path(__file__).resolve().parent
# What a re-fetched list or thread reflects: the newest event id of its snapshot. Pages
# send it, feed-refetch.js reads it.
SNAPSHOT_HEADER = "X-Feed-Last-Event-Id"
# Encoded events kept for replays and for streams of several formats, bounded in bytes
# (what the entries hold, the post's text included), not in entries: 2,048 entries of
# posts at the length limit came to over 100 MiB.
ENCODE_CACHE_BYTES = 32 * 1024 * 1024


def templates_dir() -> Path:
    """Templates ship inside the wheel; a source checkout keeps them at the top level."""
    packaged = PACKAGE_DIR / "templates"
    return packaged if packaged.is_dir() else PACKAGE_DIR.parent / "templates"


def stored_html(post: PostView) -> Markup:
    """A post's HTML, sanitised when it was written (markdown.py): shown as it is."""
    return Markup(post.html)


def shorttime(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def page_url(path: str, **params: Any) -> str:
    """``path`` with a query; a list value repeats its parameter, ``None`` omits it."""
    pairs = [
        (k, x)
        for k, v in params.items()
        for x in (v if isinstance(v, list) else [v])
        if x is not None
    ]
    return f"{path}?{urlencode(pairs)}" if pairs else path


def post_link(post: PostView) -> str:
    """The page that shows ``post`` where it stands: a reply in its thread, a post in
    its channel."""
    if post.parent is not None:
        return f"/posts/{post.parent}#post-{post.id}"
    return f"/channels/{post.channel}#post-{post.id}"


def make_environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(templates_dir()),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["stored_html"] = stored_html
    env.filters["isotime"] = isotime
    env.filters["shorttime"] = shorttime
    env.filters["post_link"] = post_link
    return env


def who_reacted(count: ReactionCount) -> str:
    """ "ada, bo and 12 others": the first names, and how many more."""
    if count.count == 0:
        return "Nobody yet"
    names = list(count.names)
    others = count.count - len(names)
    if others > 0:
        return f"{', '.join(names)} and {others} other{'' if others == 1 else 's'}"
    if len(names) == 1:
        return names[0]
    return f"{', '.join(names[:-1])} and {names[-1]}"


def _channel_text(event: FeedEvent) -> str:
    channel = event.channel_view
    assert channel is not None
    match event.kind:
        case EventKind.CHANNEL_CREATED:
            return f"#{channel.name} was created: {one_line(channel.title)}"
        case EventKind.CHANNEL_UPDATED:
            return f"#{channel.name} is now titled: {one_line(channel.title)}"
        case EventKind.CHANNEL_ARCHIVED:
            return f"#{channel.name} was archived"
        case _:
            return f"#{channel.name} was restored"


def _reply_text(event: FeedEvent, reply: PostView, where: str, author: str) -> str:
    """A live reply's created or edited line."""
    to = f"post {reply.parent}"
    line = one_line(reply.body)
    if event.kind is EventKind.REPLY_UPDATED:
        at = shorttime(reply.edited_at or reply.created_at)
        return f"{at} {where} ↳ {author} edited reply {reply.id} to {to}: {line}"
    return f"{shorttime(reply.created_at)} {where} ↳ {author} replied to {to}: {line}"


def _reactions_text(event: FeedEvent, post: PostView) -> str:
    changes = [(c.name, c.reaction, c.reacted) for c in event.changes]
    counts = [(r.reaction, r.count) for r in post.reactions]
    return reactions_sentence(post.id, changes, event.more, counts, post.parent)


class Recent:
    """``encode(event, fmt)``, remembering its most recent answers up to ``most``
    bytes, least recently used first out (7)."""

    def __init__(self, encode: Callable[[FeedEvent, Format], bytes], most: int) -> None:
        self._encode = encode
        self.most = most
        self.size = 0
        # (event id, format) -> (the event as encoded, its bytes, their cost).
        self._kept: OrderedDict[tuple[int, Format], tuple[FeedEvent, bytes, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._kept)

    def __call__(self, event: FeedEvent, fmt: Format) -> bytes:
        key = (event.id, fmt)
        found = self._kept.get(key)
        if found is not None:
            if found[0] == event:
                self._kept.move_to_end(key)
                return found[1]
            self.size -= found[2]  # the same event in another state: replaced
        data = self._encode(event, fmt)
        # The key keeps the post's text alive as well (its memory, not its length: a
        # character can take four bytes).
        cost = len(data) + sum(map(sys.getsizeof, event.texts))
        self._kept[key] = (event, data, cost)
        self._kept.move_to_end(key)
        self.size += cost
        while self.size > self.most and self._kept:
            _, (_, _, freed) = self._kept.popitem(last=False)
            self.size -= freed
        return data


class Renderer:
    """Renders posts for pages and events for streams."""

    def __init__(
        self,
        env: jinja2.Environment | None = None,
        reactions: Iterable[str] = DEFAULT_REACTIONS.split(),
    ) -> None:
        self.env = env or make_environment()
        self.reaction_set = tuple(reactions)
        self.env.globals["chips"] = self.chips
        self._post = self.env.get_template("partials/post.html")
        self._reactions = self.env.get_template("partials/reactions.html")
        self._channel_event = self.env.get_template("partials/channel_event.html")
        self._personal = self.env.get_template("partials/personal_event.html")
        self._reply = self.env.get_template("partials/reply.html")
        self._summary = self.env.get_template("partials/reply_summary.html")
        # Clients that reconnect together (after a deploy, a network blip) replay the
        # same recent events; each is rendered once. An entry serves only an equal
        # event, post state included, so an edit is never served from a stale entry (7).
        self.encode = Recent(self._encode, ENCODE_CACHE_BYTES)

    def template(self, name: str, /, **context: Any) -> str:
        """The template ``name`` (a page or a partial), rendered with ``context``."""
        return self.env.get_template(name).render(**context)

    def page(
        self,
        name: str,
        /,
        status: int = 200,
        headers: Mapping[str, str] | None = None,
        **context: Any,
    ) -> HTMLResponse:
        """The template ``name`` as an HTML answer: every page and partial is served so."""
        return HTMLResponse(self.template(name, **context), status_code=status, headers=headers)

    def post_html(self, post: PostView, *, oob: bool = False) -> str:
        return self._post.render(post=post, oob=oob)

    def chips(self, post: PostView) -> list[tuple[ReactionCount, str]]:
        """A post's chips: every reaction of the set, in order, counted or not, then any
        others it still has; each with who reacted, in words."""
        given = {r.reaction: r for r in post.reactions}
        shown = [given.get(r, ReactionCount(r, 0, ())) for r in self.reaction_set]
        shown += [r for r in post.reactions if r.reaction not in self.reaction_set]
        return [(r, who_reacted(r)) for r in shown]

    def reactions_html(self, event: FeedEvent) -> str:
        """A ``post-reactions`` event: the post's chips, swapped in where they are."""
        assert event.post is not None
        changes = [[c.name, c.reaction, c.reacted] for c in event.changes]
        return self._reactions.render(post=event.post, swap=True, changes=changes)

    def event_data(self, event: FeedEvent, fmt: Format) -> str:
        if fmt is Format.JSON:
            return self.event_json(event)
        if fmt is Format.TEXT:
            return self.event_text(event)
        return self.event_html(event)

    def event_json(self, event: FeedEvent) -> str:
        # A StrEnum is its own value, as JSON and as text: no ``.value`` to call.
        body: dict[str, Any] = {"id": event.id, "type": event.kind}
        post = event.post
        if event.kind is EventKind.READ_POSITION:
            body |= {"channel": event.channel, "up_to": event.read_up_to}
        elif event.kind is EventKind.POST_UNMATCHED:
            # Which post to drop; its text is no business of a search it left.
            assert post is not None
            body["post"] = {"id": post.id, "channel": post.channel}
        elif post is not None and event.kind is EventKind.POST_REACTIONS and not post.deleted:
            # Only what changed: a storm of these must not carry the body each time (6).
            body["post"] = {
                "id": post.id,
                "channel": post.channel,
                "reactions": reactions_json(post.reactions),
            }
            body["changes"] = [
                {"name": c.name, "reaction": c.reaction, "reacted": c.reacted}
                for c in event.changes
            ]
            body["more"] = event.more
        elif post is not None:
            body["post"] = post_json(post)
            if event.thread is not None:
                body["thread"] = thread_json(event.thread)
        else:
            assert event.channel_view is not None
            body["channel"] = channel_json(event.channel_view)
        return json_event(event_dumps(body))

    def event_html(self, event: FeedEvent) -> str:
        post = event.post
        if event.kind.is_personal:
            # Read by feed-unread.js, never swapped into the page (rationale 5).
            return self._personal.render(event=event, text=self.event_text(event))
        if post is None:
            # Pages do not swap channel changes in; this line is for pages that list them.
            return self._channel_event.render(event=event, text=self.event_text(event))
        if event.kind is EventKind.POST_REACTIONS and not post.deleted:
            return self.reactions_html(event)  # a reply's chips too: never its body again
        if post.parent is not None and event.kind is not EventKind.POST_UNMATCHED:
            return self._reply_html(event, post)
        if post.deleted or event.kind is EventKind.POST_UNMATCHED:
            return f'<div id="post-{post.id}" hx-swap-oob="delete"></div>'
        return self.post_html(post, oob=event.kind is not EventKind.POST_CREATED)

    def _reply_html(self, event: FeedEvent, reply: PostView) -> str:
        """The reply, or its tombstone, then its parent's summary out of band."""
        if reply.deleted:
            marks = f'data-parent="{reply.parent}" hx-swap-oob="delete"'
            own = f'<div id="post-{reply.id}" {marks}></div>'
        else:
            own = self._reply.render(post=reply, oob=event.kind is not EventKind.REPLY_CREATED)
        thread = event.thread or Thread(reply.parent or 0, 0, ())
        return own + self._summary.render(thread=thread, summary_oob=True)

    def event_text(self, event: FeedEvent) -> str:
        post = event.post
        if event.kind is EventKind.READ_POSITION:
            return f"#{event.channel} read up to event {event.read_up_to}"
        if post is None:
            return _channel_text(event)
        where = f"#{post.channel}"
        author = one_line(post.author)
        reply = post.parent is not None
        subject = (
            f"reply {post.id} by {author} to post {post.parent}"
            if reply
            else f"post {post.id} by {author}"
        )
        if post.deleted:
            return f"{where} {subject} was deleted"
        if event.kind is EventKind.POST_UNMATCHED:
            return f"{where} {subject} no longer matches"
        line = one_line(post.body)
        if event.kind is EventKind.MENTION:
            place = f" in a reply to post {post.parent}" if reply else ""
            return f"{shorttime(post.created_at)} {where} {author} mentioned you{place}: {line}"
        if event.kind is EventKind.POST_REACTIONS:
            return f"{where} {_reactions_text(event, post)}"
        if reply:
            return _reply_text(event, post, where, author)
        match event.kind:
            case EventKind.POST_CREATED:
                return f"{shorttime(post.created_at)} {where} {author}: {line}"
            case EventKind.POST_UPDATED:
                at = shorttime(post.edited_at or post.created_at)
                return f"{at} {where} {author} edited post {post.id}: {line}"
            case EventKind.POST_PINNED:
                return f"{where} pinned post {post.id} by {author}: {line}"
            case _:
                return f"{where} unpinned post {post.id} by {author}: {line}"

    def _encode(self, event: FeedEvent, fmt: Format) -> bytes:
        return frame(self.event_data(event, fmt), event=event.kind, id=event.id)

    def frames(self, event: FeedEvent, formats: Iterable[Format]) -> dict[Format, bytes]:
        """The event encoded once for each format in ``formats``, as it is delivered
        live: not kept for replays (7)."""
        encode = self._encode
        return {fmt: encode(event, fmt) for fmt in formats}
