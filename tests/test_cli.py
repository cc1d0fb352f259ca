"""The ``feed`` command: start-up errors are clear and stop the process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import Server, free_port

pytestmark = pytest.mark.slow  # every test here runs the feed command


def run_feed(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FEED_")}
    return subprocess.run(
        [sys.executable, "-m", "feed", *args],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_more_than_one_worker_with_the_memory_broker_is_refused() -> None:
    result = run_feed("serve", "--workers", "2")
    assert result.returncode == 2
    assert result.stderr.startswith(
        "feed: FEED_WORKERS=2 needs a broker shared by the workers: the memory broker"
    )
    assert "Set FEED_BROKER_URL to a postgresql:// or redis:// URL" in result.stderr


def test_a_bad_setting_stops_start_up_naming_the_variable() -> None:
    result = run_feed("serve", FEED_HEARTBEAT="often")
    assert result.returncode == 2
    assert result.stderr.strip() == "feed: FEED_HEARTBEAT must be a number, got 'often'"


def test_help_lists_the_serve_command() -> None:
    result = run_feed("--help")
    assert result.returncode == 0
    assert "serve" in result.stdout


def run_into_a_closed_pipe(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``feed`` with its output into a pipe whose reader has already gone, as
    ``feed ... | head -1`` leaves it once head has its line."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FEED_")}
    read, write = os.pipe()
    os.close(read)
    try:
        return subprocess.run(
            [sys.executable, "-m", "feed", *args],
            env={**clean, **env},
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            timeout=30,
        )
    finally:
        os.close(write)


def test_commands_that_print_stop_quietly_when_their_reader_goes(tmp_path: Path) -> None:
    database = {"FEED_DATABASE_URL": f"sqlite:///{tmp_path / 'feed.db'}"}
    for args in (("token", "create", "ada", "--role", "admin"), ("token", "list"), ("--help",)):
        done = run_into_a_closed_pipe(*args, **database)
        assert (done.returncode, done.stderr) == (0, ""), args
    # The README's own line, through a shell and a real head.
    shell = subprocess.run(
        ["bash", "-c", f"set -o pipefail; {sys.executable} -m feed token create bo | head -1"],
        env={**{k: v for k, v in os.environ.items() if not k.startswith("FEED_")}, **database},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert (shell.returncode, shell.stderr) == (0, "")
    assert shell.stdout.startswith("feed_") and shell.stdout.count("\n") == 1


def test_tail_stops_quietly_when_its_reader_goes(server: Server) -> None:
    server.post("one")
    server.post("two")
    done = run_into_a_closed_pipe("tail", "--since", "0", "--url", server.url)
    assert (done.returncode, done.stderr) == (0, "")


def test_a_broken_connection_is_not_taken_for_a_closed_pipe(tmp_path: Path) -> None:
    done = run_into_a_closed_pipe("tail", "--url", f"http://127.0.0.1:{free_port()}")
    assert done.returncode == 1 and "cannot reach" in done.stderr


def test_a_malformed_server_url_is_a_usage_error_not_a_traceback() -> None:
    for command in (["post", "general", "hi", "--token", "x"], ["tail"], ["channels", "list"]):
        for url in ("http://[::1", "ftp://example.com", "localhost:8000"):
            done = run_feed(*command[:1], "--url", url, *command[1:])
            assert done.returncode == 2, (command, url, done.stderr)
            assert done.stderr.startswith(f"feed: --url {url!r} is not"), done.stderr
            assert "Traceback" not in done.stderr
