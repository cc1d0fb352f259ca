"""``feed post --ndjson`` pointed at a live pipe and an unreliable road to the server: a
line is posted soon after it is written, a batch whose answer is lost is sent again and
posted once, a run that gives up or is interrupted says which lines were and were not
posted, and a rate limit is waited out.

The road is a proxy in this process that forwards each request to the server and can
keep the answer to some of them: the server has written the batch, the command never
hears so."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import pytest

from tests.auth import make_token
from tests.conftest import Server
from tests.waiting import until

# Long enough for a loaded machine; a line that is posted at all is posted in well
# under a second.
DEADLINE = 20.0


class Proxy:
    """A loopback HTTP proxy, a request a connection: forwards every request to
    ``target`` and answers with the server's answer, except for the requests whose
    number ``keeps`` says: those are forwarded (so the server writes them) and their
    connection closed without an answer, or held open unanswered while ``hold``."""

    def __init__(self, target: int, keeps: Callable[[int], bool], hold: bool = False) -> None:
        self.target, self.keeps, self.hold = target, keeps, hold
        self.count = 0
        self.released = threading.Event()
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.released.set()
        self._listener.close()

    def _serve(self) -> None:
        for _ in range(1000):  # bounded: no test sends more
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._relay, args=(conn,), daemon=True).start()

    def _relay(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(DEADLINE)
            request = _read_request(conn)
            with self._lock:
                self.count += 1
                number = self.count
            answer = self._forward(request)
            if not self.keeps(number):
                conn.sendall(answer)
            elif self.hold:
                self.released.wait(DEADLINE)

    def _forward(self, request: bytes) -> bytes:
        with socket.create_connection(("127.0.0.1", self.target), timeout=DEADLINE) as up:
            up.sendall(request)
            answer = b""
            while chunk := up.recv(65536):
                answer += chunk
        return answer


def _read_request(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = [line for line in head.split(b"\r\n") if not line.lower().startswith(b"connection:")]
    length = next(
        (int(line.split(b":")[1]) for line in lines if line.lower().startswith(b"content-length:")),
        0,
    )
    while len(body) < length:
        body += conn.recv(65536)
    # One request a connection: the server closes it once it has answered.
    return b"\r\n".join([*lines, b"Connection: close"]) + b"\r\n\r\n" + body


@pytest.fixture
def proxies() -> Iterator[list[Proxy]]:
    made: list[Proxy] = []
    yield made
    for proxy in made:
        proxy.close()


def feed_post(url: str, token: str, stdin: int | IO[bytes]) -> subprocess.Popen[bytes]:
    # As a shell runs it: standard output a pipe, buffered unless the command flushes.
    clean = {
        k: v for k, v in os.environ.items() if not k.startswith("FEED_") and k != "PYTHONUNBUFFERED"
    }
    command = [sys.executable, "-m", "feed", "post", "--ndjson", "general", "-"]
    return subprocess.Popen(
        [*command, "--url", url, "--token", token],
        env=clean,
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        # A pytest-xdist worker ignores SIGINT; the command must hear it as a terminal's.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def bodies(server: Server) -> list[str]:
    posts = server.client.get("/api/channels/general/posts?limit=200").json()["posts"]
    return [p["body"] for p in reversed(posts)]


def numbered(path: Path, lines: int) -> Path:
    path.write_text("".join(f"bulk {n}\n" for n in range(1, lines + 1)))
    return path


def finished(proc: subprocess.Popen[bytes]) -> tuple[int, str, str]:
    if proc.stdin is not None and proc.stdin.closed:
        proc.stdin = None  # closed by the test, the end of its input: nothing to flush
    out, err = proc.communicate(timeout=DEADLINE * 3)
    return proc.returncode, out.decode(), err.decode()


@pytest.mark.slow
def test_a_line_from_a_live_pipe_is_posted_while_the_pipe_is_still_open(server: Server) -> None:
    proc = feed_post(server.url, server.token("ada"), subprocess.PIPE)
    assert proc.stdin is not None
    try:
        proc.stdin.write(b"the build started\n")
        proc.stdin.flush()
        until(lambda: bodies(server), lambda got: got == ["the build started"], timeout=DEADLINE)
        assert proc.poll() is None  # still reading its pipe
        proc.stdin.write(b"the build passed\n")
        proc.stdin.flush()
        until(lambda: bodies(server), lambda got: len(got) == 2, timeout=DEADLINE)
        proc.stdin.close()
        code, out, err = finished(proc)
    finally:
        proc.kill()
    assert code == 0, err
    assert [line.split(":")[0] for line in out.splitlines()] == ["line 1", "line 2"]
    assert bodies(server) == ["the build started", "the build passed"]


def posted_lines(server: Server) -> list[str]:
    """Every body of #general, oldest first, all pages."""
    found: list[str] = []
    before = None
    for _ in range(100):
        query = "/api/channels/general/posts?limit=200" + (f"&before={before}" if before else "")
        posts = server.client.get(query).json()["posts"]
        if not posts:
            break
        found += [p["body"] for p in posts]
        before = posts[-1]["id"]
    return list(reversed(found))


