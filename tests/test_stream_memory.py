"""What one open stream costs the server in memory, counted object by object.

The fan-out benchmark reads the server's RSS, which the machine's noise moves by a few
per cent; here the Python allocations the server keeps for each open stream are
counted with tracemalloc, on a real uvicorn in this process, so a change that adds a
few hundred bytes per stream fails a test instead of a benchmark run.
"""

from __future__ import annotations

import tracemalloc
from pathlib import Path

from tests.sse import SSEClient
from tests.test_stream import in_process, open_stream_at
from tests.waiting import until

STREAMS = 200
# Frames kept per allocation: enough to see whether the test's own client made it.
FRAMES = 12
TESTS = str(Path(__file__).resolve().parent / "*")
# What the server's Python objects for one idle, attached JSON stream may add up to,
# in bytes: the connection (uvicorn's protocol, its transport and parser), the request
# cycle and its task's coroutines, the subscriber and its places in the hub.
BUDGET = 10_500


def _open(port: int, count: int) -> list[SSEClient]:
    return [open_stream_at(port, format="json") for _ in range(count)]


def _server_bytes(snapshot: tracemalloc.Snapshot) -> int:
    """What was allocated since tracing started and is still held, but for what the
    test's own clients (tests/*) hold."""
    server = snapshot.filter_traces([tracemalloc.Filter(False, TESTS, all_frames=True)])
    return sum(stat.size for stat in server.statistics("filename"))


def test_an_open_stream_keeps_no_more_than_its_budget_of_server_memory(
    database_url: str,
) -> None:
    with in_process(database_url, "feed") as feed:
        # Once first: the hub's sets and the server's tables grow to this size, and
        # whatever a first stream loads or caches is loaded.
        for stream in _open(feed.port, STREAMS):
            stream.close()
        until(lambda: len(feed.app.hub), lambda n: n == 0, timeout=20)
        tracemalloc.start(FRAMES)
        try:
            streams = _open(feed.port, STREAMS)
            until(feed.attached, lambda a: a == [True] * STREAMS, timeout=20)
            held = _server_bytes(tracemalloc.take_snapshot())
        finally:
            tracemalloc.stop()
        for stream in streams:
            stream.close()
        # Each one still hears its client leave, through the smaller stand-ins.
        until(lambda: len(feed.app.hub), lambda n: n == 0, timeout=20)
    per_stream = held / STREAMS
    assert per_stream <= BUDGET, f"{per_stream:.0f} bytes per open stream"
