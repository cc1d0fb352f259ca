"""The ``feed`` command: start-up errors are clear and stop the process."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import Server, free_port
from tests.waiting import until

pytestmark = pytest.mark.slow  # every test here runs the feed command


def run_feed(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FEED_")}
    return subprocess.run(
        [sys.executable, "-m", "feed", *args],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_more_than_one_worker_with_the_memory_broker_is_refused() -> None:
    result = run_feed("serve", "--workers", "2")
    assert result.returncode == 2
    assert result.stderr.startswith(
        "feed: FEED_WORKERS=2 needs a broker shared by the workers: the memory broker"
    )
    assert "Set FEED_BROKER_URL to a postgresql:// or redis:// URL" in result.stderr


def test_a_bad_setting_stops_start_up_naming_the_variable() -> None:
    result = run_feed("serve", FEED_HEARTBEAT="often")
    assert result.returncode == 2
    assert result.stderr.strip() == "feed: FEED_HEARTBEAT must be a number, got 'often'"


def test_a_heartbeat_too_short_to_be_useful_stops_start_up() -> None:
    """Each interval is cut into turns (heartbeats.py, on one timer): 0.05 s would wake
    the loop over a thousand times a second for nothing a page needs."""
    result = run_feed("serve", FEED_HEARTBEAT="0.05")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "feed: FEED_HEARTBEAT must be between 0.2 and 3600 seconds, got 0.05"
    )


def test_help_lists_the_serve_command() -> None:
    result = run_feed("--help")
    assert result.returncode == 0
    assert "serve" in result.stdout


def run_into_a_closed_pipe(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``feed`` with its output into a pipe whose reader has already gone, as
    ``feed ... | head -1`` leaves it once head has its line."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FEED_")}
    read, write = os.pipe()
    os.close(read)
    try:
        return subprocess.run(
            [sys.executable, "-m", "feed", *args],
            env={**clean, **env},
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            timeout=30,
        )
    finally:
        os.close(write)


def test_commands_that_print_stop_quietly_when_their_reader_goes(tmp_path: Path) -> None:
    database = {"FEED_DATABASE_URL": f"sqlite:///{tmp_path / 'feed.db'}"}
    assert run_feed("db", "upgrade", **database).returncode == 0  # tokens need a database
    for args in (("token", "create", "ada", "--role", "admin"), ("token", "list"), ("--help",)):
        done = run_into_a_closed_pipe(*args, **database)
        assert (done.returncode, done.stderr) == (0, ""), args
    # The README's own line, through a shell and a real head.
    shell = subprocess.run(
        ["bash", "-c", f"set -o pipefail; {sys.executable} -m feed token create bo | head -1"],
        env={**{k: v for k, v in os.environ.items() if not k.startswith("FEED_")}, **database},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert (shell.returncode, shell.stderr) == (0, "")
    assert shell.stdout.startswith("feed_") and shell.stdout.count("\n") == 1


def test_tail_stops_quietly_when_its_reader_goes(server: Server) -> None:
    server.post("one")
    server.post("two")
    done = run_into_a_closed_pipe("tail", "--since", "0", "--url", server.url)
    assert (done.returncode, done.stderr) == (0, "")


def test_a_broken_connection_is_not_taken_for_a_closed_pipe(tmp_path: Path) -> None:
    done = run_into_a_closed_pipe("tail", "--url", f"http://127.0.0.1:{free_port()}")
    assert done.returncode == 1 and "cannot reach" in done.stderr


def test_a_malformed_server_url_is_a_usage_error_not_a_traceback(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from feed import cli

    # One as a process, for its exit status and all it prints; the rest in this process,
    # where an exception would fail the test as a traceback fails the command.
    done = run_feed("post", "--url", "http://[::1", "general", "hi", "--token", "x")
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("feed: --url 'http://[::1' is not"), done.stderr
    assert "Traceback" not in done.stderr
    for name in [n for n in os.environ if n.startswith("FEED_")]:
        monkeypatch.delenv(name)
    for command in (["post", "general", "hi", "--token", "x"], ["tail"], ["channels", "list"]):
        for url in ("http://[::1", "ftp://example.com", "localhost:8000"):
            code = cli.main([*command[:1], "--url", url, *command[1:]])
            out, err = capsys.readouterr()
            assert (code, out) == (2, ""), (command, url, err)
            assert err.startswith(f"feed: --url {url!r} is not"), err


# Each client command with the arguments that follow its name, and what it prints. For
# `channels` the first word is the action; NAME is a channel made for the placement.
CLIENT_COMMANDS: list[tuple[list[str], str]] = [
    (["post", "general", "hello"], r"posted to #general: post \d+, event \d+\n"),
    (["tail", "--since", "0", "--count", "1", "--format", "json"], r'\{"id":\d+,.*"body":"hello"'),
    (["channels"], r"announcements\tAnnouncements\n"),
    (["channels", "list"], r"general\tGeneral\n"),
    (["channels", "create", "NAME", "Board", "--private"], r"#NAME: Board \(open\)\n"),
    (["channels", "rename", "NAME", "The board"], r"#NAME: The board \(open\)\n"),
    (["channels", "grant", "NAME", "ada"], r"ada is a member of #NAME\n"),
    (["channels", "members", "NAME"], r"ada\treads\n"),
    (["channels", "ungrant", "NAME", "ada"], r"ada is no longer a member of #NAME\n"),
    (["channels", "archive", "NAME"], r"#NAME: The board \(archived\)\n"),
    (["channels", "restore", "NAME"], r"#NAME: The board \(open\)\n"),
]


def placed(words: list[str], options: list[str], where: str) -> list[str]:
    """A client command line with ``options`` before its action (or arguments), after
    them, or split around the action's first argument."""
    command, rest = words[0], words[1:]
    if where == "before":
        return [command, *options, *rest]
    if where == "after":
        return [command, *rest, *options]
    # After the action (or first argument), or after a first option and its value.
    cut = 2 if rest and rest[0].startswith("--") else 1
    half = len(options) // 2
    return [command, *rest[:cut], *options[:half], *rest[cut:], *options[half:]]