@pytest.mark.slow
def test_a_batch_whose_answer_is_lost_is_sent_again_and_posted_once(
    server: Server, proxies: list[Proxy], tmp_path: Path
) -> None:
    proxy = Proxy(server.port, keeps=lambda n: n == 2)
    proxies.append(proxy)
    with numbered(tmp_path / "in.txt", 2500).open("rb") as stdin:  # a regular file
        code, out, err = finished(feed_post(server.url, server.token("ada"), stdin))
    assert code == 0, err
    assert [line.split(":")[0] for line in out.splitlines()] == [
        f"line {n}" for n in range(1, 2501)
    ]
    assert posted_lines(server) == [f"bulk {n}" for n in range(1, 2501)]
    # A fast producer still fills its batches: three, and the one sent again.
    assert proxy.count <= 5, proxy.count


@pytest.mark.slow
def test_a_run_that_gives_up_says_which_lines_were_sent_and_not_confirmed(
    server: Server, proxies: list[Proxy], tmp_path: Path
) -> None:
    proxy = Proxy(server.port, keeps=lambda n: n >= 2)  # every answer after the first
    proxies.append(proxy)
    with numbered(tmp_path / "in.txt", 3000).open("rb") as stdin:
        code, out, err = finished(feed_post(proxy.url, server.token("ada"), stdin))
    assert code == 1, err
    assert "Traceback" not in err
    reported = len(out.splitlines())
    said = re.search(r"lines (\d+) to (\d+) were sent but not confirmed", err)
    assert said is not None, err
    first, last = int(said[1]), int(said[2])
    assert first == reported + 1 and last > first, err
    assert f"lines from {last + 1} on were not posted" in err, err
    # What was sent and not confirmed was written once, however often it was sent.
    assert posted_lines(server) == [f"bulk {n}" for n in range(1, last + 1)]


@pytest.mark.slow
def test_ctrl_c_while_waiting_for_input_exits_130_and_says_what_was_posted(
    server: Server,
) -> None:
    proc = feed_post(server.url, server.token("ada"), subprocess.PIPE)
    assert proc.stdin is not None
    try:
        proc.stdin.write(b"one\ntwo\n")
        proc.stdin.flush()
        until(lambda: bodies(server), lambda got: len(got) == 2, timeout=DEADLINE)
        proc.send_signal(signal.SIGINT)
        code, out, err = finished(proc)
    finally:
        proc.kill()
    assert code == 130, err
    assert "Traceback" not in err, err
    assert len(out.splitlines()) == 2
    assert "interrupted" in err and "lines 1 to 2 were posted or refused" in err, err


@pytest.mark.slow
def test_ctrl_c_while_a_batch_is_unanswered_names_its_lines(
    server: Server, proxies: list[Proxy]
) -> None:
    proxy = Proxy(server.port, keeps=lambda n: n == 2, hold=True)
    proxies.append(proxy)
    proc = feed_post(proxy.url, server.token("ada"), subprocess.PIPE)
    assert proc.stdin is not None
    try:
        proc.stdin.write(b"one\ntwo\n")
        proc.stdin.flush()
        until(lambda: bodies(server), lambda got: len(got) == 2, timeout=DEADLINE)
        proc.stdin.write(b"three\n")
        proc.stdin.flush()
        until(lambda: bodies(server), lambda got: len(got) == 3, timeout=DEADLINE)
        proc.send_signal(signal.SIGINT)  # while the answer is held
        code, _, err = finished(proc)
    finally:
        proc.kill()
    assert code == 130, err
    assert "Traceback" not in err, err
    assert "line 3 was sent but not confirmed" in err, err


@pytest.mark.slow
def test_a_rate_limited_run_waits_and_posts_every_line(
    make_server: Callable[..., Server], tmp_path: Path
) -> None:
    server = make_server(post_rate=600)  # ten a second once the first 600 are spent
    with numbered(tmp_path / "in.txt", 630).open("rb") as stdin:
        code, out, err = finished(feed_post(server.url, server.token("ada"), stdin))
    assert code == 0, err
    assert "refused" not in out
    assert len(out.splitlines()) == 630
    assert posted_lines(server) == [f"bulk {n}" for n in range(1, 631)]


