"""Connection limits against a real server: half-sent requests, slow bodies, huge
headers, and one address holding many connections under a low open-files limit.

The attacker's sockets are bound to 127.0.0.2 and the honest client's to 127.0.0.1:
all of 127/8 is loopback, so the server sees two addresses.
"""

from __future__ import annotations

import contextlib
import json
import resource
import select
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from feed.connections import holder_of, per_address_cap
from feed.settings import Settings
from tests.auth import ADMIN
from tests.conftest import Server
from tests.waiting import until

ATTACKER = "127.0.0.2"
HALF_A_REQUEST = b"GET /api/channels HTTP/1.1\r\nHost: feed\r\nX-Slow: "
LOW_LIMIT = 1024


def low_open_files_limit() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (LOW_LIMIT, LOW_LIMIT))


def connect(port: int, source: str = "127.0.0.1") -> socket.socket:
    sock = socket.socket()
    sock.bind((source, 0))
    sock.settimeout(10)
    sock.connect(("127.0.0.1", port))
    return sock


@contextlib.contextmanager
def sockets(opened: list[socket.socket]) -> Iterator[list[socket.socket]]:
    try:
        yield opened
    finally:
        for sock in opened:
            sock.close()


def still_open(socks: list[socket.socket]) -> list[socket.socket]:
    """The sockets the server has not closed (nothing readable: no EOF, no reset)."""
    closed: set[socket.socket] = set()
    for start in range(0, len(socks), 500):  # select() takes descriptors below 1,024 only
        batch = socks[start : start + 500]
        poller = select.poll()
        for sock in batch:
            poller.register(sock, select.POLLIN | select.POLLERR | select.POLLHUP)
        by_fd = {sock.fileno(): sock for sock in batch}
        closed |= {by_fd[fd] for fd, _ in poller.poll(0)}
    return [sock for sock in socks if sock not in closed]


def response_of(sock: socket.socket, timeout: float = 10) -> bytes:
    """Everything the server sends until it closes the connection."""
    sock.settimeout(timeout)
    received = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            received += chunk
    return received


def test_one_address_with_many_half_sent_requests_cannot_lock_others_out(
    make_server: Callable[..., Server],
) -> None:
    server = make_server(preexec=low_open_files_limit, header_timeout=3, log_level="info")
    cap = per_address_cap(100_000, LOW_LIMIT)  # make_server allows 100,000 streams
    with sockets([]) as attack:
        for _ in range(1100):
            sock = connect(server.port, ATTACKER)
            sock.sendall(HALF_A_REQUEST)
            attack.append(sock)
        # Answered at once (within the client's timeout), not after the header timeout.
        answer = httpx.get(f"{server.url}/api/channels", headers=ADMIN, timeout=2)
        assert answer.status_code == 200
        # Beyond the cap, the attacker's connections are cut as they are accepted.
        held = until(lambda: still_open(attack), lambda s: len(s) <= cap, timeout=5, pause=0.2)
        assert len(held) >= cap // 2, "the cap cut more than the excess"
        # The rest are closed once their headers are late, bytes or no bytes.
        until(lambda: still_open(attack), lambda s: not s, timeout=10, pause=0.2)
    assert server.client.get("/api/channels").status_code == 200
    assert f"one address may hold {cap} connections" in server.logs()
    assert f"{ATTACKER} holds {cap} connections" in server.logs()


def test_headers_trickling_in_do_not_hold_a_kept_alive_connection(
    make_server: Callable[..., Server],
) -> None:
    server = make_server(header_timeout=1)
    with connect(server.port) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: feed\r\n\r\n")
        sock.settimeout(5)
        first = b""
        while not first.endswith(b'"alive"}'):  # the whole answer, which may come in parts
            first += sock.recv(65536)
        assert first.startswith(b"HTTP/1.1 200")
        sent = 0
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            for byte in HALF_A_REQUEST:  # one byte every 0.1 s, never the end
                sock.sendall(bytes([byte]))
                sent += 1
                readable, _, _ = select.select([sock], [], [], 0.1)
                if readable:
                    break
        assert response_of(sock) == b""
        # Closed before the trickle ended: each byte did not extend the timeout.
        assert sent < len(HALF_A_REQUEST)


def test_a_body_that_does_not_arrive_in_time_gets_408_and_the_connection_closes(
    make_server: Callable[..., Server],
) -> None:
    server = make_server(body_timeout=1)
    with connect(server.port) as sock:
        sock.sendall(
            b"POST /api/channels/general/posts HTTP/1.1\r\nHost: feed\r\n"
            + f"Authorization: {ADMIN['Authorization']}\r\n".encode()
            + b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
            + b'{"body": "only a'
        )
        started = time.monotonic()
        answer = response_of(sock)
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert b"\r\ncontent-type: application/json\r\n" in answer  # as every error's
    assert answer.endswith(b'{"error":"The request body did not arrive in time.","detail":null}')
    assert time.monotonic() - started > 0.9  # it waited for the body, then gave up
    assert server.client.get("/api/channels/general/posts").json()["posts"] == []
    assert "Traceback" not in server.logs()


