"""Resuming a stream against a real uvicorn: exactly what was missed, in order, after a
gap, a restart or an early reconnect; ``resync`` when the gap cannot be replayed."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable

import pytest

from tests.conftest import Server
from tests.sse import SSEClient, event_ids, subscribed


@pytest.fixture
def database_url(each_database_url: str) -> str:
    """Every resume test runs on SQLite and on PostgreSQL."""
    return each_database_url


@pytest.mark.parametrize("how", ["header", "query"])
def test_resume_returns_exactly_the_missed_events_in_order(server: Server, how: str) -> None:
    ids = [server.post(f"p{i}")["event_id"] for i in range(6)]
    if how == "header":
        stream = SSEClient(server.port, headers={"Last-Event-ID": str(ids[2])})
    else:
        stream = SSEClient(server.port, params={"last_event_id": str(ids[2])})
    with stream:
        events = stream.wait_events(3)
        assert [int(e.id or 0) for e in events] == ids[3:]
        assert [json.loads(e.data)["post"]["body"] for e in events] == ["p3", "p4", "p5"]
        later = server.post("live")["event_id"]
        stream.wait_events(4)
        assert event_ids(stream) == [*ids[3:], later]


def test_header_wins_over_query_parameter(server: Server) -> None:
    ids = [server.post(f"p{i}")["event_id"] for i in range(4)]
    params = {"last_event_id": str(ids[0])}
    with SSEClient(server.port, params=params, headers={"Last-Event-ID": str(ids[2])}) as stream:
        stream.wait_events(1)
        assert event_ids(stream) == [ids[3]]


def test_replay_shows_the_current_state_of_each_post(server: Server) -> None:
    first = server.post("draft")
    server.client.patch(f"/api/posts/{first['post']['id']}", json={"body": "final"})
    with SSEClient(server.port, params={"last_event_id": "0", "format": "json"}) as stream:
        created, updated = stream.wait_events(2)
    assert json.loads(created.data)["post"]["body"] == "final"
    assert (created.event, updated.event) == ("post-created", "post-updated")


def test_resume_during_concurrent_posting_has_no_gap_and_no_duplicate(server: Server) -> None:
    before = [server.post(f"pre{i}")["event_id"] for i in range(150)]
    posted: list[int] = []
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for i in range(50):
                posted.append(server.post(f"w{n}-{i}", author=f"w{n}")["event_id"])
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(3)]
    for thread in threads:
        thread.start()
    # Resume from several points while the writers run, each racing a different commit.
    streams = []
    points = (0, before[39], before[119])
    for resume in points:
        streams.append(SSEClient(server.port, params={"last_event_id": str(resume)}))
    for thread in threads:
        thread.join(60)
    assert not errors
    expected_all = sorted(before + posted)
    assert len(set(expected_all)) == 300
    for stream, resume in zip(streams, points, strict=True):
        with stream:
            expected = [i for i in expected_all if i > resume]
            stream.wait_events(len(expected), timeout=30)
            assert event_ids(stream) == expected


def test_too_large_a_gap_gets_one_resync_then_live(make_server: Callable[..., Server]) -> None:
    server = make_server(replay_limit=5)
    ids = [server.post(f"p{i}")["event_id"] for i in range(8)]
    with SSEClient(server.port, params={"last_event_id": str(ids[0])}) as stream:
        (resync,) = stream.wait_events(1)
        assert resync.event == "resync" and resync.id == str(ids[-1])
        assert "more than 5 events" in json.loads(resync.data)["reason"]
        live = server.post("live")["event_id"]
        stream.wait_events(2)
        assert event_ids(stream) == [ids[-1], live]


def test_a_gap_within_the_limit_is_replayed(make_server: Callable[..., Server]) -> None:
    server = make_server(replay_limit=5)
    ids = [server.post(f"p{i}")["event_id"] for i in range(8)]
    with SSEClient(server.port, params={"last_event_id": str(ids[2])}) as stream:
        stream.wait_events(5)
        assert event_ids(stream) == ids[3:]


def test_resume_from_the_future_gets_resync(server: Server) -> None:
    only = server.post("only")["event_id"]
    with SSEClient(server.port, headers={"Last-Event-ID": str(only + 500)}) as stream:
        (event,) = stream.wait_events(1)
    assert event.event == "resync" and event.id == str(only)
    assert "newer than this feed's newest" in json.loads(event.data)["reason"]


def test_resume_from_an_id_the_log_does_not_hold_gets_resync(server: Server) -> None:
    # Ids a screen holds are ids of real events, unless the log it saw was another
    # (a database restored from an older copy: tests/test_restore.py).
    first = server.post("first")["event_id"]
    second = server.post("second")["event_id"]
    with SSEClient(server.port, headers={"Last-Event-ID": str(first - 1)}) as stream:
        (event,) = stream.wait_events(1)
    assert event.event == "resync" and event.id == str(second)
    assert "is not in this feed's log" in json.loads(event.data)["reason"]
    with SSEClient(server.port, headers={"Last-Event-ID": "0"}) as stream:
        assert [int(m.id or 0) for m in stream.wait_events(2)] == [first, second]


def test_events_survive_a_restart_and_resume_from_the_database(
    make_server: Callable[..., Server],
) -> None:
    server = make_server()
    seen = server.post("before")["event_id"]
    server.stop()
    restarted = make_server(database=server.database)
    missed = [restarted.post(f"missed{i}")["event_id"] for i in range(3)]
    with SSEClient(restarted.port, headers={"Last-Event-ID": str(seen)}) as stream:
        stream.wait_events(3)
        assert event_ids(stream) == missed


def test_a_fresh_stream_starts_with_its_position_so_an_early_reconnect_resumes(
    server: Server,
) -> None:
    earlier = server.post("before")["event_id"]
    before = server.post("before too")["event_id"]
    with subscribed(server.port, {"format": "json"}) as stream:
        stream.wait_for(lambda s: any(m.id and not m.event for m in s.messages))
        marker = next(m for m in stream.messages if m.id and not m.event)
        start = int(marker.id or "")
        # The relay may not have handed the newest event to the hub yet: whatever
        # the position leaves out arrives live, so nothing up to ``before`` is lost.
        assert start in (0, earlier, before)
        due = [i for i in (earlier, before) if i > start]
        stream.wait_events(len(due))
        assert [int(m.id or "") for m in stream.events()] == due
        assert marker.data == "" and marker not in stream.events()
    missed = server.post("while away")["event_id"]
    with subscribed(server.port, {"format": "json", "last_event_id": str(before)}) as resumed:
        (event,) = resumed.wait_events(1)
    assert event.id == str(missed)