@pytest.mark.slow
def test_standard_input_that_is_not_utf_8_is_said_to_be_so(server: Server) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FEED_")}
    token = server.token("ada")
    where = ["--url", server.url, "--token", token]
    single = subprocess.run(
        [sys.executable, "-m", "feed", "post", "general", "-", *where],
        env=clean,
        input=b"ok\n\xff\n",
        capture_output=True,
        timeout=DEADLINE,
    )
    assert single.returncode == 2
    said = single.stderr.decode()
    assert "standard input is not valid UTF-8" in said and "line 2" in said, said
    assert "surrogate" not in said
    lines = subprocess.run(
        [sys.executable, "-m", "feed", "post", "--ndjson", "general", "-", *where],
        env=clean,
        input=b"ok\n\xff\n",
        capture_output=True,
        timeout=DEADLINE,
    )
    assert lines.returncode == 3
    out = lines.stdout.decode().splitlines()
    assert out[1].startswith("line 2: refused (400): This line is not valid UTF-8"), out
    assert "surrogate" not in out[1]


@pytest.mark.slow
def test_each_line_is_reported_as_it_is_posted_and_sigterm_gives_the_account(
    server: Server,
) -> None:
    proc = feed_post(server.url, server.token("ada"), subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None
    read: list[bytes] = []
    stdout = proc.stdout
    reader = threading.Thread(target=lambda: read.extend(iter(stdout.readline, b"")))
    try:
        reader.start()
        proc.stdin.write(b"term-1\nterm-2\n")
        proc.stdin.flush()
        # Into a pipe, each line as it is known, while the run goes on.
        until(lambda: list(read), lambda got: len(got) == 2, timeout=DEADLINE)
        assert proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(DEADLINE)
        reader.join(DEADLINE)
        err = proc.stderr.read().decode() if proc.stderr else ""
    finally:
        proc.kill()
    assert code == 143, err
    assert [line.split(b":")[0] for line in read] == [b"line 1", b"line 2"]
    assert err == (
        "feed: terminated; lines 1 to 2 were posted or refused, as reported above; "
        "lines from 3 on were not posted\n"
    )
    assert bodies(server) == ["term-1", "term-2"]


@pytest.mark.slow
def test_batches_larger_than_the_server_takes_are_split_and_every_line_posted(
    make_server: Callable[..., Server], tmp_path: Path
) -> None:
    # A batch may be 64 bodies of 9 KiB: 576 KiB, less than a thousand of these lines.
    server = make_server(max_post_chars=2000, max_body_bytes=9216)
    given = tmp_path / "in.txt"
    given.write_text("".join(f"bulk {n} {'x' * 600}\n" for n in range(1, 2501)))
    with given.open("rb") as stdin:
        code, out, err = finished(feed_post(server.url, server.token("ada"), stdin))
    assert code == 0, err
    assert [line.split(":")[0] for line in out.splitlines()] == [
        f"line {n}" for n in range(1, 2501)
    ]
    assert [body.split()[1] for body in posted_lines(server)] == [str(n) for n in range(1, 2501)]


@pytest.mark.slow
def test_a_line_of_too_many_values_is_refused_alone_and_the_run_goes_on(server: Server) -> None:
    many = json.dumps({"body": "x", "a": [0] * 33_000})
    given = f"before\n{many}\nafter\n".encode()
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FEED_")}
    where = ["--url", server.url, "--token", server.token("ada")]
    done = subprocess.run(
        [sys.executable, "-m", "feed", "post", "--ndjson", "general", "-", *where],
        env=clean,
        input=given,
        capture_output=True,
        timeout=DEADLINE,
    )
    assert done.returncode == 3, done.stderr
    out = done.stdout.decode().splitlines()
    assert [line.split(":")[0] for line in out] == ["line 1", "line 2", "line 3"]
    assert out[1].startswith("line 2: refused (422): The batch holds more than"), out
    assert bodies(server) == ["before", "after"]


@pytest.mark.slow
def test_a_token_revoked_during_a_rate_wait_leaves_the_written_lines_reported(
    make_server: Callable[..., Server], tmp_path: Path
) -> None:
    server = make_server(post_rate=6)  # six at once, then one every ten seconds
    token, token_id = make_token(server.database, "ada")
    with numbered(tmp_path / "in.txt", 10).open("rb") as stdin:
        proc = feed_post(server.url, token, stdin)
        try:
            until(lambda: bodies(server), lambda got: len(got) == 6, timeout=DEADLINE)
            revoked = subprocess.run(
                [sys.executable, "-m", "feed", "token", "revoke", str(token_id)],
                env={**server.env, "FEED_DATABASE_URL": server.database},
                capture_output=True,
                timeout=DEADLINE,
            )
            assert revoked.returncode == 0, revoked.stderr
            code, out, err = finished(proc)
        finally:
            proc.kill()
    assert code == 3, err
    assert [line.split(":")[0] for line in out.splitlines()] == [f"line {n}" for n in range(1, 7)]
    assert err.splitlines()[-1].endswith(
        "lines 1 to 6 were posted or refused, as reported above; lines from 7 on were not posted"
    ), err
    assert posted_lines(server) == [f"bulk {n}" for n in range(1, 7)]
