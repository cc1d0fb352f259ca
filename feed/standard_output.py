"""The command's standard output and error: a report whose reader may leave
(``feed token create ... | head -1``, cli.py rationale 1) and the command's messages.
"""

from __future__ import annotations

import os
import select
import sys


def to_nowhere() -> None:
    # Python flushes standard output once more on its way out; give it nowhere to fail.
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def reader_gone() -> bool:
    """Whether standard output is a pipe nobody reads any more."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except (OSError, ValueError):
        return False


def warn(said: str) -> None:
    """A message of the command's own, on standard error."""
    print(f"feed: {said}", file=sys.stderr)
