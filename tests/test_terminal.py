"""``feed post``, ``feed tail`` and ``feed channels`` against a real server."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable

import pytest

from tests.auth import ADMIN_TOKEN
from tests.conftest import Server, free_port
from tests.legacy import stored_channel, stored_posts
from tests.test_cli import run_feed
from tests.waiting import until


def feed_process(*args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEED_")}
    return subprocess.Popen(
        [sys.executable, "-m", "feed", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def by_bob(server: Server) -> list[str]:
    return ["--token", server.token("bob"), "--url", server.url]


def as_admin(server: Server) -> list[str]:
    return ["--token", ADMIN_TOKEN, "--url", server.url]


def wait_for_subscriber(server: Server, timeout: float = 20) -> None:
    until(
        lambda: server.client.get("/readyz").json()["subscribers"] >= 1,
        timeout=timeout,
        failure=lambda _: AssertionError("the tail never connected"),
    )


def test_post_publishes_and_tail_prints_replayed_and_live_events(server: Server) -> None:
    ada = server.token("ada")
    first = run_feed("post", "general", "hello *there*", "--token", ada, "--url", server.url)
    assert first.returncode == 0, first.stderr
    said = re.fullmatch(r"posted to #general: post 1, event (\d+)", first.stdout.strip())
    assert said is not None, first.stdout
    piped = subprocess.run(
        [sys.executable, "-m", "feed", "post", "announcements", "-", "--json", *by_bob(server)],
        input="from  stdin\nsecond line",
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert json.loads(piped.stdout)["post"]["body"] == "from  stdin\nsecond line"
    # The event named is the post's, before the second post's.
    assert json.loads(piped.stdout)["event_id"] > int(said[1])

    tail = feed_process(
        "tail", "--since", "0", "--count", "3", "--color", "never", "--url", server.url
    )
    server.post("live one", author="grace")
    out, err = tail.communicate(timeout=30)
    assert tail.returncode == 0, err
    lines = out.splitlines()
    assert [line.split(" ", 1)[1] for line in lines] == [
        "#general ada: hello *there*",
        "#announcements bob: from stdin second line",
        "#general grace: live one",
    ]


def test_tail_json_filters_channels_and_prints_one_object_per_line(server: Server) -> None:
    server.post("not this one")
    wanted = server.post("this one", channel="announcements")
    tail = run_feed(
        "tail",
        "--since",
        "0",
        "--count",
        "1",
        "--format",
        "json",
        "--channel",
        "announcements",
        "--url",
        server.url,
    )
    assert tail.returncode == 0, tail.stderr
    (line,) = tail.stdout.splitlines()
    payload = json.loads(line)
    assert (payload["id"], payload["post"]["body"]) == (wanted["event_id"], "this one")


def test_tail_resumes_after_a_server_restart_without_gaps_or_repeats(
    make_server: Callable[..., Server],
) -> None:
    port = free_port()
    server = make_server(port=port)
    tail = feed_process("tail", "--count", "4", "--color", "never", "--url", server.url)
    wait_for_subscriber(server)
    server.post("one")
    server.post("two")
    server.stop(signal.SIGKILL)
    # Written while the first server is down, by another process on the same database.
    other = make_server(database=server.database)
    other.post("three")
    other.stop()
    restarted = make_server(database=server.database, port=port)
    restarted.post("four")
    try:
        out, err = tail.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        tail.kill()
        out, err = tail.communicate()
        raise AssertionError(f"tail did not finish; printed:\n{out}\n{err}") from None
    assert tail.returncode == 0, err
    assert [line.rsplit(": ", 1)[1] for line in out.splitlines()] == ["one", "two", "three", "four"]
    assert "reconnecting" in err


def test_tail_says_why_the_server_ended_its_stream_when_its_token_is_revoked(
    make_server: Callable[..., Server],
) -> None:
    server = make_server(access_recheck=0.2)
    made = run_feed("token", "create", "wall", FEED_DATABASE_URL=server.database)
    token, number = made.stdout.split()[0], re.search(r"token (\d+)", made.stdout)
    assert number is not None
    tail = feed_process("tail", "--token", token, "--url", server.url)
    wait_for_subscriber(server)
    run_feed("token", "revoke", number.group(1), FEED_DATABASE_URL=server.database)
    try:
        _, err = tail.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        tail.kill()
        raise AssertionError(f"tail did not end: {tail.communicate()}") from None
    # It is told why, then refused on its way back in (exit code 3).
    assert "feed: the server ended this stream: token of 'wall' revoked" in err.splitlines()
    assert tail.returncode == 3, err


def test_refusals_and_unreachable_servers_have_their_own_exit_codes(server: Server) -> None:
    refused = run_feed("post", "nope", "hi", *as_admin(server))
    assert refused.returncode == 3
    assert (
        refused.stderr.strip() == "feed: the server answered 404: There is no channel named 'nope'."
    )
    empty = run_feed("post", "general", "", *as_admin(server))
    assert empty.returncode == 3 and "422" in empty.stderr
    nobody = run_feed("post", "general", "hi", "--url", server.url)
    assert nobody.returncode == 3
    assert nobody.stderr.strip() == (
        "feed: the server answered 401: Posting needs a writer's token or a signed-in session."
    )
    wrong = run_feed("post", "general", "hi", "--token", "feed_nope", "--url", server.url)
    assert wrong.returncode == 3 and "401: The token is not valid" in wrong.stderr
    gone = f"http://127.0.0.1:{free_port()}"
    for command in (["post", "general", "hi"], ["tail"], ["channels"]):
        result = run_feed(*command, "--url", gone)
        assert result.returncode == 1, command
        assert result.stderr.startswith(f"feed: cannot reach {gone}")


def in_process(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """What ``feed *argv`` prints, run in this process: the commands' answers are the same
    as a process's (each test here still runs the command as a process where it fails)."""
    from feed import cli

    code = cli.main(argv)
    out, err = capsys.readouterr()
    assert (code, err) == (0, ""), argv
    return out


