"""The client's bounds on what it reads: an event stream read within a size per event,
an answer within a size, a request within a deadline."""

from __future__ import annotations

import threading

import pytest

from feed.client_bounds import Late, Sent, TooLarge, capped, events, within


def test_events_are_read_across_chunks_and_every_line_ending() -> None:
    stream = [
        b": a heartbeat\r\nretry: 2",
        b"50\r",
        b"\n\r\nid: 7\rev",
        b'ent: post-created\ndata: {"a":\n',
        b"data:  1}\n\n",
        "data: caf\u00e9".encode()[:-1],
        "data: caf\u00e9".encode()[-1:] + b"\n\n",
    ]
    assert list(events(stream, 1000)) == [
        Sent("message", "", "", 250),
        Sent("post-created", '{"a":\n 1}', "7", None),
        Sent("message", "caf\u00e9", "7", None),  # the id stands until another
    ]


@pytest.mark.parametrize(
    "chunks",
    [
        [b"data: " + b"a" * 600, b"a" * 600],  # one line without an end
        [b"data: " + b"a" * 400 + b"\n"] * 3,  # lines of one event without an end
    ],
)
def test_an_event_longer_than_the_limit_is_refused(chunks: list[bytes]) -> None:
    with pytest.raises(TooLarge):
        list(events(iter(chunks), 1000))


def test_events_within_the_limit_each_pass_however_many() -> None:
    one = b"data: " + b"a" * 900 + b"\n\n"
    assert len(list(events([one] * 50, 1000))) == 50


def test_an_answer_is_kept_to_its_limit() -> None:
    assert capped([b"ab", b"cd"], 4) == b"abcd"
    with pytest.raises(TooLarge):
        capped(iter([b"ab", b"cde"]), 4)


def test_work_past_its_deadline_is_late_and_its_failures_are_its_own() -> None:
    release = threading.Event()
    with pytest.raises(Late):
        within(0.05, lambda: release.wait(5))
    release.set()
    assert within(5, lambda: 42) == 42
    with pytest.raises(ZeroDivisionError):
        within(5, lambda: 1 // 0)
