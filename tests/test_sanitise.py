"""Hostile post bodies: a corpus of XSS vectors (tests/data/xss-vectors.jsonl) goes
through the API and comes out inert in the page, the HTML stream and the JSON
stream's ``html`` field; terminal escapes never reach the text stream."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from feed.markdown import to_html as markdown
from tests.conftest import Server
from tests.legacy import stored_posts
from tests.sse import SSEClient

VECTORS = [
    json.loads(line)
    for line in (Path(__file__).parent / "data" / "xss-vectors.jsonl").read_text().splitlines()
    if line.strip()
]
EXECUTABLE_TAGS = {
    *("script", "iframe", "frame", "frameset", "object", "embed", "applet", "style", "link"),
    *("meta", "base", "form", "input", "button", "textarea", "svg", "math", "template"),
    *("video", "audio", "source", "marquee", "details", "noscript"),
}
# What a body may contain at all: the tags markdown makes, and their few attributes.
BODY_TAGS = {
    *("p", "br", "hr", "em", "strong", "code", "pre", "blockquote", "ul", "ol", "li"),
    *("a", "img", "h1", "h2", "h3", "h4", "h5", "h6"),
    "mark",  # a mention (feed/mentions.py)
}
BODY_ATTRIBUTES = {"href", "title", "rel", "src", "alt", "start"}
# Attributes allowed on one tag only.
TAG_ATTRIBUTES = {("mark", "data-mention")}
BAD_SCHEMES = ("javascript:", "vbscript:", "data:")
URL = "/api/channels/general/posts"
TERMINAL_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


class BodyChecker(HTMLParser):
    """Collects what is wrong with the post bodies (``div.body``) in a document.

    ``whole=True`` treats the whole input as one body (a bare fragment)."""

    def __init__(self, whole: bool = False) -> None:
        super().__init__(convert_charrefs=True)
        self.depth = 1 if whole else 0  # >0 while inside a body
        self.bodies = 1 if whole else 0
        self.problems: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = dict(attrs)
        if self.depth:
            self._check(tag, names)
            if tag not in ("br", "hr", "img"):
                self.depth += 1
        elif tag == "div" and names.get("class") == "body":
            self.depth, self.bodies = 1, self.bodies + 1

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.depth:
            self._check(tag, dict(attrs))

    def handle_endtag(self, tag: str) -> None:
        if self.depth and tag not in ("br", "hr", "img"):
            self.depth -= 1

    def _check(self, tag: str, attrs: dict[str, str | None]) -> None:
        if tag in EXECUTABLE_TAGS or tag not in BODY_TAGS:
            self.problems.append(f"element <{tag}>")
        for name, value in attrs.items():
            if name.startswith("on") or (
                name not in BODY_ATTRIBUTES and (tag, name) not in TAG_ATTRIBUTES
            ):
                self.problems.append(f"attribute {name}={value!r} on <{tag}>")
            if name in ("href", "src") and _scheme_is_bad(value or ""):
                self.problems.append(f"{name}={value!r} on <{tag}>")
        if tag == "a" and attrs.get("rel") != "noopener noreferrer":
            self.problems.append(f"link without rel=noopener noreferrer: {attrs}")


def _scheme_is_bad(url: str) -> bool:
    # Browsers ignore whitespace and controls inside a scheme: "java\tscript:" runs.
    squeezed = re.sub(r"[\x00-\x20\x7f]", "", url).lower()
    return squeezed.startswith(BAD_SCHEMES)


def problems_in(html: str, whole: bool = False) -> tuple[int, list[str]]:
    checker = BodyChecker(whole)
    checker.feed(html)
    checker.close()
    return checker.bodies, checker.problems


def test_the_corpus_has_at_least_fifty_distinct_vectors() -> None:
    names = [v["name"] for v in VECTORS]
    assert len(names) >= 50 and len(set(names)) == len(names)
    assert len({v["body"] for v in VECTORS}) == len(VECTORS)


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_rendered_markdown_has_nothing_executable(vector: dict[str, str]) -> None:
    bodies, problems = problems_in(str(markdown(vector["body"])), whole=True)
    assert bodies == 1 and problems == []


def test_the_checker_sees_what_it_must_refuse() -> None:
    """The parser-based check is only worth something if it catches the real thing."""
    for bad in (
        "<script>x</script>",
        '<img src="x" onerror="y">',
        '<a href=" JaVa&#x09;script:x" rel="noopener noreferrer">x</a>',
        '<img src="data:image/png;base64,AA">',
        '<a href="/x">no rel</a>',
        '<p style="x">y</p>',
        '<div hx-get="/x">y</div>',
    ):
        assert problems_in(bad, whole=True)[1], bad


def test_raw_html_is_shown_as_text_and_links_get_rel() -> None:
    assert str(markdown("<script>alert(1)</script>")) == (
        "<p>&lt;script&gt;alert(1)&lt;/script&gt;</p>\n"
    )
    assert str(markdown("[docs](https://example.com/a)")) == (
        '<p><a href="https://example.com/a" rel="noopener noreferrer">docs</a></p>\n'
    )
    # A refused image keeps its alt text and loses its URL.
    assert str(markdown("![chart](data:image/png;base64,AAAA)")) == '<p><img alt="chart"></p>\n'


def _post_all(server: Server) -> list[int]:
    ids = []
    for vector in VECTORS:
        if TERMINAL_CONTROLS.search(vector["body"]):
            # Refused at the edge now (test_input.py), but one stored earlier stays.
            refused = server.client.post(URL, json={"body": vector["body"]})
            assert refused.status_code == 422, refused.text
            ids += stored_posts(server.database, vector["body"], author="mallory")
            continue
        created = server.post(vector["body"], author="mallory")
        assert created["post"]["body"] == vector["body"]  # the Markdown source is kept as is
        ids.append(created["post"]["id"])
    return ids


def _replay(server: Server, fmt: str, count: int) -> list[str]:
    params = {"format": fmt, "last_event_id": "0"}
    with SSEClient(server.port, params=params) as stream:
        assert stream.status == 200
        events = [m for m in stream.wait_events(count) if m.event == "post-created"]
    assert len(events) == len(VECTORS)
    return [m.data for m in events]


def _assert_each_clean(
    what: str, htmls: list[str], check: Callable[[str], tuple[int, list[str]]]
) -> None:
    failures = {}
    for vector, html in zip(VECTORS, htmls, strict=True):
        bodies, problems = check(html)
        if bodies != 1 or problems:
            failures[vector["name"]] = problems or f"{bodies} bodies"
    assert failures == {}, what


def test_every_vector_is_inert_in_pages_and_both_streams(
    make_server: Callable[..., Server],
) -> None:
    server = make_server(page_size=len(VECTORS) + 10, post_rate=1000)
    ids = _post_all(server)

    page = server.client.get("/").text
    bodies, problems = problems_in(page)
    assert bodies == len(VECTORS) and problems == []
    assert all(f'id="post-{i}"' in page for i in ids)

    html_events = _replay(server, "html", len(VECTORS) + 1)  # hello first
    _assert_each_clean("HTML stream", html_events, problems_in)

    json_events = [json.loads(data)["post"] for data in _replay(server, "json", len(VECTORS))]
    assert [p["id"] for p in json_events] == ids
    _assert_each_clean(
        "JSON html field", [p["html"] for p in json_events], lambda h: problems_in(h, whole=True)
    )
    # The page shows exactly the HTML the JSON stream hands to scripts.
    assert all(p["html"] in page for p in json_events)


def test_terminal_escapes_never_reach_the_text_stream(
    make_server: Callable[..., Server], database_url: str
) -> None:
    body = "red \x1b[31malert\x1b[0m, title \x1b]0;owned\x07, clear \x1b[2J, c1 \x9b31m end"
    # The server refuses such a body now (test_input.py); one stored earlier stays.
    stored_posts(database_url, body, author="mallory")
    server = make_server()
    with SSEClient(server.port, params={"format": "text", "last_event_id": "0"}) as stream:
        (event,) = stream.wait_events(1)
    assert TERMINAL_CONTROLS.search(event.data) is None
    assert event.data.endswith("mallory: red [31malert[0m, title ]0;owned, clear [2J, c1 31m end")
    # JSON keeps the source exactly; escaping it is the JSON encoder's job.
    stored = server.client.get("/api/channels/general/posts").json()["posts"][0]
    assert stored["body"] == body


def test_the_json_stream_escapes_c0_and_c1_control_characters(
    make_server: Callable[..., Server], database_url: str
) -> None:
    body = "csi \x9b2J, nel \x85, osc \x9d0;owned\x9c, esc \x1b[2J, del \x7f end"
    (post_id,) = stored_posts(database_url, body, author="mallory")
    server = make_server()
    with SSEClient(server.port, params={"format": "json", "last_event_id": "0"}) as stream:
        (event,) = stream.wait_events(1)
    assert TERMINAL_CONTROLS.search(event.data) is None
    assert "\\u009b2J" in event.data and "\\u0085" in event.data and "\\u007f" in event.data
    post = json.loads(event.data)["post"]
    assert (post["id"], post["body"]) == (post_id, body)


def test_the_json_stream_escapes_del_in_an_otherwise_ascii_post(
    make_server: Callable[..., Server], database_url: str
) -> None:
    body = "esc \x1b[2J, del \x7f end"
    (post_id,) = stored_posts(database_url, body, author="mallory")
    server = make_server()
    with SSEClient(server.port, params={"format": "json", "last_event_id": "0"}) as stream:
        (event,) = stream.wait_events(1)
    assert TERMINAL_CONTROLS.search(event.data) is None
    assert "\\u001b[2J" in event.data and "\\u007f" in event.data
    post = json.loads(event.data)["post"]
    assert (post["id"], post["body"]) == (post_id, body)


PLAIN_ALPHABET = "abcXYZ019 ,;:.?!'"


@settings(max_examples=3000, deadline=None, database=None, derandomize=True)
@given(st.text(alphabet=PLAIN_ALPHABET, max_size=40))
def test_plain_text_taken_without_the_parser_renders_as_the_parser_would(body: str) -> None:
    from feed import markdown as module

    assert module.to_html(body) == module.render(body)


def test_plain_text_is_taken_without_the_parser_and_anything_else_is_not() -> None:
    from feed import markdown as module

    assert module.plain("bench post 12 at 345;") and module.plain("Why? Yes, it's done.")
    for body in ("1. a list", "- item", "*em*", "a  ", " a", "a\nb", "@ada", "a & b", "#1", ""):
        assert not module.plain(body), body