def test_channels_are_listed_created_retitled_archived_and_restored(
    server: Server, capsys: pytest.CaptureFixture[str]
) -> None:
    def feed(*args: str) -> str:
        return in_process(capsys, "channels", *as_admin(server), *args)

    assert feed().splitlines() == ["announcements\tAnnouncements", "general\tGeneral"]
    assert feed("create", "ops", "Operations", "--description", "on call") == (
        "#ops: Operations (open)\n"
    )
    assert feed("rename", "ops", "Ops team") == "#ops: Ops team (open)\n"
    assert feed("archive", "ops") == "#ops: Ops team (archived)\n"
    assert feed("list").splitlines()[-1] == "ops\tOps team\t(archived)"
    refused = run_feed("post", "ops", "hi", *as_admin(server))
    assert refused.returncode == 3
    assert "409: The channel 'ops' is archived" in refused.stderr
    assert feed("restore", "ops") == "#ops: Ops team (open)\n"
    again = run_feed("channels", *as_admin(server), "create", "ops", "Again")
    assert again.returncode == 3
    assert (
        again.stderr.strip()
        == "feed: the server answered 409: A channel named 'ops' already exists."
    )


def test_tail_shows_channel_changes_and_never_passes_escape_sequences(
    make_server: Callable[..., Server], database_url: str
) -> None:
    # The server refuses such text now (test_input.py); one stored earlier stays.
    stored_posts(database_url, "\x1b[2J\x1b[31mred alert\x07", author="eve")
    stored_channel(database_url, "ops", "Ops \x1b[5mteam")
    server = make_server()
    tail = run_feed("tail", "--since", "0", "--count", "2", "--color", "never", "--url", server.url)
    assert tail.returncode == 0, tail.stderr
    assert "\x1b" not in tail.stdout and "\x07" not in tail.stdout
    posted, created = sorted(tail.stdout.splitlines(), key=lambda line: "#ops" in line)
    assert posted.split(" ", 1)[1] == "#general eve: [2J[31mred alert"
    assert created == "#ops was created: Ops [5mteam"


def test_tail_json_escapes_c0_and_c1_control_characters(
    make_server: Callable[..., Server], database_url: str
) -> None:
    body = "csi \x9b2J, nel \x85, osc \x9d0;owned\x9c, esc \x1b[2J, del \x7f end"
    stored_posts(database_url, body, author="eve")
    server = make_server()
    tail = run_feed("tail", "--since", "0", "--count", "1", "--format", "json", "--url", server.url)
    assert tail.returncode == 0, tail.stderr
    # Split on line feeds only: str.splitlines would also split on a raw U+0085.
    (line,) = tail.stdout.rstrip("\n").split("\n")
    controls = [c for c in line if ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F]
    assert controls == []
    assert "\\u009b2J" in line and "\\u001b[2J" in line
    assert json.loads(line)["post"]["body"] == body


def test_memberships_are_granted_listed_and_taken_away_from_the_cli(
    server: Server, capsys: pytest.CaptureFixture[str]
) -> None:
    def feed(*args: str) -> str:
        return in_process(capsys, "channels", *as_admin(server), *args)

    assert feed("create", "board", "Board", "--private", "--announcement-only") == (
        "#board: Board (open)\n"
    )
    assert feed("list").splitlines()[1] == "board\tBoard\t(private, announcement_only)"
    assert feed("grant", "board", "ada", "--post") == "ada is a member of #board and may post\n"
    assert feed("grant", "board", "bob") == "bob is a member of #board\n"
    assert feed("members", "board") == "ada\tmay post\nbob\treads\n"
    assert feed("ungrant", "board", "bob") == "bob is no longer a member of #board\n"
    assert feed("members", "board") == "ada\tmay post\n"
    # Only admins manage memberships.
    refused = run_feed(
        "channels", "--token", server.token("ada"), "--url", server.url, "grant", "board", "eve"
    )
    assert refused.returncode == 3 and "403" in refused.stderr
    # ada may post there now, as herself.
    posted = run_feed(
        "post", "board", "minutes", "--token", server.token("ada"), "--url", server.url
    )
    assert posted.returncode == 0, posted.stderr


def test_a_reaction_event_reads_as_who_reacted_with_what_and_counts() -> None:
    from feed.terminal import line

    party = "\U0001f389"
    payload = {
        "id": 9,
        "type": "post-reactions",
        "post": {
            "id": 12,
            "channel": "general",
            "reactions": [{"reaction": party, "count": 3, "names": ["ada", "bo", "cy"]}],
        },
        "changes": [
            {"name": "bo", "reaction": party, "reacted": False},
            {"name": "a\x1b[31mda", "reaction": party, "reacted": True},
        ],
        "more": 2,
    }
    shown = line("post-reactions", json.dumps(payload), colour=False)
    # The escape is gone; what is left of it is plain text.
    expected = f"#general a[31mda reacted {party} to post 12 (and 3 more changes) (now {party} 3)"
    assert shown == expected
    payload["changes"] = [{"name": "bo", "reaction": party, "reacted": False}]
    payload["more"] = 0
    shown = line("post-reactions", json.dumps(payload), colour=False)
    assert shown == f"#general bo took back {party} from post 12 (now {party} 3)"
    # A reply's reaction names the reply with its thread.
    payload["post"]["parent"] = 7
    shown = line("post-reactions", json.dumps(payload), colour=False)
    assert shown == f"#general bo took back {party} from reply 12 to post 7 (now {party} 3)"
