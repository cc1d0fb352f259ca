"""How many different live searches one client, and one process, may follow
(live_searches.py): each different search is matched against every event on the loop
that serves everyone, so one client must not add them without bound."""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import ExitStack

import pytest

from feed.live_searches import LiveSearches, LiveSearchesFull, TooManyLiveSearches
from feed.post_words import Words
from feed.search import parse
from tests.auth import ADMIN
from tests.conftest import Server
from tests.sse import SSEClient
from tests.waiting import until


def test_a_client_follows_only_so_many_different_searches() -> None:
    live = LiveSearches(per_client=2, most=100)
    live.open("address:10.0.0.1", "lift", signed_in=False)
    live.open("address:10.0.0.1", "stairs", signed_in=False)
    # Another stream of a search it follows is always allowed.
    live.open("address:10.0.0.1", "lift", signed_in=False)
    with pytest.raises(TooManyLiveSearches) as refused:
        live.open("address:10.0.0.1", "door", signed_in=False)
    assert refused.value.status == 429
    assert refused.value.headers == {"Retry-After": "10"}
    assert "this address" in refused.value.message and "at most 2" in refused.value.message
    # Another client has its own count.
    live.open("user:ann", "door", signed_in=True)
    assert live.of("address:10.0.0.1") == 2 and len(live) == 3
    # One stream of "lift" closed: it still follows lift, so "door" is still one too many.
    live.close("address:10.0.0.1", "lift")
    with pytest.raises(TooManyLiveSearches):
        live.open("address:10.0.0.1", "door", signed_in=False)
    live.close("address:10.0.0.1", "lift")
    live.open("address:10.0.0.1", "door", signed_in=False)
    assert live.of("address:10.0.0.1") == 2
    for client, text in [("address:10.0.0.1", "stairs"), ("address:10.0.0.1", "door")]:
        live.close(client, text)
    live.close("user:ann", "door")
    assert len(live) == 0 and live.of("address:10.0.0.1") == 0


def test_the_process_follows_only_so_many_different_searches() -> None:
    live = LiveSearches(per_client=10, most=2)
    live.open("user:ann", "lift", signed_in=True)
    live.open("user:bob", "stairs", signed_in=True)
    with pytest.raises(LiveSearchesFull) as refused:
        live.open("user:cy", "door", signed_in=True)
    assert refused.value.status == 503
    assert refused.value.headers is not None and "Retry-After" in refused.value.headers
    # A search someone follows costs nothing more: never refused for this.
    live.open("user:cy", "lift", signed_in=True)
    assert len(live) == 2 and live.of("user:cy") == 1
    live.close("user:ann", "lift")
    live.close("user:cy", "lift")
    live.open("user:cy", "door", signed_in=True)
    assert sorted(live._all) == ["door", "stairs"]


class UnsearchedWords(Words):
    """A body whose joined text must not be read: the phrase is settled by lookups."""

    __slots__ = ()

    @property
    def joined(self) -> str:
        raise AssertionError("the body was searched for a phrase one of whose words it lacks")


def test_a_phrase_with_a_word_the_post_lacks_is_settled_without_searching_the_body() -> None:
    body = UnsearchedWords("the lift is broken on the third floor " * 200)
    assert not parse('"the zq0x0"').matches(body)
    assert parse('lift -"the zq0x0"').matches(body)
    assert not parse('"third zq*"').matches(body)
    # A phrase whose words all stand in the post is still looked for as a phrase.
    assert parse('"lift is"').matches(Words("the lift is broken"))
    assert not parse('"is lift"').matches(Words("the lift is broken"))


def stream(server: Server, q: str, headers: dict[str, str] | None = None) -> SSEClient:
    return SSEClient(server.port, params={"format": "json", "q": q}, headers=headers)


def opened(found: SSEClient) -> SSEClient:
    assert found.status == 200, found.read_body()
    found.wait_for(lambda s: any(m.retry for m in s.messages))
    return found


def refusal(found: SSEClient) -> tuple[int, str, str | None]:
    with found:
        assert found.status != 200
        error = json.loads(found.read_body())["error"]
        return found.status, error, found.headers.get("retry-after")


def once_let_in(server: Server, q: str, headers: dict[str, str] | None = None) -> SSEClient:
    """A stream of ``q`` once the server lets it in: it gives a search back when it
    sees the last stream of it go, which a closed socket does not wait for."""

    def attempt() -> SSEClient | None:
        found = stream(server, q, headers)
        if found.status == 200:
            return opened(found)
        found.close()
        return None

    let_in = until(attempt, timeout=10)
    assert let_in is not None
    return let_in


@pytest.mark.slow
def test_live_searches_beyond_the_limits_are_refused_before_the_stream_and_given_back(
    make_server: Callable[..., Server],
) -> None:
    server = make_server(max_live_searches_per_client=2, max_live_searches=3)
    with ExitStack() as stack:
        lift = stack.enter_context(opened(stream(server, "lift")))
        stack.enter_context(opened(stream(server, "stairs")))
        # The same search, typed another way, is one the address already follows.
        stack.enter_context(opened(stream(server, " LIFT ")))
        status, error, retry = refusal(stream(server, "door"))
        assert (status, retry) == (429, "10")
        assert "Too many live searches from this address: at most 2" in error
        # A signed-in person counts apart from the address, and the process is full at 3.
        stack.enter_context(opened(stream(server, "door", ADMIN)))
        status, error, retry = refusal(stream(server, "window", ADMIN))
        assert (status, retry) == (503, "2")
        assert "as many different live searches as it may (3)" in error
        # A search someone follows is never refused for the process's count.
        stack.enter_context(opened(stream(server, "stairs", ADMIN)))
        # A post still reaches the streams that were let in.
        post = server.post("the lift is broken")["post"]["id"]
        lift.wait_for(lambda s: any(m.event == "post-created" for m in s.messages))
        created = [m for m in lift.messages if m.event == "post-created"]
        assert [json.loads(m.data)["post"]["id"] for m in created] == [post]
    # Every stream closed: each search is given back, and three new ones fill the
    # process again.
    with ExitStack() as stack:
        stack.enter_context(once_let_in(server, "window", ADMIN))
        stack.enter_context(once_let_in(server, "roof", ADMIN))
        stack.enter_context(once_let_in(server, "cellar"))
        status, error, _retry = refusal(stream(server, "attic"))
        assert status == 503, error
