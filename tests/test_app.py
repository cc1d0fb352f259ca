"""The app outside ``feed serve``: any ASGI server can build it from the environment."""

from __future__ import annotations

import json
from collections.abc import Callable

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
