"""Reads take turns per client (feed/fairness.py): one client's burst waits its turn,
another client's read and the health checks go ahead, and a read whose client left
before its turn is not made."""

from __future__ import annotations

import asyncio
import socket
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from feed import fairness
from feed.storage.lists import Lists
from tests.auth import ADMIN, bearer, make_token
from tests.sse import SSEClient
from tests.test_cli import run_feed
from tests.test_search_limits import SLOW, HeldStore, held  # noqa: F401
from tests.test_stream import _hold, _make_event, in_process
from tests.waiting import until


def test_one_clients_reads_wait_their_turn_while_others_go_ahead(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    lists: list[list[str]] = []
    real = Lists.list_posts

    def counted(self: Lists, channels: list[str], *args: object, **kwargs: object) -> object:
        lists.append(list(channels))
        return real(self, channels, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Lists, "list_posts", counted)
    with in_process(database_url, "feed", reads_per_client=1) as feed:
        feed.post("hello")
        turns = feed.app.fair.turns
        release = asyncio.run_coroutine_threadsafe(_make_event(), feed.loop).result(10)
        held = asyncio.run_coroutine_threadsafe(_hold(turns, "127.0.0.1", 1, release), feed.loop)
        until(lambda: turns.users("127.0.0.1") == 1, timeout=10)
        url = f"http://127.0.0.1:{feed.port}"
        path = "/api/channels/general/posts"
        with ThreadPoolExecutor(1) as pool:
            # Signed out, a client is its address.
            waiting = pool.submit(httpx.get, url + path, timeout=10)
            until(lambda: turns.users("127.0.0.1") == 2, timeout=10)
            # A read whose client leaves while it waits.
            left = socket.create_connection(("127.0.0.1", feed.port))
            left.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            until(lambda: turns.users("127.0.0.1") == 3, timeout=10)
            left.close()
            # Another address is served meanwhile, and so are the health checks.
            other = httpx.Client(
                base_url=url, transport=httpx.HTTPTransport(local_address="127.0.0.2")
            )
            with other:
                answer = other.get(path, timeout=10)
            assert answer.status_code == 200
            assert [p["body"] for p in answer.json()["posts"]] == ["hello"]
            # So is someone signed in behind the same address: people take their own turns.
            signed_in = httpx.get(url + path, headers=ADMIN, timeout=10)
            assert [p["body"] for p in signed_in.json()["posts"]] == ["hello"]
            assert httpx.get(url + "/healthz", timeout=10).status_code == 200
            assert not waiting.done()
            assert len(lists) == 2
            feed.loop.call_soon_threadsafe(release.set)
            held.result(10)
            served = waiting.result(10)
        assert served.status_code == 200
        assert [p["body"] for p in served.json()["posts"]] == ["hello"]
        until(lambda: turns.users("127.0.0.1") == 0, timeout=10)
        # Three reads made in all: the other address's, the signed-in one's and the one
        # that waited; not the one whose client left.
        assert len(lists) == 3
        assert feed.app.fair.abandoned == 1


def test_a_long_lived_answer_gives_its_turn_back_once_it_begins(database_url: str) -> None:
    # The admin page's stream is a GET that stays open: it must not hold its
    # client's only turn.
    with in_process(database_url, "feed", reads_per_client=1) as feed:
        feed.post("hello")
        with SSEClient(feed.port, "/admin/stream", headers=ADMIN) as admin:
            assert admin.status == 200
            assert feed.app.fair.turns.users("127.0.0.1") == 0
            url = f"http://127.0.0.1:{feed.port}/api/channels/general/posts"
            answer = httpx.get(url, headers=ADMIN, timeout=10)
            assert [p["body"] for p in answer.json()["posts"]] == ["hello"]


def test_a_search_counts_against_the_search_limit_not_the_read_turns(
    database_url: str,
    held: type[HeldStore],  # noqa: F811
) -> None:
    # Searches have a limit of their own, whose 429 pages know how to wait out: a search
    # gives its read turn back as it begins, so the next read is not held behind it.
    with in_process(database_url, "feed", reads_per_client=1) as feed:
        feed.post("hello")
        url = f"http://127.0.0.1:{feed.port}"
        with ThreadPoolExecutor(1) as pool:
            search = pool.submit(httpx.get, url + "/api/search", params={"q": SLOW}, timeout=10)
            try:
                until(lambda: held.inside, lambda n: n == 1, timeout=10)
                # Well within the held search's 10 s.
                listed = httpx.get(url + "/api/channels/general/posts", timeout=3)
                assert [p["body"] for p in listed.json()["posts"]] == ["hello"]
            finally:
                held.held.set()
            assert search.result(10).json()["results"] == []


@pytest.mark.slow
def test_a_read_that_waited_is_refused_if_its_token_was_revoked_meanwhile(
    database_url: str,
) -> None:
    # Who a read is from is asked for its turn's key, and again once its turn comes.
    token, token_id = make_token(database_url, "kim")
    with in_process(database_url, "feed", reads_per_client=1) as feed:
        feed.post("hello")
        turns = feed.app.fair.turns
        release = asyncio.run_coroutine_threadsafe(_make_event(), feed.loop).result(10)
        held = asyncio.run_coroutine_threadsafe(_hold(turns, "user:kim", 1, release), feed.loop)
        url = f"http://127.0.0.1:{feed.port}/api/channels/general/posts"
        with ThreadPoolExecutor(1) as pool:
            waiting = pool.submit(httpx.get, url, headers=bearer(token), timeout=10)
            until(lambda: turns.users("user:kim") == 2, timeout=10)
            revoked = run_feed("token", "revoke", str(token_id), FEED_DATABASE_URL=database_url)
            assert revoked.returncode == 0, revoked.stderr
            # Once the server knows, a stream opened with it is refused (streams take
            # no turns, so the question is not queued behind kim's held ones).
            until(lambda: _stream_status(feed.port, token), lambda s: s == 401, timeout=20)
            feed.loop.call_soon_threadsafe(release.set)
            held.result(10)
            answer = waiting.result(10)
        assert answer.status_code == 401, answer.text
        assert "revoked" in answer.json()["error"]


def test_a_client_with_too_many_reads_waiting_is_told_to_come_back(database_url: str) -> None:
    with in_process(database_url, "feed", reads_per_client=1) as feed:
        feed.post("hello")
        feed.app.fair.waiting_most = 1
        turns = feed.app.fair.turns
        release = asyncio.run_coroutine_threadsafe(_make_event(), feed.loop).result(10)
        held = asyncio.run_coroutine_threadsafe(_hold(turns, "127.0.0.1", 1, release), feed.loop)
        url = f"http://127.0.0.1:{feed.port}/api/channels/general/posts"
        with ThreadPoolExecutor(1) as pool:
            waiting = pool.submit(httpx.get, url, timeout=10)
            until(lambda: turns.users("127.0.0.1") == 2, timeout=10)
            busy = httpx.get(url, timeout=10)
            assert busy.status_code == 503
            assert busy.headers["retry-after"].isdigit()
            assert "too many requests waiting" in busy.json()["error"]
            assert busy.headers["x-content-type-options"] == "nosniff"
            feed.loop.call_soon_threadsafe(release.set)
            held.result(10)
            assert [p["body"] for p in waiting.result(10).json()["posts"]] == ["hello"]


@pytest.mark.parametrize(
    ("client", "key"),
    [
        (("192.0.2.7", 5000), "192.0.2.7"),
        (("2001:db8:1:2:aaaa::1", 5000), "2001:db8:1:2::/64"),
        (("2001:db8:1:2:bbbb::9", 5000), "2001:db8:1:2::/64"),
        (None, None),
    ],
)
def test_a_signed_out_client_is_its_address_an_ipv6_one_its_64_and_no_address_no_client(
    client: tuple[str, int] | None, key: str | None
) -> None:
    scope = {"type": "http", "method": "GET", "path": "/", "headers": [], "client": client}
    assert asyncio.run(fairness._client(scope)) == key


def _stream_status(port: int, token: str) -> int:
    with SSEClient(port, params={"format": "json"}, headers=bearer(token)) as probe:
        return probe.status
