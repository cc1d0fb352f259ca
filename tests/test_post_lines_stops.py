"""``feed post --ndjson`` against a server that answers part of a batch, refuses it
whole or fails: every line already answered is reported, a line that may have been
written is never said not to be, a batch too large for the server is split, and what
the server says reaches the terminal safely.

The server is a fake in this process (``Scripted``) whose n-th request is answered by
a script, so each test says exactly which answer comes when."""

from __future__ import annotations

import contextlib
import io
import json
import tempfile
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest

from feed import batch_sender, cli
from feed.batch_sender import BatchSender
from feed.client_failures import Refused, Unreachable
from feed.post_lines import Account, Line
from tests.loopback import Loopback
from tests.test_cli_safety import no_settings

__all__ = ["no_settings"]  # autouse: each test's settings and directory its own

# What a script answers: status, JSON body, headers.
Answer = tuple[int, Any, dict[str, str]]
Script = Callable[[int, list[dict[str, Any]]], Answer]


class Scripted:
    """A loopback server whose n-th request (from 1), with the items it carried, is
    answered by ``script``; it keeps the items of every request in ``asked``."""

    def __init__(self, script: Script) -> None:
        outer = self
        self.asked: list[list[dict[str, Any]]] = []
        self._lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                items = json.loads(self.rfile.read(length))
                with outer._lock:
                    outer.asked.append(items)
                    number = len(outer.asked)
                status, body, headers = script(number, items)
                sent = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(sent)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(sent)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = Loopback(Handler)
        self.url = self.server.url

    def close(self) -> None:
        self.server.close()


@pytest.fixture
def scripted() -> Iterator[Callable[[Script], Scripted]]:
    started: list[Scripted] = []

    def start(script: Script) -> Scripted:
        started.append(Scripted(script))
        return started[-1]

    yield start
    for server in started:
        server.close()


def post_lines(url: str, stdin: str, *more: str) -> tuple[int, str, str]:
    """``feed post --ndjson general -`` in this process: its status and what it printed."""
    out, err = io.StringIO(), io.StringIO()
    with tempfile.TemporaryFile() as given:  # a descriptor of its own: --ndjson reads it
        given.write(stdin.encode())
        given.seek(0)
        fake_in = io.TextIOWrapper(given, "utf-8")
        with (
            contextlib.redirect_stdout(out),
            contextlib.redirect_stderr(err),
            pytest.MonkeyPatch.context() as patch,
        ):
            patch.setattr("sys.stdin", fake_in)
            argv = ["post", "--ndjson", *(more or ("general",)), "-", "--url", url]
            code = cli.main([*argv, "--token", "t"])
        fake_in.detach()
    return code, out.getvalue(), err.getvalue()


def written(number: int) -> dict[str, Any]:
    return {"status": 201, "id": number, "channel": "general", "event_id": number}


def limited(seconds: float) -> dict[str, Any]:
    return {"status": 429, "error": "Too many posts.", "detail": {"retry_after": seconds}}


def results(*each: dict[str, Any]) -> Answer:
    return 200, {"results": list(each)}, {}


def refusal(status: int, error: str) -> Answer:
    return status, {"error": error, "detail": None}, {}


def reported(out: str) -> list[str]:
    return [line.split(":")[0] for line in out.splitlines()]


def test_a_batch_partly_written_then_refused_whole_reports_what_was_written(
    scripted: Callable[[Script], Scripted],
) -> None:
    # Three lines written, two past the rate; the token revoked while they wait.
    server = scripted(
        lambda n, items: (
            results(written(1), written(2), written(3), limited(0.01), limited(0.01))
            if n == 1
            else refusal(401, "This token has been revoked.")
        )
    )
    code, out, err = post_lines(server.url, "a\nb\nc\nd\ne\n")
    assert code == 3, err
    assert reported(out) == ["line 1", "line 2", "line 3"]
    assert err.splitlines()[-1] == (
        "feed: the server answered 401: This token has been revoked; lines 1 to 3 were "
        "posted or refused, as reported above; lines from 4 on were not posted"
    )


def test_lines_sent_without_an_answer_are_never_said_not_to_be_posted(
    scripted: Callable[[Script], Scripted],
) -> None:
    server = scripted(
        lambda n, items: (
            refusal(503, "restarting") if n == 1 else refusal(401, "This token has been revoked.")
        )
    )
    code, out, err = post_lines(server.url, "a\nb\n")
    assert (code, out) == (3, ""), err
    assert err.splitlines()[-1] == (
        "feed: the server answered 401: This token has been revoked (sent 2 times); lines 1 "
        "to 2 were sent but not confirmed (each may or may not have been posted); lines "
        "from 3 on were not posted"
    )


def test_a_batch_sent_again_names_its_one_line_as_one(
    scripted: Callable[[Script], Scripted],
) -> None:
    server = scripted(
        lambda n, items: refusal(503, "restarting") if n == 1 else results(written(1))
    )
    code, out, err = post_lines(server.url, "a\n")
    assert code == 0, err
    assert reported(out) == ["line 1"]
    assert "sending line 1 again in 0.5 s" in err, err


