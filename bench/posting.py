"""Posting for the throughput scenario (throughput.py): raw keep-alive HTTP/1.1
connections that post single posts or batches as fast as answers come back, and the
read back of every post through the API.

Raw HTTP on asyncio streams, not an HTTP library: the posting clients share the two
cores with the server, and the cheaper they are, the more of the measurement is the
server (throughput.py, rationale 1). Bounded twice: a fixed number of posts and a
deadline (rationale 3).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

from bench.client import MARKER, marker
from bench.fanout import CREATED, HOST, BenchError, auth_line
from feed.batch_input import PREFER_MINIMAL

REQUEST_TIMEOUT = 10.0
PAGE = 200  # the API's largest page
# The bench needs each item's status, not its post back (6).
PREFER = f"Prefer: {PREFER_MINIMAL}\r\n"
CONTENT_LENGTH = re.compile(rb"\r\ncontent-length: *(\d+)", re.IGNORECASE)


class Connection:
    """One keep-alive HTTP/1.1 connection to the server."""

    def __init__(self, port: int, token: str = "") -> None:
        self.port = port
        self.token = token
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(
        self, method: str, path: str, payload: object = None, extra: str = ""
    ) -> tuple[int, bytes]:
        """One request and its answer; ``extra``: more header lines, each ending CRLF."""
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(HOST, self.port)
        assert self.reader is not None
        body = b"" if payload is None else json.dumps(payload).encode()
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {HOST}:{self.port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            f"{auth_line(self.token)}{extra}\r\n"
        )
        async with asyncio.timeout(REQUEST_TIMEOUT):
            self.writer.write(head.encode() + body)
            answer = await self.reader.readuntil(b"\r\n\r\n")
            length = CONTENT_LENGTH.search(answer)
            if length is None:
                raise BenchError(f"{method} {path}: an answer without Content-Length")
            data = await self.reader.readexactly(int(length[1]))
        return int(answer.split()[1]), data

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


# One request of a posting connection, made from the number of its first post: its
# path, its JSON payload, any extra header lines, and how many posts it carries.
Request = tuple[str, Any, str, int]


async def post_many(
    port: int, token: str, posts: int, deadline: float, concurrency: int
) -> tuple[int, int, float, list[float]]:
    """Posts 0..posts-1 from ``concurrency`` connections; (answered 201, refused,
    seconds, each answered post's publish latency in ms)."""

    def request(k: int) -> Request:
        return "/api/channels/general/posts", {"author": "bench", "body": marker(k)}, "", 1

    def created(status: int, _answer: bytes) -> int:
        return 1 if status in CREATED else 0

    return await _post_all(port, token, iter(range(posts)), deadline, concurrency, request, created)


async def post_batches(
    port: int, token: str, posts: int, deadline: float, concurrency: int, size: int
) -> tuple[int, int, float, list[float]]:
    """``post_many`` through the batch endpoint, ``size`` posts a request (6)."""

    def request(first: int) -> Request:
        last = min(first + size, posts)
        items = [{"channel": "general", "body": marker(k)} for k in range(first, last)]
        return "/api/posts:batch", items, PREFER, len(items)

    def created(status: int, answer: bytes) -> int:
        if status != 200:
            return 0
        return sum(r["status"] == 201 for r in json.loads(answer)["results"])

    starts = iter(range(0, posts, size))
    return await _post_all(port, token, starts, deadline, concurrency, request, created)


async def _post_all(
    port: int,
    token: str,
    starts: Iterator[int],
    deadline: float,
    concurrency: int,
    request: Callable[[int], Request],
    created: Callable[[int, bytes], int],
) -> tuple[int, int, float, list[float]]:
    """The requests made from ``starts``, from ``concurrency`` connections until they
    run out or ``deadline``; each request's posts that ``created`` counts as answered
    201, the others refused."""
    made = refused = 0
    finished = time.monotonic()
    publish_ms: list[float] = []

    async def worker() -> None:
        nonlocal made, refused, finished
        conn = Connection(port, token)
        try:
            # The deadline is checked before a number is taken, so the posts made are
            # always 0..made-1, whatever the deadline cut.
            while time.monotonic() < deadline:
                first = next(starts, None)
                if first is None:
                    return
                path, payload, extra, count = request(first)
                sent = time.monotonic()
                status, answer = await conn.request("POST", path, payload, extra)
                finished = time.monotonic()
                ok = created(status, answer)
                made += ok
                refused += count - ok
                publish_ms.extend([(finished - sent) * 1000] * ok)
        finally:
            conn.close()

    started = time.monotonic()
    async with asyncio.TaskGroup() as group:
        for _ in range(concurrency):
            group.create_task(worker())
    return made, refused, finished - started, publish_ms


async def stored_markers(port: int, posts: int) -> int:
    """How many distinct bench posts the API lists, newest first, page by page."""
    found: set[int] = set()
    conn = Connection(port)
    path = f"/api/channels/general/posts?limit={PAGE}"
    try:
        for _ in range(posts // PAGE + 2):  # bounded: one page more than needed
            status, data = await conn.request("GET", path)
            if status != 200:
                raise BenchError(f"listing posts answered {status}")
            page = json.loads(data)
            for item in page["posts"]:
                match = MARKER.search(item["body"].encode())
                if match:
                    found.add(int(match[1]))
            if page["next_before"] is None:
                break
            path = f"/api/channels/general/posts?limit={PAGE}&before={page['next_before']}"
    finally:
        conn.close()
    return len(found)
