"""What the command line prints is safe: no password of a URL or a setting, nothing a
server sent that could repaint the terminal, no traceback for an answer feed never
gives, and no database made by mistake.

The servers here are small fakes in this process (``Answering``): they say what no
feed server would, which is the point."""

from __future__ import annotations

import contextlib
import io
import json
import re
import tempfile
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from feed import cli
from feed.declarations import SettingsError
from feed.redaction import redact_url
from feed.settings import Settings
from tests.conftest import Server, free_port
from tests.loopback import Loopback

# What a hostile server puts in every string: a title change and a screen clear,
# a C1 CSI, and a right-to-left override that would reverse what follows it.
HOSTILE = "\x1b]0;PWNED\x07\x1b[2J\x9b31m\u202e"
BIDI = ["\u202a", "\u202b", "\u202c", "\u202d", "\u202e", "\u2066", "\u2067", "\u2068"]
BIDI += ["\u2069", "\u200e", "\u200f", "\u061c"]

# An answer: status, content type, body.
Answer = tuple[int, str, str]


class Answering:
    """An HTTP server on a loopback port that answers each request with what
    ``answer(method, path)`` gives."""

    def __init__(self, answer: Callable[[str, str], Answer]) -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                status, kind, body = outer.answer(self.command, self.path)
                sent = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(sent)))
                self.end_headers()
                self.wfile.write(sent)

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _any

            def log_message(self, *args: Any) -> None:
                pass

        self.answer = answer
        self.server = Loopback(Handler)
        self.url = self.server.url

    def close(self) -> None:
        self.server.close()


@pytest.fixture
def answering() -> Iterator[Callable[[Callable[[str, str], Answer]], Answering]]:
    started: list[Answering] = []

    def start(answer: Callable[[str, str], Answer]) -> Answering:
        started.append(Answering(answer))
        return started[-1]

    yield start
    for server in started:
        server.close()


