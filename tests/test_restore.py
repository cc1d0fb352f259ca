"""A database restored from a backup: no event id a screen may hold is handed out again
for another event, and a screen that resumes from an event the restored log lacks is
told to reload (``resync``) instead of silently skipping what is new.

The backup is taken with SQLite's online backup API while the server runs, and put
back while it is stopped, as docs/deployment.md says to.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

from tests.conftest import Server
from tests.sse import Message, SSEClient


def backup(live: Path, copy: Path) -> None:
    source, target = sqlite3.connect(live), sqlite3.connect(copy)
    try:
        source.backup(target)
    finally:
        source.close()
        target.close()


def restore(copy: Path, live: Path) -> None:
    for stale in (live, Path(f"{live}-wal"), Path(f"{live}-shm")):
        stale.unlink(missing_ok=True)
    backup(copy, live)


def resume(server: Server, last_event_id: int, count: int) -> list[Message]:
    headers = {"Last-Event-ID": str(last_event_id)}
    with SSEClient(server.port, params={"format": "json"}, headers=headers) as stream:
        return stream.wait_events(count)


def test_a_screen_that_saw_events_lost_in_a_restore_reloads_and_others_resume_exactly(
    make_server: Callable[..., Server], tmp_path: Path
) -> None:
    live, copy = tmp_path / "feed.db", tmp_path / "backup.db"
    server = make_server(database=live)
    kept = [server.post(f"kept {n}")["event_id"] for n in range(3)]
    backup(live, copy)
    lost = [server.post(f"lost {n}")["event_id"] for n in range(2)]
    with SSEClient(server.port, params={"format": "json", "last_event_id": "0"}) as screen:
        seen = [int(m.id or 0) for m in screen.wait_events(5)]
    assert seen == kept + lost
    server.stop()

    restore(copy, live)
    server = make_server(database=live)
    new = [server.post(f"new {n}")["event_id"] for n in range(2)]
    # Nothing the screens may hold is handed out again.
    assert min(new) > max(seen)

    # A screen that saw the lost posts is told to reload, not fed from a log it
    # does not match.
    (told,) = resume(server, seen[-1], 1)
    assert told.event == "resync" and int(told.id or 0) == new[-1]
    assert "restored" in json.loads(told.data)["reason"]
    # One that had seen only what the backup kept gets exactly what is new.
    replayed = resume(server, kept[-1], 2)
    assert [int(m.id or 0) for m in replayed] == new
    assert [json.loads(m.data)["post"]["body"] for m in replayed] == ["new 0", "new 1"]


def roll_back(live: Path, to_event: int) -> None:
    """What a restore in place, or a failover to a replica that lacked the last commits,
    looks like to a running server: the log ends earlier, and its ids count from there."""
    with sqlite3.connect(live) as db:
        posts = [
            row[0] for row in db.execute("SELECT post_id FROM events WHERE id > ?", (to_event,))
        ]
        db.execute("DELETE FROM events WHERE id > ?", (to_event,))
        db.executemany("DELETE FROM posts WHERE id = ?", [(p,) for p in posts])
        db.execute("UPDATE sqlite_sequence SET seq = ? WHERE name = 'events'", (to_event,))
    db.close()


def test_a_log_that_goes_back_under_a_running_server_ends_its_streams_and_reuses_no_id(
    make_server: Callable[..., Server], tmp_path: Path
) -> None:
    live = tmp_path / "feed.db"
    server = make_server(database=live, poll_interval=0.2)
    ids = [server.post(f"post {n}")["event_id"] for n in range(5)]
    with SSEClient(server.port, params={"format": "json", "last_event_id": "0"}) as screen:
        screen.wait_events(5)
        roll_back(live, ids[2])
        # The server notices, and ends the stream so that the screen resumes...
        screen.wait_closed(timeout=10)
        assert screen.graceful
    # ...and is told to reload, since it holds events the log no longer has.
    (told,) = resume(server, ids[-1], 1)
    assert told.event == "resync"
    # New events never reuse an id a screen may hold.
    new = server.post("after the rollback")["event_id"]
    assert new > ids[-1]
    replayed = resume(server, ids[2], 1)
    assert [int(m.id or 0) for m in replayed] == [new]


def test_the_first_write_after_the_log_went_back_skips_past_every_id_handed_out(
    make_server: Callable[..., Server], tmp_path: Path
) -> None:
    live = tmp_path / "feed.db"
    # No poll within the test: only the write itself can notice.
    server = make_server(database=live, poll_interval=60)
    ids = [server.post(f"post {n}")["event_id"] for n in range(3)]
    roll_back(live, ids[0])
    assert server.post("right after")["event_id"] > ids[-1]


def test_a_log_that_went_back_ends_open_streams_even_when_a_write_noticed_first(
    make_server: Callable[..., Server], tmp_path: Path
) -> None:
    """On a server that is written to, the first write after the log went back finds
    it so (storage/log.py, on ids never reused) before the relay's idle poll would: the
    streams holding the lost posts must still end, and resume into ``resync``."""
    live = tmp_path / "feed.db"
    server = make_server(database=live, poll_interval=60)
    ids = [server.post(f"post {n}")["event_id"] for n in range(5)]
    with SSEClient(server.port, params={"format": "json", "last_event_id": "0"}) as screen:
        screen.wait_events(5)
        roll_back(live, ids[2])
        server.post("one post right after")
        screen.wait_closed(timeout=10)
        assert screen.graceful
    (told,) = resume(server, ids[-1], 1)
    assert told.event == "resync"


def test_a_screen_resuming_from_a_lost_event_is_told_to_reload_though_others_resumed_there(
    make_server: Callable[..., Server], tmp_path: Path
) -> None:
    """Whether a resume id is in the log is asked once for many streams (replays.py):
    that answer must not outlive the log going back."""
    live = tmp_path / "feed.db"
    server = make_server(database=live, poll_interval=60)
    ids = [server.post(f"post {n}")["event_id"] for n in range(5)]
    assert [m.event for m in resume(server, ids[-2], 1)] == ["post-created"]
    roll_back(live, ids[2])
    server.post("one post right after")
    (told, *_) = resume(server, ids[-2], 1)
    assert told.event == "resync"


def test_a_log_that_went_back_is_handled_once_and_streams_opened_after_stay(
    make_server: Callable[..., Server], tmp_path: Path
) -> None:
    live = tmp_path / "feed.db"
    server = make_server(database=live, poll_interval=0.2, heartbeat=0.3)
    ids = [server.post(f"post {n}")["event_id"] for n in range(3)]
    with SSEClient(server.port, params={"format": "json", "last_event_id": "0"}) as screen:
        screen.wait_events(3)
        roll_back(live, ids[0])
        screen.wait_closed(timeout=10)
    # A stream opened once the rollback was handled lives on through later polls: four
    # heartbeats 0.3 s apart see several polls 0.2 s apart go by.
    params = {"format": "json", "last_event_id": str(ids[0])}
    with SSEClient(server.port, params=params) as after:
        after.wait_for(lambda s: s.heartbeats() >= 4)
        later = [server.post(f"later {n}")["event_id"] for n in range(3)]
        assert [int(m.id or 0) for m in after.wait_events(3)] == later
        assert not after.ended
    assert server.logs().count("open streams end and will reload") == 1
