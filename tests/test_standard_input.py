"""Standard input read whole: up to a limit and no further (standard_input.py, 5)."""

from __future__ import annotations

import io

import pytest

from feed.standard_input import TooLong, at_most


def test_input_as_long_as_the_limit_is_read_whole() -> None:
    for given in (b"", b"x", b"a\nb\n" * 256):
        assert at_most(io.BytesIO(given), 1024) == given


def test_input_longer_than_the_limit_is_refused_having_read_one_byte_past_it() -> None:
    stream = io.BytesIO(b"x" * 1024 + b"y" + b"z" * 100_000)
    with pytest.raises(TooLong):
        at_most(stream, 1024)
    assert stream.tell() == 1025
