"""SSE on the wire, byte-exact: messages, heartbeats, the hello, HTTP chunks."""

from __future__ import annotations

import json

import pytest
from sse_starlette import ServerSentEvent

from feed import sse
from feed.sse import (
    CLOSING,
    HEARTBEAT,
    HEARTBEAT_EVENT,
    HEARTBEATS,
    Format,
    chunk,
    comment,
    frame,
    hello,
    position,
    retry_hint,
)


def test_frame_is_byte_exact() -> None:
    assert frame("hello", event="post-created", id=7) == (
        b"id: 7\nevent: post-created\ndata: hello\n\n"
    )


def test_multi_line_data_becomes_several_data_lines() -> None:
    assert frame("a\nb\r\nc\rd", event="x") == b"event: x\ndata: a\ndata: b\ndata: c\ndata: d\n\n"


def test_line_breaks_cannot_inject_fields() -> None:
    framed = frame("x", event="post-created\r\nid: 999\ndata: evil")
    assert framed == b"event: post-createdid: 999data: evil\ndata: x\n\n"


def test_unicode_is_utf8() -> None:
    assert frame("Grüße ✓", id=1) == "id: 1\ndata: Grüße ✓\n\n".encode()


def test_retry_and_comment() -> None:
    assert retry_hint(2500) == b"retry: 2500\n\n"
    assert comment("a\nb") == b": a\n: b\n\n"
    assert HEARTBEAT == b": heartbeat\n\n"


def test_heartbeat_event_is_a_named_event_without_an_id() -> None:
    # Without an id: an empty ``id:`` would reset the browser's Last-Event-ID.
    assert HEARTBEAT_EVENT == frame("", event="heartbeat") == b"event: heartbeat\ndata: \n\n"


def test_hello_names_the_release_and_the_heartbeat() -> None:
    framed = hello("2.4.1", 15.0)
    head, data = framed.decode().removesuffix("\n\n").split("\n")
    assert head == "event: hello" and "id:" not in framed.decode()
    assert json.loads(data.removeprefix("data: ")) == {"release": "2.4.1", "heartbeat": 15.0}
    assert hello("2.4.1", 15.0) is framed  # encoded once per process


def test_chunk_is_http_chunked_framing() -> None:
    assert chunk(b"id: 1\n\n") == b"7\r\nid: 1\n\n\r\n"
    assert chunk(b"x" * 26) == b"1a\r\n" + b"x" * 26 + b"\r\n"


def test_a_position_is_a_bare_id() -> None:
    assert position(42) == b"id: 42\n\n"


def test_html_streams_beat_with_an_event_and_the_others_with_a_comment() -> None:
    assert HEARTBEATS == {
        Format.HTML: HEARTBEAT_EVENT,
        Format.JSON: HEARTBEAT,
        Format.TEXT: HEARTBEAT,
    }


def test_a_closing_stream_says_so_in_a_comment() -> None:
    assert CLOSING == b": stream closed; reconnect to resume\n\n"


FRAMED = [
    ("hello", "post-created", 7),
    ("", "heartbeat", None),
    ("a\nb\r\nc\rd\n", "x", 12),
    ("\r\n\r\n", None, 3),
    ('{"id":1,"body":"Grüße ✓ \\u2028"}', "post-updated", 2**40),
    ("x", "post-created\r\nid: 999\ndata: evil", None),
    ("line\u2028separator\u0085next", "post-deleted", 5),
    ("tail\r", None, None),
]


def test_an_event_is_framed_as_sse_starlette_frames_it_without_building_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    expected = [
        ServerSentEvent(data, event=event, id=None if i is None else str(i), sep="\n").encode()
        for data, event, i in FRAMED
    ]
    built: list[object] = []

    class Counted(ServerSentEvent):
        def encode(self) -> bytes:
            built.append(self.data)
            return super().encode()

    monkeypatch.setattr(sse, "ServerSentEvent", Counted)
    assert [frame(data, event=event, id=i) for data, event, i in FRAMED] == expected
    # The hub frames every event once per format: no object, no buffer, no expression
    # when nothing in it needs one.
    assert built == []
