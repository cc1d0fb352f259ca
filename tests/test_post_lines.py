"""``feed post --ndjson``'s lines, in this process: how a line becomes an item, where a
line ends, when a batch is sent, and what the account of a run says."""

from __future__ import annotations

import argparse
import contextlib
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from feed.arguments import INTERRUPTED, REFUSED, TERMINATED, UNREACHABLE, parser
from feed.batch_sender import MAX_ATTEMPTS, MAX_RATE_WAIT
from feed.limits import MAX_BATCH_ITEMS
from feed.post_lines import LINE_WAIT, Account, Line, batches, line_item
from feed.standard_input import LineReader, Mark, RawLine

RUN = "run1"


def item(data: bytes, number: int = 1) -> Line:
    found = line_item(RawLine(number, data), "general", RUN)
    assert found is not None
    return found


def test_a_line_that_is_not_json_is_posted_as_text_even_with_braces() -> None:
    for text in ("{braces} in a log line", "{broken", "a plain line", "[1, 2]", "42"):
        line = item(text.encode(), 3)
        assert line.result is None, text
        assert line.item == {"channel": "general", "body": text, "idempotency_key": "run1-3"}


def test_a_json_object_with_bad_fields_is_still_refused_alone() -> None:
    for data, said in (
        (b'{"body": "x", "body": "y"}', "'body' twice"),
        (b'{"body": "x", "n": NaN}', "not finite"),
        (b'{"body": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nested"),
    ):
        line = item(data)
        assert line.result is not None and line.result["status"] == 400, data[:40]
        assert said in line.result["error"], line.result


def test_an_object_goes_to_the_channel_given_and_keeps_a_key_of_its_own() -> None:
    assert item(b'{"body": "x"}', 7).item == {
        "channel": "general",
        "body": "x",
        "idempotency_key": "run1-7",
    }
    own = item(b'{"parent": 4, "body": "x", "idempotency_key": "mine"}').item
    assert own == {"parent": 4, "body": "x", "idempotency_key": "mine"}


def test_a_line_that_is_not_utf_8_is_refused_as_such() -> None:
    line = item(b"caf\xe9 au lait", 4)
    assert line.result is not None and line.result["status"] == 400
    assert line.result["error"] == "This line is not valid UTF-8 (byte 0xe9 at byte 4)."


def test_a_blank_line_is_no_post() -> None:
    assert line_item(RawLine(1, b"  \t"), "general", RUN) is None


def read_all(data: bytes, max_line: int = 100) -> list[RawLine]:
    read, write = os.pipe()
    os.write(write, data)
    os.close(write)
    reader = LineReader(read, max_line)
    found: list[RawLine] = []
    for _ in range(100):
        got = reader.next(5.0)
        if got is Mark.END:
            break
        assert isinstance(got, RawLine)
        found.append(got)
    os.close(read)
    return found


def test_exactly_one_line_ending_is_taken_off() -> None:
    lines = read_all(b"a\r\r\nb\rc\nd\r\n\ne\r")
    assert [(line.number, line.data) for line in lines] == [
        (1, b"a\r"),
        (2, b"b\rc"),
        (3, b"d"),
        (4, b""),
        (5, b"e\r"),  # the last line, with no line feed: its CR is its own
    ]


def test_a_line_longer_than_the_limit_is_cut_and_said_to_be() -> None:
    lines = read_all(b"short\n" + b"x" * 1000 + b"\nafter")
    assert [(line.number, line.cut) for line in lines] == [(1, False), (2, True), (3, False)]
    assert len(lines[1].data) <= 100 and lines[2].data == b"after"
    refused = line_item(lines[1], "general", RUN)
    assert refused is not None and refused.result is not None
    assert refused.result["status"] == 413


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    read, write = os.pipe()
    yield read, write
    for fd in (write, read):  # the writer first: the reading thread sees the end
        with contextlib.suppress(OSError):  # closed by the test already
            os.close(fd)


def test_a_batch_is_sent_once_its_first_line_has_waited_while_the_pipe_stays_open(
    pipe: tuple[int, int],
) -> None:
    read, write = pipe
    sent: list[list[int]] = []
    source = batches(LineReader(read, 1000), "general", RUN)
    os.write(write, b"one\ntwo\n")
    took = time.monotonic()
    taker = threading.Thread(target=lambda: sent.append([x.number for x in next(source)]))
    taker.start()
    taker.join(LINE_WAIT + 5.0)
    assert sent == [[1, 2]]  # and the pipe still open
    assert time.monotonic() - took >= LINE_WAIT * 0.9


def test_a_fast_producer_fills_whole_batches(pipe: tuple[int, int]) -> None:
    read, write = pipe
    lines = MAX_BATCH_ITEMS * 2 + 5
    writer = threading.Thread(
        target=lambda: (
            os.write(write, b"".join(b"%d\n" % n for n in range(lines))),
            os.close(write),
        )
    )
    writer.start()
    sizes = [len(batch) for batch in batches(LineReader(read, 1000), "general", RUN)]
    writer.join(5.0)
    assert sizes == [MAX_BATCH_ITEMS, MAX_BATCH_ITEMS, 5]


def test_a_line_too_long_for_any_batch_is_refused_alone(pipe: tuple[int, int]) -> None:
    read, write = pipe
    os.write(write, b"first\n" + b"y" * 5000 + b"\nlast\n")
    os.close(write)
    (batch,) = batches(LineReader(read, 1000), "general", RUN)
    assert [(line.number, (line.result or {}).get("status")) for line in batch] == [
        (1, None),
        (2, 413),
        (3, None),
    ]


def test_the_account_says_which_lines_were_answered_unconfirmed_and_not_posted() -> None:
    account = Account()
    assert account.summary() == "no line was posted"
    account.begin([Line(1, {}), Line(2, {})])
    for line in account.batch:
        account.answer(line, {"status": 201})
    account.begin([Line(n, {}) for n in range(4, 10)])  # line 3 was blank
    assert account.summary() == (
        "lines 1 to 2 were posted or refused, as reported above; lines from 4 on were not posted"
    )
    account.answer(account.batch[0], {"status": 201})
    account.lost = {5, 6}
    account.in_flight = [account.batch[3]]
    account.answer(account.batch[4], {"status": 400})
    assert account.summary() == (
        "lines 1 to 4 were posted or refused, as reported above; lines 5 to 7 were sent "
        "but not confirmed (each may or may not have been posted); line 8 was posted or "
        "refused, as reported above; lines from 9 on were not posted"
    )
    # Reported in order as they come, and all of them when the run stops.
    assert [line.number for line, _ in account.to_report()] == [4]
    assert [line.number for line, _ in account.to_report(everything=True)] == [8]
    assert account.to_report(everything=True) == []


def test_a_batch_is_no_larger_than_the_budget_at_the_time(pipe: tuple[int, int]) -> None:
    read, write = pipe
    os.write(write, b"".join(b"line %d\n" % n for n in range(1, 8)))
    os.close(write)
    budget = iter([10_000] * 3 + [170] * 100)  # a 413 learned after the first batch
    sizes = [
        [line.number for line in batch]
        for batch in batches(LineReader(read, 1000), "general", RUN, lambda: next(budget))
    ]
    assert sizes[0] == [1, 2, 3, 4] and all(len(batch) <= 2 for batch in sizes[1:]), sizes


def test_the_readme_states_the_limits_the_code_has() -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    assert f"once its first line has waited {LINE_WAIT:g} s" in readme
    assert f"sent again, up to {MAX_ATTEMPTS} times" in readme
    assert f"for up to {MAX_RATE_WAIT / 60:g} minutes a batch" in readme


def test_the_help_and_the_readme_name_every_exit_code_a_stopped_run_has() -> None:
    commands = next(a for a in parser()._actions if isinstance(a, argparse._SubParsersAction))
    post = commands.choices["post"]
    said = next(a.help for a in post._actions if "--ndjson" in a.option_strings) or ""
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    stopped = readme[readme.index("- If it stops early") :].split("\n\n")[0]
    for code in (UNREACHABLE, REFUSED, INTERRUPTED, TERMINATED):
        assert f"{code} " in said, (code, said)
        assert f"{code} " in " ".join(stopped.split()), (code, stopped)