def test_huge_headers_get_431_and_the_connection_closes(
    make_server: Callable[..., Server],
) -> None:
    server = make_server()
    with connect(server.port) as sock:
        head = b"GET /api/channels HTTP/1.1\r\nHost: feed\r\nX-Big: "
        sock.sendall(head + b"a" * (Settings().max_header_bytes + 1024))
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            for _ in range(32 * 16):  # up to 32 MB in all, while the server listens
                sock.sendall(b"a" * 65536)
        answer = response_of(sock)
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:100]
    assert b"\r\ncontent-type: application/json\r\n" in answer  # as every error's
    assert answer.endswith(b'{"error":"Request headers are too large.","detail":null}')
    assert server.client.get("/api/channels").status_code == 200


@pytest.mark.parametrize(
    "request_bytes",
    [b"GARBAGE\r\n\r\n", b"GET / HTTP/1.1\r\nHost: feed\r\nBad Header: x\r\n\r\n"],
    ids=["no request line", "a space in a header's name"],
)
def test_a_request_that_is_not_http_gets_a_json_400_and_the_connection_closes(
    make_server: Callable[..., Server], request_bytes: bytes
) -> None:
    server = make_server()
    with connect(server.port) as sock:
        sock.sendall(request_bytes)
        answer = response_of(sock)
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:100]
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"\r\ncontent-type: application/json\r\n" in head  # as every error's
    assert b"\r\ndate: " in head  # as every answer's
    assert json.loads(body) == {"error": "The request is not well-formed HTTP.", "detail": None}
    assert server.client.get("/api/channels").status_code == 200


def test_ordinary_requests_with_cookies_and_long_headers_are_answered(
    make_server: Callable[..., Server],
) -> None:
    server = make_server()
    cookies = "; ".join(f"c{n}={'v' * 100}" for n in range(80))  # 8 KB of cookies
    with httpx.Client(base_url=server.url, headers=ADMIN, timeout=10) as http:
        for _ in range(3):  # on one kept-alive connection
            answer = http.get(
                "/api/channels",
                headers={"Cookie": cookies, "User-Agent": "x" * 2000, "Accept-Language": "en"},
            )
            assert answer.status_code == 200
        posted = http.post("/api/channels/general/posts", json={"body": "b" * 5000})
        assert posted.status_code == 201


def test_ipv6_connections_count_against_their_slash_64() -> None:
    assert holder_of("2001:db8:1:2:aaaa::1") == holder_of("2001:db8:1:2:bbbb::9")
    assert holder_of("2001:db8:1:2::1") == "2001:db8:1:2::/64"
    assert holder_of("2001:db8:1:3::1") != holder_of("2001:db8:1:2::1")
    assert holder_of("::ffff:10.0.0.7") == "10.0.0.7" and holder_of("10.0.0.7") == "10.0.0.7"
    assert holder_of("127.0.0.2") != holder_of("127.0.0.1")


def write_calls(pid: int) -> int:
    """How many write system calls ``pid`` has made (a socket's send among them)."""
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("syscw:"):
            return int(line.split()[1])
    raise AssertionError(f"no syscw for process {pid}")


def kept_alive_answer(sock: socket.socket, request: bytes) -> tuple[bytes, bytes]:
    """Send ``request`` on a kept-alive connection; its answer's head and body."""
    sock.sendall(request)
    received = b""
    while b"\r\n\r\n" not in received:
        received += sock.recv(65536)
    head, _, body = received.partition(b"\r\n\r\n")
    length = int(
        next(
            v
            for k, _, v in (h.partition(b": ") for h in head.split(b"\r\n"))
            if k.lower() == b"content-length"
        )
    )
    while len(body) < length:
        body += sock.recv(65536)
    return head, body


def test_an_answer_is_written_in_one_send_with_its_head_and_body(server: Server) -> None:
    assert server.proc is not None
    # A 404 touches neither the database nor a worker thread, whose hand-backs to the
    # event loop are writes too: what is counted is the answers' own.
    request = b"GET /api/no-such-thing HTTP/1.1\r\nHost: feed\r\n\r\n"
    with sockets([connect(server.port)]) as (sock,):
        first_head, first_body = kept_alive_answer(sock, request)  # warms the caches up
        before = write_calls(server.proc.pid)
        answers = [kept_alive_answer(sock, request) for _ in range(50)]
        writes = write_calls(server.proc.pid) - before
    # The same bytes as ever, one send each, with a few writes to spare for the
    # process's own timers (its metrics, shared once a second).
    assert first_head.startswith(b"HTTP/1.1 404 Not Found\r\n")
    assert b"x-request-id: " in first_head.lower()
    assert first_body.startswith(b"{")
    assert all(head.startswith(b"HTTP/1.1 404") and body == first_body for head, body in answers)
    assert writes < 50 + 10, writes