def test_a_batch_too_large_for_the_server_is_split_until_it_is_taken(
    scripted: Callable[[Script], Scripted],
) -> None:
    # The server takes two of these items at most (a proxy's body limit, say).
    taken = iter(range(1, 100))

    def fits(items: list[dict[str, Any]]) -> bool:
        return len(json.dumps(items)) <= 400

    def script(n: int, items: list[dict[str, Any]]) -> Answer:
        if not fits(items):
            return refusal(413, "The request body is too large.")
        return results(*(written(next(taken)) for _ in items))

    server = scripted(script)
    lines = "".join(f"{n:03d} {'x' * 100}\n" for n in range(1, 9))
    code, out, err = post_lines(server.url, lines)
    assert code == 0, err
    assert reported(out) == [f"line {n}" for n in range(1, 9)]
    posted = [item["body"][:3] for asked in server.asked if fits(asked) for item in asked]
    assert posted == [f"{n:03d}" for n in range(1, 9)]  # each once, in order
    assert len(server.asked) == 3 + 4  # 8 lines refused, then 4 and 4, then taken as 2s


def test_a_line_a_batch_cannot_carry_is_refused_alone_and_the_others_posted(
    scripted: Callable[[Script], Scripted],
) -> None:
    taken = iter(range(1, 100))
    values = "The batch holds more than 32000 JSON values; its items are objects of a few fields."

    def script(n: int, items: list[dict[str, Any]]) -> Answer:
        if any(item["body"] == "many values" for item in items):
            return refusal(422, values)
        return results(*(written(next(taken)) for _ in items))

    server = scripted(script)
    lines = '{"body": "one"}\n{"body": "many values"}\n{"body": "three"}\nfour\n'
    code, out, err = post_lines(server.url, lines)
    assert code == 3, err
    assert out.splitlines() == [
        "line 1: posted to #general: post 1, event 1",
        f"line 2: refused (422): {values}",
        "line 3: posted to #general: post 2, event 2",
        "line 4: posted to #general: post 3, event 3",
    ]


def test_a_channel_that_cannot_be_named_is_refused_before_any_line_is_sent(
    scripted: Callable[[Script], Scripted],
) -> None:
    server = scripted(lambda n, items: results(*(written(1) for _ in items)))
    code, out, err = post_lines(server.url, "a\n", "Bad/../x")
    assert (code, out, server.asked) == (2, "", []), err
    assert err.startswith("feed: there is no channel named 'Bad/../x'."), err


def test_a_retry_shows_what_the_server_said_safely(
    scripted: Callable[[Script], Scripted], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(batch_sender, "MAX_ATTEMPTS", 2)
    server = scripted(lambda n, items: refusal(503, "down \x1b]0;PWNED\x07 \u202eevil"))
    code, out, err = post_lines(server.url, "a\n")
    assert (code, out) == (1, ""), err
    assert "\x1b" not in err and "\x07" not in err and "\u202e" not in err, repr(err)
    assert err.splitlines()[0] == (
        "feed: the server answered 503: down ]0;PWNED \\u202eevil; sending line 1 again in 0.5 s"
    )


# -- the sender alone: stopped while it waits ------------------------------------------


class Answers:
    """A client whose ``post_batch`` gives each answer of ``answers`` in turn: a list
    of results, or a failure to raise."""

    def __init__(self, *answers: list[dict[str, Any]] | Exception) -> None:
        self.answers = list(answers)

    def post_batch(self, items: list[Line], *, minimal: bool) -> list[tuple[int, dict[str, Any]]]:
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return [(line.number, result) for line, result in zip(items, answer, strict=True)]


def interrupt(seconds: float) -> None:
    raise KeyboardInterrupt


def lines(count: int) -> list[Line]:
    return [Line(n, {"channel": "general", "body": str(n)}) for n in range(1, count + 1)]


def test_lines_answered_before_a_rate_wait_are_reported_before_it() -> None:
    account = Account()
    client = Answers([written(1), written(2), limited(30), limited(30)])
    sender = BatchSender(client, account, minimal=True, say=lambda said: None, sleep=interrupt)  # type: ignore[arg-type]
    got: list[int] = []
    with pytest.raises(KeyboardInterrupt):
        for line, _ in sender.send(lines(4)):
            got.append(line.number)
    assert got == [1, 2]
    assert account.summary() == (
        "lines 1 to 2 were posted or refused, as reported above; lines from 3 on were not posted"
    )


def test_a_batch_refused_whole_for_the_rate_is_not_said_to_be_unconfirmed() -> None:
    account = Account()
    refused = Refused("the server answered 429: Too many requests.")
    refused.status, refused.retry_after = 429, 30.0
    sender = BatchSender(
        Answers(refused), account, minimal=True, say=lambda said: None, sleep=interrupt
    )  # type: ignore[arg-type]
    with pytest.raises(KeyboardInterrupt):
        list(sender.send(lines(3)))
    assert account.summary() == "no line was posted"


def test_a_batch_interrupted_while_sent_again_is_unconfirmed() -> None:
    account = Account()
    lost = Unreachable("cannot reach the server: the connection broke")
    sender = BatchSender(
        Answers(lost), account, minimal=True, say=lambda said: None, sleep=interrupt
    )  # type: ignore[arg-type]
    with pytest.raises(KeyboardInterrupt):
        list(sender.send(lines(3)))
    assert account.summary() == (
        "lines 1 to 3 were sent but not confirmed (each may or may not have been posted); "
        "lines from 4 on were not posted"
    )
