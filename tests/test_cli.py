"""The ``feed`` command: start-up errors are clear and stop the process."""

from __future__ import annotations

import os
import subprocess
import sys


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
