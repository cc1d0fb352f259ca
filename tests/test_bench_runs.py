"""The load client's ``--runs`` counting (bench/runs.py): a read's events proved a run of
ids from the first, the last and the count; anything lost, doubled or out of order
caught; the witness checking every post; and a real server's batches counted exactly."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterable
from typing import Any

from bench import runs, throughput
from bench.client import Subscriber, Tally, checked_runs
from tests.conftest import Server

HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
START = 1796076331099000  # a position: the event before the first post


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data)


def feed_frame(event: int, post: int) -> bytes:
    """A post-created frame as feed's JSON stream sends it: the marker twice."""
    body = f"bench post {post} at {10**12 + post};"
    data = json.dumps(
        {"id": event, "type": "post-created", "post": {"body": body, "html": f"<p>{body}</p>\n"}},
        separators=(",", ":"),
    )
    return f"id: {event}\nevent: post-created\ndata: {data}\n\n".encode()


def feed_stream(events: Iterable[tuple[int, int]], per_chunk: int = 7) -> bytes:
    """A whole feed stream: the opening with its position, then runs of frames as
    chunks, and a heartbeat among them."""
    out = HEAD + chunk(b"retry: 2402\n\nid: %d\n\n" % START)
    frames = [feed_frame(event, post) for event, post in events]
    for n in range(0, len(frames), per_chunk):
        out += chunk(b"".join(frames[n : n + per_chunk]))
        if n == per_chunk:
            out += chunk(b": heartbeat\n\n")
    return out


def nchan_stream(ids: Iterable[str]) -> bytes:
    out = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n: hi\n\n"
    for post, event in enumerate(ids):
        data = f'{{"author": "bench", "body": "bench post {post} at {10**12 + post};"}}'
        out += f"id: {event}\ndata: {data}\n\n".encode()
    return out


def received(
    stream: bytes, posts: int, read: int = 997, ready: bytes = b"\nretry:", cut: bytes = b""
) -> Any:
    """What a witness and another subscriber make of ``stream``, handed over in reads
    of ``read`` bytes, or each ending with ``cut``: (their results, the other's Run)."""
    if cut:
        reads = [piece + cut for piece in stream.split(cut)]
    else:
        reads = [stream[at : at + read] for at in range(0, len(stream), read)]

    async def run() -> Any:
        tally = Tally(2, posts, 0, by_runs=True)
        tally.expect(posts)
        subs = {i: Subscriber(i, tally, b"", ready, None) for i in range(2)}
        for data in reads:
            for sub in subs.values():
                sub.data_received(data)
        found = checked_runs(tally, subs) | {"delivered": tally.delivered}
        return found, subs[1].run

    return asyncio.run(run())


def in_order(posts: int) -> list[tuple[int, int]]:
    return [(START + 1 + k, k) for k in range(posts)]


def test_a_read_of_feeds_events_is_proved_a_run_without_reading_each_event() -> None:
    found, other = received(feed_stream(in_order(100)), 100)
    assert found["delivered"] == 200 and found["broken"] == 0
    assert found["run"] == f"{START + 1}..{START + 100}"
    assert other.count == 100 and other.one_by_one == 0
    assert other.mark == b"\nevent: post-created\ndata: "
    # Every pair is in the latency samples, each read weighted by its events.
    assert sum(found["latency_counts"].values()) == 200


def test_an_event_that_spans_several_reads_is_counted_once_it_ends() -> None:
    found, other = received(feed_stream(in_order(40)), 40, read=100)
    assert found["delivered"] == 80 and found["broken"] == 0
    assert other.count == 40 and other.one_by_one == 0


def test_an_event_doubled_skipped_or_out_of_order_breaks_the_run() -> None:
    good = in_order(50)
    doubled = [*good[:20], good[19], *good[20:]]
    skipped = [*good[:20], *good[21:]]
    swapped = [*good[:20], good[21], good[20], *good[22:]]
    for events in (doubled, skipped):
        found, other = received(feed_stream(events), 50)
        assert found["broken"] > 0 and other.broken > 0
    # Two events swapped within one read keep its first, last and count: the witness,
    # which was sent the same events in the same order, is what catches it.
    found, other = received(feed_stream(swapped), 50)
    assert found["broken"] > 0


def test_nchans_ids_count_within_a_second_and_start_again_in_the_next() -> None:
    ids = [f"1700000000:{t}" for t in range(30)] + [f"1700000001:{t}" for t in range(30)]
    found, other = received(nchan_stream(ids), 60, read=500, ready=b": hi")
    assert found["delivered"] == 120 and found["broken"] == 0
    assert other.one_by_one > 0  # the read across the second, event by event
    # Read by read as the events end, each read starting at an id line.
    found, other = received(nchan_stream(ids), 60, ready=b": hi", cut=b"\n\n")
    assert found["delivered"] == 120 and found["broken"] == 0
    assert other.one_by_one == 0  # one event a read: each follows the one before
    gap = [*ids[:30], "1700000001:1", *ids[31:]]
    found, _ = received(nchan_stream(gap), 59, read=500, ready=b": hi")
    assert found["broken"] > 0


def test_the_witness_catches_a_post_sent_twice_under_new_ids() -> None:
    events = [(START + 1 + k, k if k != 30 else 29) for k in range(40)]
    found, other = received(feed_stream(events), 40)
    assert other.broken == 0  # its ids are a run: only the witness can tell
    assert found["broken"] > 0


def test_the_processes_witnesses_must_agree_and_latency_is_counted() -> None:
    one = {
        "delivered": 4,
        "expected": 4,
        "broken": 0,
        "last_at_ns": 5,
        "run": "1..2",
        "latency_counts": {"100": 3, "900": 1},
    }
    other = one | {"run": "1..3", "latency_counts": {"200": 4}}
    added = throughput.added([one, one | {"last_at_ns": 9}])
    assert added["broken"] == 0 and added["delivered"] == 8 and added["last_at_ns"] == 9
    assert throughput.added([one, one, other])["broken"] == 1
    counts = throughput.added([one, other])["latency_counts"]
    assert throughput.counted_percentile(counts, 0.5) == 200
    assert throughput.counted_percentile(counts, 0.99) == 900
    assert runs.rounded(123_456) == 123_000 and runs.rounded(99) == 99


def test_the_load_client_counts_a_real_servers_batches_exactly(server: Server) -> None:
    subscribers, batches, size = 5, 3, 200
    command = [sys.executable, "-m", "bench.client", "--port", str(server.port), "--runs"]
    command += ["--drain", "10", "--subscribers", str(subscribers), "--posts", str(batches * size)]
    with subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    ) as client:
        assert client.stdin is not None and client.stdout is not None
        try:
            assert json.loads(client.stdout.readline())["ready"] == subscribers
            events = []
            for b in range(batches):
                items = [
                    {"channel": "general", "body": f"bench post {k} at {10**12};"}
                    for k in range(b * size, (b + 1) * size)
                ]
                answer = server.client.post("/api/posts:batch", json=items)
                events += [r["event_id"] for r in answer.json()["results"]]
            client.stdin.write("posted\n")
            client.stdin.flush()
            found = json.loads(client.stdout.readline())
        finally:
            client.kill()
    assert found["delivered"] == subscribers * batches * size and found["broken"] == 0
    assert found["run"] == f"{events[0]}..{events[-1]}"
