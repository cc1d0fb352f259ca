"""``FEED_MAX_STREAM_SECONDS``: streams end at their age, cleanly, and every kind of
client resumes with nothing lost or doubled while posts keep coming."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import pytest

from feed.client import Client
from feed.declarations import SettingsError
from feed.settings import Settings
from tests.conftest import Server
from tests.sse import Message, SSEClient
from tests.waiting import until

AGE = 1.0  # the shortest age the setting accepts
WRITING = 4.0  # seconds of posting: several endings fall inside it


def test_a_stream_ends_cleanly_after_its_age_plus_at_most_a_quarter(
    make_server: Callable[..., Server],
) -> None:
    server = make_server(max_stream_seconds=AGE, retry_ms=3000)
    ages = []
    for _ in range(3):
        opened = time.monotonic()
        with SSEClient(server.port, params={"format": "text"}) as stream:
            stream.wait_closed(timeout=AGE * 1.25 + 5)
        ages.append(time.monotonic() - opened)
        assert stream.graceful  # the final chunk, not a cut
        # It opened with the usual spread delay and ends asking for a prompt comeback.
        assert stream.messages[0].retry is not None and stream.messages[0].retry >= 3000
        assert stream.messages[-1].retry == 250
        assert stream.comments[-1] == "stream reached its maximum age; reconnect to resume"
    assert all(AGE <= age < AGE * 1.25 + 0.5 for age in ages), ages


def test_the_setting_is_off_or_at_least_a_second() -> None:
    assert Settings().max_stream_seconds == 0
    for wrong in (0.5, -1.0, 700_000.0):
        with pytest.raises(SettingsError, match="FEED_MAX_STREAM_SECONDS"):
            Settings.from_env({"FEED_MAX_STREAM_SECONDS": str(wrong)})


@dataclass
class Writing:
    """What the writers posted: (event id, body) of each post, and the last one."""

    posted: list[tuple[int, str]] = field(default_factory=list)
    final: list[int] = field(default_factory=list)  # the closing post's event id, once sent

    def ids(self, matching: str = "") -> list[int]:
        return sorted(i for i, body in self.posted if body.startswith(matching))

    def done(self, last_seen: int) -> bool:
        return bool(self.final) and last_seen >= self.final[0]


@contextmanager
def writing(
    server: Server, bodies: Callable[[int], str], thread: int | None = None
) -> Iterator[Writing]:
    """Two writers post ``bodies(n)`` for ``WRITING`` seconds, then one closing post
    (``lift final``), while the block runs and reads. With ``thread``, every other
    post is a reply to it, and so is the closing one."""
    done = Writing()
    errors: list[BaseException] = []

    def post(body: str, author: str) -> int:
        if thread is not None and ("final" in body or int(body.split()[-1]) % 2 == 0):
            answer = server.client.post(f"/api/posts/{thread}/replies", json={"body": body})
            assert answer.status_code == 201, answer.text
            event_id: int = answer.json()["event_id"]
        else:
            event_id = server.post(body, author=author)["event_id"]
        done.posted.append((event_id, body))
        return event_id

    def writer(name: str) -> None:
        try:
            n = 0
            stop = time.monotonic() + WRITING
            while time.monotonic() < stop:
                post(bodies(n), name)
                n += 1
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    def run() -> None:
        threads = [threading.Thread(target=writer, args=(f"w{k}",)) for k in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(WRITING + 30)
        done.final.append(post("lift final", "w0"))

    runner = threading.Thread(target=run)
    runner.start()
    try:
        yield done
    finally:
        runner.join(WRITING + 60)
    assert not errors


def test_feed_tail_resumes_across_every_ending_with_each_post_once(
    make_server: Callable[..., Server],
) -> None:
    server = make_server(max_stream_seconds=AGE)
    first = server.post("before")["event_id"]
    breaks: list[str] = []
    received: list[int] = []
    deadline = time.monotonic() + WRITING + 30
    following = Client(server.url).follow([], first, lambda why, _: breaks.append(why))
    with writing(server, lambda n: f"post {n}") as written:
        for event in following:
            if event.id is not None and event.event != "message":
                received.append(event.id)
            if written.done(max(received, default=0)):
                break
            # An ending at least every 1.25 s opens a new stream: the loop comes round.
            assert time.monotonic() < deadline, "the posts never all arrived"
        following.close()
    assert received == written.ids()  # each once, in order
    assert breaks.count("the server ended the stream") >= 2, breaks


def follow_raw(
    server: Server, params: dict[str, str], after: int, done: Callable[[int], bool]
) -> tuple[list[Message], int]:
    """A client like a browser's EventSource: reconnects with ``Last-Event-ID`` each
    time the stream ends, until ``done(last id)``; returns the events and the endings."""
    events: list[Message] = []
    endings, last = 0, after
    deadline = time.monotonic() + WRITING + 30
    while not done(last):
        assert time.monotonic() < deadline, "the posts never all arrived"
        with SSEClient(server.port, params=params, headers={"Last-Event-ID": str(last)}) as s:
            s.wait_closed(timeout=AGE * 1.25 + 5)
        assert s.graceful
        endings += 1
        for message in s.events():
            events.append(message)
            last = int(message.id or last)
    return events, endings


def test_a_live_search_resumes_across_every_ending_with_each_match_once(
    make_server: Callable[..., Server],
) -> None:
    server = make_server(max_stream_seconds=AGE)
    first = server.post("before")["event_id"]
    bodies = ["lift {}", "stairs {}"]
    params = {"format": "json", "q": "lift"}
    with writing(server, lambda n: bodies[n % 2].format(n)) as written:
        events, endings = follow_raw(server, params, first, written.done)
    assert [int(e.id or 0) for e in events] == written.ids("lift")  # each match once, in order
    assert all(json.loads(e.data)["post"]["body"].startswith("lift") for e in events)
    assert endings >= 2


def replayed(server: Server, params: dict[str, str], after: int, last: int) -> list[Message]:
    """What one stream resuming from ``after`` replays up to ``last``: the events an
    uninterrupted stream would have carried."""
    with SSEClient(server.port, params=params, headers={"Last-Event-ID": str(after)}) as stream:
        stream.wait_for(lambda s: any(int(e.id or 0) >= last for e in s.events()))
    return [e for e in stream.events() if int(e.id or 0) <= last]


def test_a_thread_stream_resumes_across_every_ending_with_each_event_once(
    make_server: Callable[..., Server],
) -> None:
    server = make_server(max_stream_seconds=AGE)
    top = server.post("the thread")
    params = {"format": "json", "thread": str(top["post"]["id"])}
    with writing(server, lambda n: f"word {n}", thread=top["post"]["id"]) as written:
        events, endings = follow_raw(server, params, top["event_id"], written.done)
    whole = replayed(server, params, top["event_id"], written.final[0])
    # A replay shows each post as it is now (its thread's counts too): ids and kinds.
    assert [(e.id, e.event) for e in events] == [(e.id, e.event) for e in whole]
    replies = {i for i, body in written.posted if body.endswith(("0", "2", "4", "6", "8"))}
    assert replies | {written.final[0]} <= {int(e.id or 0) for e in events}
    assert endings >= 2


def test_a_stream_that_reaches_its_age_mid_replay_skips_no_event(
    make_server: Callable[..., Server],
) -> None:
    # A small backlog makes small replay pieces; a client that does not read holds
    # the replay at its first pieces until the age has passed.
    server = make_server(max_stream_seconds=AGE, subscriber_backlog=16384, replay_limit=5000)
    first = server.post("before")["event_id"]
    body = "long words " * 200
    posted: list[int] = []
    for _ in range(3):
        answer = server.client.post(
            "/api/posts:batch", json=[{"channel": "general", "body": body}] * 1000
        )
        posted += [r["event_id"] for r in answer.json()["results"]]
    params = {"format": "json"}
    with SSEClient(
        server.port, params=params, headers={"Last-Event-ID": str(first)}, rcvbuf=4096
    ) as s:
        opened = time.monotonic()
        live = server.post("while the replay waits")["event_id"]
        # What is waited for here is the stream's age itself, which the server keeps.
        until(lambda: time.monotonic() - opened > AGE * 1.25 + 0.25, timeout=AGE * 2 + 1)
        s.wait_closed(timeout=30)
    assert s.graceful
    got = [int(m.id) for m in s.events() if m.id]
    # Whatever the stream sent, it sent in order and without a gap: the client resumes
    # from its last id and misses nothing before it.
    everything = [*posted, live]
    assert got == everything[: len(got)], (len(got), got[-3:])
