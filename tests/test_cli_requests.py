"""What the client commands send, and how long and how much they read: a token that is
no header value, a URL whose port is none, a server that redirects, drips, never stops
or answers a stream with something else.

The servers here are fakes in this process (``Fake``): each request is answered by a
function that writes what it likes, however slowly, and kept for the test to see."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from feed import cli, client
from tests.loopback import Loopback
from tests.test_cli_safety import assert_terminal_safe, no_settings, run

__all__ = ["no_settings"]  # autouse: each test's settings and directory its own

TOKEN = "feed_s3cretT0ken"
CHANNELS = json.dumps({"channels": [{"name": "general", "title": "General"}]})
NO_FEED = "answered with what no feed server sends: is that feed's URL?"


class Fake:
    """An HTTP server on a loopback port that answers each request with ``reply``,
    and keeps each request's method, path and headers."""

    def __init__(self, reply: Callable[[BaseHTTPRequestHandler], None]) -> None:
        outer = self
        self.requests: list[tuple[str, str, dict[str, str]]] = []

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _any(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                outer.requests.append((self.command, self.path, dict(self.headers)))
                with contextlib.suppress(OSError):  # the client left, as it should
                    reply(self)
                self.close_connection = True

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _any

            def log_message(self, *args: Any) -> None:
                pass

        self.server = Loopback(Handler)
        self.url = self.server.url

    def close(self) -> None:
        self.server.close()


FakeServer = Callable[[Callable[[BaseHTTPRequestHandler], None]], Fake]


@pytest.fixture
def fake() -> Iterator[FakeServer]:
    started: list[Fake] = []

    def start(reply: Callable[[BaseHTTPRequestHandler], None]) -> Fake:
        started.append(Fake(reply))
        return started[-1]

    yield start
    for server in started:
        server.close()


def answer(
    status: int, body: str, kind: str = "application/json", headers: dict[str, str] | None = None
) -> Callable[[BaseHTTPRequestHandler], None]:
    def reply(handler: BaseHTTPRequestHandler) -> None:
        sent = body.encode()
        handler.send_response(status)
        handler.send_header("Content-Type", kind)
        handler.send_header("Content-Length", str(len(sent)))
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(sent)

    return reply


def endless(status: int, kind: str, opening: bytes, chunk: bytes) -> Callable[..., None]:
    """An answer that never ends: ``opening``, then ``chunk`` until the client leaves."""

    def reply(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", kind)
        handler.send_header("Connection", "close")
        handler.end_headers()
        handler.wfile.write(opening)
        while True:
            handler.wfile.write(chunk)

    return reply


# -- the token ------------------------------------------------------------------------


@pytest.mark.parametrize("given", [f"{TOKEN}\r\n", f"{TOKEN}\n", f" {TOKEN} ", f"{TOKEN}\t"])
def test_a_token_is_sent_without_the_blanks_around_it(
    fake: FakeServer, monkeypatch: pytest.MonkeyPatch, given: str
) -> None:
    # A token file with Windows line endings, read by $(cat file), keeps its \r.
    server = fake(answer(200, CHANNELS))
    code, out, err = run(["channels", "--url", server.url, "--token", given])
    assert (code, out) == (0, "general\tGeneral\n"), err
    monkeypatch.setenv("FEED_TOKEN", given)
    assert run(["channels", "--url", server.url])[0] == 0
    assert [r[2]["Authorization"] for r in server.requests] == [f"Bearer {TOKEN}"] * 2


@pytest.mark.parametrize(
    "given",
    [f"{TOKEN[:8]} {TOKEN[8:]}", f"{TOKEN}\r\nX-Evil: 1", f"{TOKEN}\x00", "tök" + TOKEN, "\x7f"],
)
def test_a_token_that_is_no_header_value_is_refused_unshown_before_any_request(
    fake: FakeServer, monkeypatch: pytest.MonkeyPatch, given: str
) -> None:
    server = fake(answer(200, CHANNELS))
    commands = [["channels"], ["post", "general", "hi"], ["tail"], ["search", "hi"]]
    for command in commands:
        code, out, err = run([*command, "--url", server.url, "--token", given])
        assert (code, out) == (2, ""), err
        assert err.startswith("feed: the token (--token or FEED_TOKEN) ") and err.count("\n") == 1
        assert TOKEN not in err and TOKEN[:8] not in err and "tök" not in err, err
        assert_terminal_safe(err)
    if "\x00" not in given:  # which no environment variable can hold
        monkeypatch.setenv("FEED_TOKEN", given)
        assert run(["channels", "--url", server.url])[0] == 2
    assert server.requests == []


def test_what_httpx_says_of_a_request_it_could_not_send_is_never_shown(
    fake: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its text may hold a header, and so the token; the kind of failure is enough."""
    import httpx

    def refuse(*args: Any, **kwargs: Any) -> httpx.Response:
        raise httpx.LocalProtocolError(f"Illegal header value b'Bearer {TOKEN}'")

    monkeypatch.setattr(httpx.Client, "send", refuse)
    server = fake(answer(200, CHANNELS))
    for command in (["channels"], ["tail"]):
        code, _, err = run([*command, "--url", server.url, "--token", TOKEN])
        assert code == 1 and err.startswith(f"feed: cannot reach {server.url}: "), err
        assert TOKEN not in err and "Bearer" not in err, err


# -- the URL --------------------------------------------------------------------------


@pytest.mark.parametrize("port", ["0", "65536", "99999", "-1", "8o"])
def test_a_url_whose_port_is_none_is_refused_before_any_request(port: str) -> None:
    # 99999 would wrap round to 34463, and the token would go to whatever listens there.
    for command in (["channels"], ["tail"]):
        code, out, err = run([*command, "--url", f"http://127.0.0.1:{port}", "--token", TOKEN])
        assert (code, out) == (2, ""), err
        assert err.startswith(f"feed: --url 'http://127.0.0.1:{port}' "), err
        assert "port" in err and TOKEN not in err, err


# -- answers that are not what they seem ------------------------------------------------


def test_tail_names_a_stream_answered_200_with_something_else_once(fake: FakeServer) -> None:
    answers = [answer(200, "just text", "text/plain")] * 2 + [answer(403, '{"error": "no"}')]

    def reply(handler: BaseHTTPRequestHandler) -> None:
        answers.pop(0)(handler)

    server = fake(reply)
    code, out, err = run(["tail", "--url", server.url])
    assert (code, out) == (1, ""), err
    assert err == f"feed: {server.url} {NO_FEED}\n"
    assert len(server.requests) == 1


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_a_redirect_says_where_it_points_and_is_not_followed(fake: FakeServer, status: int) -> None:
    moved: list[str] = []

    def reply(handler: BaseHTTPRequestHandler) -> None:
        target = f"{moved[0]}/elsewhere{handler.path}"
        answer(status, "", headers={"Location": target})(handler)

    server = fake(reply)
    moved.append(server.url)
    for command, path in ((["channels"], "/api/channels"), (["tail"], "/events")):
        code, out, err = run([*command, "--url", server.url, "--token", TOKEN])
        assert (code, out) == (3, ""), err
        assert err.startswith(
            f"feed: the server answered {status}: a redirect to {server.url}/elsewhere{path}"
        ), err
        assert err.endswith(f", not followed: if feed is there, use --url {server.url}/elsewhere\n")
    # Not followed: the token went nowhere else.
    assert [path.split("?")[0] for _, path, _ in server.requests] == ["/api/channels", "/events"]


def test_a_redirect_is_shown_safe_for_a_terminal_and_without_passwords(fake: FakeServer) -> None:
    # A header's bytes are read as UTF-8 if they are, else as Latin-1: C1 controls too.
    hostile = "\x9b31m\xe2\x80\xae".encode().decode("latin-1") + "\x9b31m"
    server = fake(answer(302, "", headers={"Location": f"https://u:hunter2@h/{hostile}"}))
    code, _, err = run(["channels", "--url", server.url])
    assert code == 3 and "hunter2" not in err and "a redirect to https://***@h/" in err, err
    assert_terminal_safe(err)
    server = fake(answer(302, ""))  # no Location at all
    code, _, err = run(["channels", "--url", server.url])
    assert (code, err) == (3, "feed: the server answered 302: Found\n")


def test_a_refusal_and_its_reason_are_shown_shortened(fake: FakeServer) -> None:
    server = fake(answer(403, json.dumps({"error": "No. " + "A" * 5000})))
    code, _, err = run(["channels", "--url", server.url])
    assert code == 3 and err.startswith("feed: the server answered 403: No. AAA"), err
    assert err.endswith("…\n") and len(err) < 1200, len(err)


# -- time and size ----------------------------------------------------------------------


def test_an_answer_dripped_a_byte_at_a_time_ends_at_the_deadline(
    fake: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(client, "REQUEST_DEADLINE", 1.0)

    def body(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", "100000")
        handler.end_headers()
        while True:
            handler.wfile.write(b" ")
            handler.wfile.flush()
            time.sleep(0.1)  # the drip under test

    def headers(handler: BaseHTTPRequestHandler) -> None:
        handler.wfile.write(b"HTTP/1.1 200 OK\r\n")
        while True:
            handler.wfile.write(b"X-Drip: 1\r\n")
            handler.wfile.flush()
            time.sleep(0.1)  # the drip under test

    for reply in (body, headers):
        server = fake(reply)
        started = time.monotonic()
        code, out, err = run(["channels", "--url", server.url])
        took = time.monotonic() - started
        assert (code, out) == (1, ""), err
        assert err == f"feed: {server.url} did not answer within 1 s\n", err
        assert 1.0 <= took < 3.0, took


@pytest.mark.parametrize(
    ("status", "opening"),
    [(200, b'{"channels": ['), (403, b'{"error": "'), (502, b"<html>")],
)
def test_an_answer_larger_than_any_of_feeds_is_refused_not_kept(
    fake: FakeServer, monkeypatch: pytest.MonkeyPatch, status: int, opening: bytes
) -> None:
    monkeypatch.setattr(client, "MAX_ANSWER_BYTES", 256 * 1024)
    server = fake(endless(status, "application/json", opening, b'{"name":"a","title":"b"},' * 99))
    # A stream answered 200 is no feed's unless it is an event stream, whatever its length.
    for command in [["channels"], ["tail"]][: 1 if status == 200 else 2]:
        code, out, err = run([*command, "--url", server.url])
        assert (code, out) == (1, ""), err
        assert err == (
            f"feed: {server.url} sent an answer of more than 256 KiB, "
            "more than feed sends: is that feed's URL?\n"
        ), err


@pytest.mark.parametrize(
    ("opening", "chunk"),
    [(b"data: ", b"a" * 10_000), (b"", b"data: " + b"a" * 10_000 + b"\n")],
    ids=["one endless line", "endless lines of one event"],
)
def test_a_stream_event_larger_than_any_of_feeds_is_refused_not_kept(
    fake: FakeServer, monkeypatch: pytest.MonkeyPatch, opening: bytes, chunk: bytes
) -> None:
    monkeypatch.setattr(client, "MAX_EVENT_BYTES", 256 * 1024)
    server = fake(endless(200, "text/event-stream", b"retry: 100\n\n" + opening, chunk))
    code, out, err = run(["tail", "--url", server.url])
    assert (code, out) == (1, ""), err
    assert err == (
        f"feed: {server.url} sent an event of more than 256 KiB, "
        "more than feed sends: is that feed's URL?\n"
    ), err


def test_the_limits_hold_feeds_largest_answers() -> None:
    """A search page of the most results, each a post at the default length limit that
    renders to the most HTML (one mention every three characters), fits the answer's
    limit; one such post, with the most reactions, fits an event's."""
    from feed import markdown
    from feed.limits import MAX_SEARCH_PAGE
    from feed.reaction_set import MAX_REACTION_CHARS, MAX_REACTIONS
    from feed.settings import Settings

    body = "@a " * (Settings().max_post_chars // 3)
    reactions = [{"reaction": "😀" * MAX_REACTION_CHARS, "count": 1, "names": ["a" * 80] * 3}]
    post = {
        "id": 2**31 - 1,
        "channel": "c" * 64,
        "author": "a" * 80,
        "body": body,
        "html": markdown.render(body),
        "created_at": "2026-01-01T00:00:00.000000+00:00",
        "edited_at": "2026-01-01T00:00:00.000000+00:00",
        "reactions": reactions * MAX_REACTIONS,
    }
    event = json.dumps({"post": post, "event_id": 2**63 - 1}, ensure_ascii=False).encode()
    assert 2 * len(event) < client.MAX_EVENT_BYTES
    found = {"post": post, "snippet": body, "link": "/posts/1"}
    page = json.dumps({"results": [found] * MAX_SEARCH_PAGE}, ensure_ascii=False).encode()
    assert len(page) < client.MAX_ANSWER_BYTES


# -- options the server would refuse -----------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "wrong"),
    [
        (["tail", "--count", "0"], "--count"),
        (["tail", "--count", "-2"], "--count"),
        (["search", "x", "--limit", "0"], "--limit"),
        (["search", "x", "--limit", "-1"], "--limit"),
        (["search", "x", "--limit", "100000"], "--limit"),
    ],
)
def test_a_count_or_limit_out_of_range_is_a_usage_error(
    fake: FakeServer, argv: list[str], wrong: str, capsys: pytest.CaptureFixture[str]
) -> None:
    server = fake(answer(200, '{"results": []}'))
    with pytest.raises(SystemExit) as exited:
        cli.main([*argv, "--url", server.url])
    assert exited.value.code == 2
    assert f"argument {wrong}: " in capsys.readouterr().err
    assert server.requests == []


def test_a_search_limit_within_range_is_sent(fake: FakeServer) -> None:
    from feed.limits import MAX_SEARCH_PAGE

    server = fake(answer(200, '{"results": []}'))
    for limit in (1, MAX_SEARCH_PAGE):
        assert run(["search", "x", "--limit", str(limit), "--url", server.url])[0] == 0
    assert [path for _, path, _ in server.requests] == [
        "/api/search?q=x&limit=1",
        f"/api/search?q=x&limit={MAX_SEARCH_PAGE}",
    ]


def test_a_refused_name_is_echoed_shortened() -> None:
    """``feed token create`` and a grant refuse a name with the name in the message: a
    name of thousands of characters is shown by its beginning."""
    from feed.identity import MAX_NAME_CHARS, identity_name

    with pytest.raises(ValueError) as refused:
        identity_name("a " * 1500)
    said = str(refused.value)
    assert said.startswith(f"a name is 1 to {MAX_NAME_CHARS} printable characters"), said
    assert said.endswith("a …'") and len(said) < 2 * MAX_NAME_CHARS + 80, len(said)
    with pytest.raises(ValueError) as refused:
        identity_name("a,b")
    assert str(refused.value).endswith("got 'a,b'")


def test_the_help_says_what_exit_code_1_covers_and_which_certificates_are_trusted(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    said = " ".join(capsys.readouterr().out.split())
    assert "1 the server or database could not be reached, or failed, or what answered" in said
    assert "is no feed server" in said
    for command in ("post", "tail", "search", "channels"):
        with pytest.raises(SystemExit):
            cli.main([command, "--help"])
        said = " ".join(capsys.readouterr().out.split())
        assert "$SSL_CERT_FILE" in said and "$SSL_CERT_DIR" in said, command


def test_the_readme_states_the_client_limits_the_client_has() -> None:
    from feed.limits import MAX_SEARCH_PAGE

    readme = " ".join((Path(__file__).parent.parent / "README.md").read_text().split())
    assert f"A request has {client.REQUEST_DEADLINE:g} seconds for its whole answer" in readme
    mib = 1024 * 1024
    assert f"({client.MAX_ANSWER_BYTES // mib} MiB; " in readme
    assert f"{client.MAX_EVENT_BYTES // mib} MiB for one event" in readme
    assert f"`--limit N` (1 to {MAX_SEARCH_PAGE})" in readme
