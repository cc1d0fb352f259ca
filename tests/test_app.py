"""The app outside ``feed serve``: any ASGI server can build it from the environment."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable

import pytest

from feed.server import SWITCH_INTERVAL
from tests.conftest import Server, free_port
from tests.sse import SSEClient

RETRY_MS = 7654  # not the default


def test_uvicorn_serves_streams_and_posts_from_the_app_factory(
    make_server: Callable[..., Server],
) -> None:
    port = free_port()
    uvicorn = ("-m", "uvicorn", "--factory", "feed.app:from_env", "--port", str(port))
    command = (*uvicorn, "--timeout-graceful-shutdown", "1")
    server = make_server(port=port, command=command, retry_ms=RETRY_MS)
    with SSEClient(port, params={"format": "json"}) as stream:
        assert stream.status == 200
        posted = server.post("served by uvicorn alone")
        [event] = stream.wait_events(1)
    assert (event.event, event.id) == ("post-created", str(posted["event_id"]))
    assert json.loads(event.data)["post"]["body"] == "served by uvicorn alone"
    # The settings are the FEED_* variables': the retry hint is FEED_RETRY_MS's.
    [retry] = [m.retry for m in stream.messages if m.retry is not None]
    assert RETRY_MS <= retry <= RETRY_MS * 1.5


@pytest.mark.slow
def test_a_feed_process_hands_the_interpreter_between_threads_often() -> None:
    # A fresh interpreter: the settings of a process are not this test process's to change.
    script = (
        "import sys; from feed.server import configure_process; "
        "from feed.settings import Settings; "
        "configure_process(Settings(log_level='warning')); print(sys.getswitchinterval())"
    )
    found = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert float(found.stdout) == pytest.approx(SWITCH_INTERVAL)
    assert SWITCH_INTERVAL < 0.005 / 5  # well under CPython's own