@pytest.mark.parametrize("where", ["before", "after", "between"])
def test_url_and_token_work_anywhere_in_a_client_command(
    server: Server,
    where: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from feed import cli
    from feed.arguments import TOKEN_VARIABLE
    from tests.auth import ADMIN_TOKEN

    # Neither the default server nor the default token would do: only the options can.
    monkeypatch.setenv("FEED_PORT", str(free_port()))
    monkeypatch.delenv(TOKEN_VARIABLE, raising=False)
    options = ["--url", server.url, "--token", ADMIN_TOKEN]
    channel = f"board-{where}"
    for words, printed in CLIENT_COMMANDS:
        argv = placed([w.replace("NAME", channel) for w in words], options, where)
        code = cli.main(argv)
        out, err = capsys.readouterr()
        assert (code, err) == (0, ""), argv
        assert re.search(printed.replace("NAME", channel), out), (argv, out)


@pytest.mark.parametrize(
    "words",
    [
        ["post", "nosuch/../general", "hello"],
        ["post", "general?x=1", "hello"],
        ["channels", "grant", "nosuch/../announcements", "bo", "--post"],
        ["channels", "archive", "nosuch/../general"],
        ["channels", "rename", "nosuch/../general", "Taken"],
        ["channels", "members", "nosuch/../general"],
    ],
)
def test_a_channel_name_is_one_name_in_the_url_never_a_path(
    server: Server, words: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    from feed import cli
    from tests.auth import ADMIN_TOKEN

    code = cli.main([*words, "--url", server.url, "--token", ADMIN_TOKEN])
    out, err = capsys.readouterr()
    assert (code, out) == (2, ""), (words, out)
    named = next(w for w in words if "/" in w or "?" in w)
    assert err.startswith(f"feed: there is no channel named {named!r}"), err
    assert "lower-case letters" in err, err
    # Nothing happened to the channels the name's dots led to.
    channels = {c["name"]: c for c in server.client.get("/api/channels").json()["channels"]}
    assert not channels["general"]["archived"] and channels["general"]["title"] == "General"
    members = server.client.get("/api/channels/announcements/members").json()["members"]
    assert members == []
    assert server.client.get("/api/channels/general/posts").json()["posts"] == []


class HostileStream:
    """A server on a loopback port that answers every request with ``body`` as an
    event stream, then hangs up; it counts the requests."""

    def __init__(self, body: str) -> None:
        self.body = body.encode()
        self.requests = 0
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            with conn:
                self.requests += 1
                conn.recv(65536)
                head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n"
                conn.sendall(head + self.body)

    def close(self) -> None:
        self.stopped.set()
        self.thread.join(5)
        self.sock.close()


POST_EVENT = json.dumps(
    {
        "id": 1,
        "type": "post-created",
        "post": {
            "id": 1,
            "channel": "general",
            "author": "ada",
            "body": "hi \u202eevil",
            "created_at": "2026-01-01T00:00:00+00:00",
            "edited_at": None,
            "deleted": False,
        },
    }
)


@pytest.mark.parametrize(
    ("body", "code", "said"),
    [
        (
            f"id: abc\nevent: post-created\ndata: {POST_EVENT}\n\n",
            1,
            "an event id that is no feed's",
        ),
        (
            "id: 5\nevent: post-created\ndata: {not json\n\n"
            f"id: 6\nevent: post-created\ndata: {'[' * 100_000}\n\n"
            f"id: 7\nevent: post-created\ndata: {POST_EVENT}\n\n",
            0,
            "cannot show; skipped",
        ),
    ],
)
def test_tail_says_what_it_cannot_read_and_never_shows_a_traceback(
    body: str, code: int, said: str
) -> None:
    server = HostileStream(body)
    try:
        done = run_feed("tail", "--url", f"http://127.0.0.1:{server.port}", "--count", "1")
    finally:
        server.close()
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == code, done.stderr
    assert said in done.stderr, done.stderr
    if code == 0:
        # The post, its override shown escaped: it reverses nothing that follows it.
        assert done.stdout.rstrip().endswith("ada: hi \\u202eevil"), done.stdout
        assert done.stderr.count("skipped") == 2, done.stderr


def test_tail_waits_between_reconnects_whatever_retry_the_server_asks_for() -> None:
    server = HostileStream("retry: 0\n\n")
    try:
        tail = subprocess.Popen(
            [sys.executable, "-m", "feed", "tail", "--url", f"http://127.0.0.1:{server.port}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        until(lambda: server.requests >= 3, timeout=20)
        started, first = time.monotonic(), server.requests
        until(lambda: time.monotonic() - started >= 1.0, timeout=5)
        count = server.requests - first
        tail.kill()
        tail.wait(10)
    finally:
        server.close()
    # At least MIN_DELAY between tries: ten a second at most, not thousands.
    assert count <= 12, count


def test_post_sends_the_longest_post_in_any_script(server: Server) -> None:
    # Escaped as \\ud83d\\ude00, each would take 12 bytes of the body's limit.
    body = "😀" * 10_000
    sent = run_feed("post", "general", body, "--url", server.url, "--token", server.token("ada"))
    assert sent.returncode == 0, sent.stderr
    (posted,) = server.client.get("/api/channels/general/posts").json()["posts"]
    assert posted["body"] == body


# The largest request body a server takes by default (FEED_MAX_BODY_BYTES).
BODY_LIMIT = 64 * 1024


def test_post_reads_standard_input_no_further_than_the_body_limit() -> None:
    """An endless input (``yes x |``) is refused once it is longer than any request a
    server takes, without reading the rest of it into memory."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "feed", "post", "general", "-", "--url", "http://127.0.0.1:9"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**{k: v for k, v in os.environ.items() if not k.startswith("FEED_")}},
    )
    assert proc.stdin is not None
    chunk, written = b"x\n" * 32 * 1024, 0
    try:
        # Far more than it may read; a command that read it all would exit 1, unable
        # to reach the URL, once the input had ended.
        while written < 256 * BODY_LIMIT:
            proc.stdin.write(chunk)
            written += len(chunk)
        proc.stdin.close()
    except BrokenPipeError:
        pass  # it stopped reading: what this test is after
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 2, err
    assert out == b""
    assert err.decode() == (
        f"feed: standard input is longer than a request's {BODY_LIMIT} bytes (413): the "
        f"most a server takes with FEED_MAX_BODY_BYTES={BODY_LIMIT}; for a server that "
        "takes more, set FEED_MAX_BODY_BYTES here to its value\n"
    )
    # What it read, what the pipe holds and the chunk being written when it stopped.
    assert written <= BODY_LIMIT + 1 + 1024 * 1024 + len(chunk), written


def test_post_sends_standard_input_as_long_as_the_body_limit_in_effect(
    make_server: Callable[..., Server],
) -> None:
    server = make_server(max_post_chars=100_000, max_body_bytes=401_024)
    text = "x" * 100_000
    where = ["--url", server.url, "--token", server.token("ada")]
    refused = subprocess.run(
        [sys.executable, "-m", "feed", "post", "general", "-", *where],
        env={k: v for k, v in os.environ.items() if not k.startswith("FEED_")},
        input=text,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert refused.returncode == 2, refused.stderr
    assert refused.stderr.startswith(
        f"feed: standard input is longer than a request's {BODY_LIMIT} bytes (413)"
    )
    # The server's limit, given here too: the whole input is read, and posted.
    for given in (text, text[:-1] + "\N{GRINNING FACE}"):
        sent = subprocess.run(
            [sys.executable, "-m", "feed", "post", "general", "-", *where],
            env={**os.environ, "FEED_MAX_BODY_BYTES": "401024"},
            input=given,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert sent.returncode == 0, sent.stderr
    posts = server.client.get("/api/channels/general/posts").json()["posts"]
    assert [p["body"] for p in posts] == [text[:-1] + "\N{GRINNING FACE}", text]


@pytest.mark.parametrize(
    "command", [["post", "general", "-"], ["post", "--ndjson", "general", "-"]], ids=" ".join
)
def test_post_from_a_closed_standard_input_is_a_usage_error(command: list[str]) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FEED_")}
    closed = subprocess.run(
        ["sh", "-c", 'exec "$@" <&-', "sh", sys.executable, "-m", "feed", *command],
        env={**clean, "FEED_TOKEN": "t"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert closed.returncode == 2, closed.stderr
    what = "posts" if "--ndjson" in command else "post"
    assert (
        closed.stderr == f"feed: there is no standard input to read the {what} from: it is closed\n"
    )
    assert closed.stdout == ""


# What the server needs and a command that only talks to one does not: each costs the
# command's start-up time, most of a short `feed post`'s run.
SERVER_LIBRARIES = ("sqlalchemy", "sqlmodel", "alembic", "jinja2", "markdown_it", "uvicorn")


def test_the_commands_that_talk_to_a_server_import_none_of_its_libraries() -> None:
    # Every module `post`, `tail`, `search` and `channels` import (cli.py, rationale 3).
    modules = "feed.cli, feed.client, feed.client_failures, feed.post_lines, feed.batch_sender, "
    modules += "feed.standard_input, feed.terminal, feed.terminal_text"
    probe = (
        f"import sys, {modules}\n"
        f"print(' '.join(m for m in {SERVER_LIBRARIES!r} if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=30, check=True
    )
    assert result.stdout.split() == []


@pytest.mark.slow
def test_ctrl_c_in_any_command_exits_with_the_interrupted_status_and_no_traceback() -> None:
    """``feed post CHANNEL -`` waiting on its input, interrupted: 130, as every
    command (cli.py, rationale 2), not Python's traceback and -2."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "feed", "post", "general", "-", "--url", "http://127.0.0.1:9"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "FEED_TOKEN": "t"},
        # As from a terminal: a pytest-xdist worker ignores SIGINT, and its children
        # would inherit that.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        # Reading its standard input, which this test holds open until it has exited.
        until(lambda: "pipe" in Path(f"/proc/{proc.pid}/wchan").read_text(), timeout=30)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    finally:
        proc.kill()
        proc.wait()
    assert proc.stdout is not None and proc.stderr is not None
    out, err = proc.stdout.read(), proc.stderr.read().decode()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and out == b""


def test_ctrl_c_stops_the_server_in_good_order_with_the_interrupted_status(
    make_server: Callable[..., Server],
) -> None:
    server = make_server()
    server.post("before the interrupt")
    server.stop(signal.SIGINT)
    assert server.proc is not None and server.proc.returncode == 130, server.logs()
    assert "Traceback" not in server.logs()