@pytest.fixture(autouse=True)
def no_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Each test's settings are its own, and it runs in a directory of its own."""
    import os

    for name in [n for n in os.environ if n.startswith("FEED_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def run(argv: list[str], stdin: str = "") -> tuple[int, str, str]:
    """``feed ARGV`` in this process: its status and what it printed."""
    import contextlib

    out, err = io.StringIO(), io.StringIO()
    # A file with a descriptor of its own: ``--ndjson`` reads standard input's.
    with tempfile.TemporaryFile() as given:
        given.write(stdin.encode())
        given.seek(0)
        fake_in = io.TextIOWrapper(given, "utf-8")
        with (
            contextlib.redirect_stdout(out),
            contextlib.redirect_stderr(err),
            pytest.MonkeyPatch.context() as patch,
        ):
            patch.setattr("sys.stdin", fake_in)
            code = cli.main(argv)
        fake_in.detach()
    return code, out.getvalue(), err.getvalue()


def assert_terminal_safe(printed: str) -> None:
    """Nothing in ``printed`` moves the cursor, sets a title or reorders the line."""
    raw = [c for c in printed if (ord(c) < 0x20 and c not in "\t\n") or 0x7F <= ord(c) < 0xA0]
    assert not raw, repr(printed)
    assert not [c for c in printed if c in BIDI], repr(printed)


# -- passwords -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [["post", "general", "hi"], ["tail"], ["channels"], ["search", "x"]],
)
def test_a_server_url_with_a_password_is_refused_without_printing_it(command: list[str]) -> None:
    # httpx would send them as Basic credentials instead of the token: a 401.
    for url in ("http://user:s3cret@127.0.0.1:1", "http://user@127.0.0.1:1"):
        code, out, err = run([*command, "--url", url, "--token", "t"])
        assert (code, out) == (2, ""), err
        assert "s3cret" not in err and err.startswith("feed: --url "), err
        assert "--token" in err, err


def test_a_server_url_that_cannot_be_reached_or_read_is_named_without_its_secrets() -> None:
    port = free_port()
    code, _, err = run(["post", "general", "hi", "--url", f"http://127.0.0.1:{port}/?token=s3cret"])
    assert code == 1 and "cannot reach" in err and "s3cret" not in err, err
    code, _, err = run(["post", "general", "hi", "--url", "http://u:s3cret@[::1"])
    assert code == 2 and "s3cret" not in err, err


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("FEED_SECRET_KEY", "shortsecretpassword"),
        ("FEED_SECRET_KEY", "a secret key of more than 32 characters\x07"),
        ("FEED_DATABASE_URL", "mysql://admin:hunter2@db/feed"),
        ("FEED_DATABASE_URL", "mysql://db/feed?password=hunter2"),
        ("FEED_BROKER_URL", "amqp://u:hunter2@h/"),
    ],
)
def test_a_bad_setting_is_named_without_echoing_its_secret(variable: str, value: str) -> None:
    with pytest.raises(SettingsError) as refused:
        Settings.from_env({variable: value})
    said = str(refused.value)
    assert said.startswith(f"{variable} must be "), said
    assert "hunter2" not in said and value not in said, said
    if variable == "FEED_SECRET_KEY":
        assert said.endswith(f"got {len(value)} characters (not shown: the value is secret)")


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://h/db?password=hunter2", "postgresql://h/db?password=***"),
        (
            "postgresql://u:hunter2@h/db?sslmode=require&sslpassword=hunter2",
            "postgresql://***@h/db?sslmode=require&sslpassword=***",
        ),
        ("postgresql://h/db?pass%77ord=hunter2", "postgresql://h/db?pass%77ord=***"),
        ("redis://h:6379/0?password=hunter2", "redis://h:6379/0?password=***"),
        ("rediss://:hunter2@h:6379/0", "rediss://***@h:6379/0"),
        ("postgresql://u:hunter2@[::1/db", "postgresql://***@[::1/db"),
        ("postgresql://u:hun/ter@2@h/db", "postgresql://***@h/db"),
        ("sqlite:///feed.db", "sqlite:///feed.db"),
        # A user name alone may be the secret (a token given as one).
        ("http://ghp_hunter2@127.0.0.1:18731", "http://***@127.0.0.1:18731"),
        ("postgresql://hunter2@h/db", "postgresql://***@h/db"),
        # A password holding what ends an authority, unencoded.
        ("http://u:pa?sshunter2@127.0.0.1:1", "http://***@127.0.0.1:1"),
        ("postgresql://u:pa?sshunter2@localhost/db", "postgresql://***@localhost/db"),
        (
            "postgresql://u:pa#sshunter2@h/db?sslmode=require",
            "postgresql://***@h/db?sslmode=require",
        ),
        ("postgresql://u:p:a/s?s#h@unter2@h:5432/db", "postgresql://***@h:5432/db"),
        # Parameters whose names say they hold a secret, however spelt.
        (
            "http://h/?access_token=hunter2&pwd=hunter2&passwd=hunter2&channel=general",
            "http://h/?access_token=***&pwd=***&passwd=***&channel=general",
        ),
        (
            "http://h/x?api_key=hunter2&Auth=hunter2&credentials=hunter2&session_id=hunter2",
            "http://h/x?api_key=***&Auth=***&credentials=***&session_id=***",
        ),
        (
            "http://h/x?sig=hunter2&X-Amz-Signature=hunter2",
            "http://h/x?sig=***&X-Amz-Signature=***",
        ),
        ("http://h/kiosk?channel=a&key=hunter2#frag", "http://h/kiosk?channel=a&key=***#frag"),
        ("http://h/cb#access_token=hunter2&state=1", "http://h/cb#access_token=***&state=1"),
        # An @ in a query's value may end a password too: what comes before it is hidden,
        # and the parameters after it all the same.
        ("http://h/?to=a@b&token=hunter2", "http://***@b&token=***"),
    ],
)
def test_secrets_in_a_url_are_hidden_wherever_they_are(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    assert "hunter2" not in shown


def test_a_user_name_or_a_password_with_a_question_mark_is_never_echoed() -> None:
    for url in ("http://ghp_hunter2@127.0.0.1:1", "http://u:pa?sshunter2@127.0.0.1:1"):
        code, out, err = run(["post", "general", "hi", "--url", url, "--token", "t"])
        assert (code, out) == (2, ""), err
        assert err.startswith("feed: --url 'http://***@127.0.0.1:1' "), err


def test_config_hides_a_password_that_holds_a_question_mark(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FEED_DATABASE_URL", "postgresql://u:pa?sshunter2@localhost/db")
    code, out, err = run(["config"])
    assert (code, out) == (2, ""), err
    assert err == (
        "feed: FEED_DATABASE_URL must be a sqlite:/// or postgresql:// URL, "
        "got 'postgresql://***@localhost/db'\n"
    )
    monkeypatch.setenv("FEED_DATABASE_URL", "postgresql://u@localhost/db?sslpassword=hunter2")
    code, out, err = run(["config"])
    assert code == 0, err
    assert "FEED_DATABASE_URL=postgresql://***@localhost/db?sslpassword=***\n" in out
    assert "hunter2" not in out


def test_the_settings_shown_at_start_up_hide_a_password_given_as_a_parameter() -> None:
    settings = Settings(
        database_url="postgresql://h/db?password=hunter2",
        broker_url="redis://h/0?password=hunter2",
    )
    assert "hunter2" not in repr(settings.describe())


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("FEED_DATABASE_URL", "postgresql://u:hunter2@h:notaport/db"),
        ("FEED_DATABASE_URL", "postgresql://u:hunter2@[::1/db"),
        ("FEED_DATABASE_URL", "postgresql://u:hunter2@h:99999/db"),
        ("FEED_BROKER_URL", "redis://:hunter2@h:notaport/0"),
    ],
)
def test_a_database_url_feed_cannot_read_is_refused_naming_the_variable(
    variable: str, value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(variable, value)
    for command in (["config"], ["db", "current"], ["token", "list"], ["serve"]):
        code, out, err = run(command)
        assert (code, out) == (2, ""), (command, err)
        assert err.startswith(f"feed: {variable} must be "), err
        assert "hunter2" not in err, err


# -- what a server says, on a terminal ---------------------------------------------------


def hostile_json(method: str, path: str) -> Answer:
    """Answers of feed's shape, every string in them hostile (feed's numbers are
    numbers: anything else is not feed's answer)."""
    if path.startswith("/api/posts:batch"):
        results = [
            {"status": 201, "id": 1, "channel": HOSTILE, "event_id": 2},
            {"status": 422, "error": HOSTILE},
        ]
        return 200, "application/json", json.dumps({"results": results})
    if path.startswith("/api/channels") and path.endswith("/members"):
        return (
            200,
            "application/json",
            json.dumps({"members": [{"name": HOSTILE, "may_post": True}]}),
        )
    if path.startswith("/api/channels") and method == "GET":
        channels = [{"name": HOSTILE, "title": HOSTILE, "archived": True}]
        return 200, "application/json", json.dumps({"channels": channels})
    if path.startswith("/api/channels") and "/posts" not in path:
        channel = {"name": HOSTILE, "title": HOSTILE, "archived": False, "replies": True}
        return 200, "application/json", json.dumps({"channel": channel})
    if path.startswith("/api/search"):
        post = {"id": 1, "channel": HOSTILE, "author": HOSTILE, "parent": 3}
        found = {"post": post | {"created_at": HOSTILE}, "snippet": "&#27;]0;X&#7;hi"}
        return 200, "application/json", json.dumps({"results": [found]})
    return (
        201,
        "application/json",
        json.dumps({"post": {"id": 1, "channel": HOSTILE}, "event_id": 2}),
    )


CLIENT_COMMANDS = [
    ["post", "general", "hi"],
    ["post", "general", "hi", "--json"],
    ["post", "--reply-to", "1", "hi"],
    ["post", "--ndjson", "general", "-"],
    ["post", "--ndjson", "general", "-", "--json"],
    ["channels"],
    ["channels", "create", "board", "Board"],
    ["channels", "rename", "board", "Board"],
    ["channels", "replies", "board", "off"],
    ["channels", "members", "board"],
    ["search", "hi"],
    ["search", "hi", "--json"],
]


@pytest.mark.parametrize("command", CLIENT_COMMANDS, ids=" ".join)
def test_what_a_server_names_reaches_the_terminal_without_control_characters(
    answering: Callable[[Callable[[str, str], Answer]], Answering], command: list[str]
) -> None:
    server = answering(hostile_json)
    code, out, err = run([*command, "--url", server.url, "--token", "t"], stdin="one\ntwo\n")
    assert code in (0, 3), err
    assert out, err
    assert_terminal_safe(out + err)


@pytest.mark.parametrize(
    ("status", "kind", "body"),
    [
        (403, "application/json", json.dumps({"error": f"no {HOSTILE}\nfeed: all is well"})),
        (502, "text/plain", f"{HOSTILE} bad gateway\n"),
        (429, "application/json", json.dumps({"error": HOSTILE})),
    ],
)
def test_a_refusal_reaches_the_terminal_without_control_characters(
    answering: Callable[[Callable[[str, str], Answer]], Answering],
    status: int,
    kind: str,
    body: str,
) -> None:
    server = answering(lambda method, path: (status, kind, body))
    for command in (["post", "general", "hi"], ["channels"], ["tail"]):
        code, _, err = run([*command, "--url", server.url, "--token", "t"])
        assert code == (3 if status < 500 else 1), err
        assert err.startswith(f"feed: the server answered {status}: ") and err.count("\n") == 1
        assert_terminal_safe(err)


def test_bidirectional_controls_are_shown_escaped_in_a_terminal() -> None:
    from feed.terminal_text import one_line, terminal_safe

    for control in BIDI:
        said = terminal_safe(f"Safe {control}elif.exe title")
        assert said == f"Safe \\u{ord(control):04x}elif.exe title"
        assert one_line(f"a {control}b") == f"a \\u{ord(control):04x}b"


def test_tail_lines_show_what_the_server_named_without_control_characters() -> None:
    from feed.terminal import line

    post = {
        "id": 1,
        "channel": HOSTILE,
        "author": HOSTILE,
        "body": HOSTILE,
        "created_at": "2026-01-01T00:00:00+00:00",
        "edited_at": "2026-01-01T00:00:00+00:00",
        "deleted": False,
        "parent": 2,
        "reactions": [{"reaction": HOSTILE, "count": 1}],
    }
    shown = [
        line("post-created", json.dumps({"post": post | {"parent": None}}), False),
        line("reply-created", json.dumps({"post": post}), True),
        line("reply-updated", json.dumps({"post": post}), False),
        line("mention", json.dumps({"post": post}), False),
        line(HOSTILE, json.dumps({"post": post | {"parent": None}}), True),
        line("channel-created", json.dumps({"channel": {"name": HOSTILE, "title": HOSTILE}}), True),
        line(
            "post-reactions",
            json.dumps(
                {
                    "post": post,
                    "changes": [{"name": HOSTILE, "reaction": HOSTILE, "reacted": True}],
                    "more": 0,
                }
            ),
            False,
        ),
    ]
    for said in shown:
        # Without the colours this feed paints, nothing of the server's is raw.
        assert_terminal_safe(re.sub("\x1b\\[[0-9]+m", "", said))
        assert "PWNED" in said
    # An id that is not a number is no feed's: the event is skipped (Tail._show).
    with pytest.raises(TypeError):
        line("post-created", json.dumps({"post": post | {"id": HOSTILE}}), False)


# -- servers that are not feed -------------------------------------------------------------

NOT_FEED: list[Answer] = [
    (200, "text/html", "<html><body>Welcome to nginx!</body></html>"),
    (201, "application/json", "{}"),
    (200, "application/json", "[]"),
    (200, "application/json", json.dumps({"results": 5, "channels": {"a": 1}, "post": 1})),
    (200, "application/json", json.dumps({"results": [{}], "channels": [{}], "channel": {}})),
    (200, "application/json", json.dumps({"results": [5], "channels": [7], "members": [None]})),
]


@pytest.mark.parametrize("answer", NOT_FEED, ids=lambda a: a[2][:30])
@pytest.mark.parametrize("command", CLIENT_COMMANDS, ids=" ".join)
def test_a_server_that_is_not_feed_is_named_in_one_line_not_a_traceback(
    answering: Callable[[Callable[[str, str], Answer]], Answering],
    answer: Answer,
    command: list[str],
) -> None:
    server = answering(lambda method, path: answer)
    code, out, err = run([*command, "--url", server.url, "--token", "t"], stdin="one\n")
    assert code == 1, (out, err)
    said = f"feed: {server.url} answered with what no feed server sends: is that feed's URL?"
    if "--ndjson" in command:
        # A batch was sent: which lines may have been posted is said too (post_lines.py).
        assert err.startswith(f"{said}; line 1 was sent but not confirmed"), err
        assert err.count("\n") == 1, err
    else:
        assert err == f"{said}\n"


def test_tail_names_a_server_that_answers_a_stream_with_something_else(
    answering: Callable[[Callable[[str, str], Answer]], Answering],
) -> None:
    server = answering(lambda method, path: (201, "application/json", json.dumps(HOSTILE)))
    code, out, err = run(["tail", "--url", server.url])
    assert (code, out) == (1, ""), err
    assert (
        err == f"feed: {server.url} answered with what no feed server sends: is that feed's URL?\n"
    )


# -- databases made by mistake ---------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        ["token", "create", "ada", "--role", "admin"],
        ["token", "list"],
        ["token", "revoke", "1"],
        ["kiosk", "create", "--channel", "general"],
        ["kiosk", "list"],
    ],
)
def test_token_and_kiosk_commands_never_make_a_new_database(
    command: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    typo = tmp_path / "x" / "typo.db"
    typo.parent.mkdir()
    monkeypatch.setenv("FEED_DATABASE_URL", f"sqlite:///{typo}")
    code, out, err = run(command)
    assert (code, out) == (1, ""), err
    assert not typo.exists()
    assert f"there is no database at {typo}" in err and "feed db upgrade" in err, err
    # The default is relative to where the command runs: the message says where it looked.
    monkeypatch.delenv("FEED_DATABASE_URL")
    code, out, err = run(command)
    assert (code, out) == (1, ""), err
    assert not (tmp_path / "feed.db").exists()
    assert f"there is no database at {tmp_path / 'feed.db'}" in err, err


def test_db_current_names_a_database_that_is_not_there_and_makes_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, err = run(["db", "current"])
    assert (code, out) == (1, ""), err
    assert err.startswith(f"feed: there is no database at {tmp_path / 'feed.db'} "), err
    assert "in the directory this command runs in" in err and "feed db upgrade" in err, err
    typo = tmp_path / "typo.db"
    monkeypatch.setenv("FEED_DATABASE_URL", f"sqlite:///{typo}")
    code, out, err = run(["db", "current"])
    assert (code, out) == (1, ""), err
    assert err.startswith(f"feed: there is no database at {typo} "), err
    assert list(tmp_path.iterdir()) == []
    # Nor does anything after it: the token commands find no database either.
    monkeypatch.delenv("FEED_DATABASE_URL")
    code, out, err = run(["token", "create", "bob"])
    assert (code, out) == (1, ""), err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("made", "why"),
    [
        (lambda path: path.write_bytes(b""), "it has none of feed's tables"),
        (lambda path: _sqlite(path, "PRAGMA user_version = 1"), "it has none of feed's tables"),
        (lambda path: _sqlite(path, "CREATE TABLE notes (x)"), "it has none of feed's tables"),
        (lambda path: path.write_text("notes\n" * 1000), "it is not an SQLite database"),
    ],
    ids=["empty", "no tables", "another's", "not SQLite"],
)
def test_token_commands_take_a_file_without_feeds_tables_for_no_database(
    made: Callable[[Path], object], why: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stray = tmp_path / "feed.db"
    made(stray)
    before = stray.read_bytes()
    monkeypatch.setenv("FEED_DATABASE_URL", f"sqlite:///{stray}")
    for command in (["token", "create", "bob"], ["token", "list"], ["kiosk", "list"]):
        code, out, err = run(command)
        assert (code, out) == (1, ""), (command, err)
        assert err.startswith(f"feed: {stray} holds no feed database: {why} ("), err
        assert "feed db upgrade" in err, err
        assert stray.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["feed.db"]


def _sqlite(path: Path, statement: str) -> None:
    import sqlite3

    with contextlib.closing(sqlite3.connect(path)) as made:
        made.execute(statement)
        made.commit()


def test_token_commands_work_once_the_database_is_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FEED_DATABASE_URL", f"sqlite:///{tmp_path / 'feed.db'}")
    assert run(["db", "upgrade"])[0] == 0
    code, out, err = run(["token", "create", "ada", "--role", "admin"])
    assert code == 0 and out.startswith("feed_"), err


def test_a_channel_title_that_would_read_backwards_is_refused_by_a_real_server(
    server: Server,
) -> None:
    from tests.auth import ADMIN_TOKEN

    title = "Safe \u202eelif.exe\u202c title"
    code, out, err = run(
        ["channels", "create", "bidi", title, "--url", server.url, "--token", ADMIN_TOKEN]
    )
    assert (code, out) == (3, ""), err
    assert "U+202E (right-to-left override) at character 6" in err, err
    assert_terminal_safe(err)
    names = [c["name"] for c in server.client.get("/api/channels").json()["channels"]]
    assert "bidi" not in names
