"""The lines ``feed post --ndjson`` reads, as the items of batches (client.py sends
them).

Rationale:

1. ``feed post --ndjson`` sends its lines in batches of at most ``MAX_BATCH_ITEMS``
   posts and ``BATCH_BYTES`` bytes, well under the server's batch limit with the
   default body limit, so a long input is many requests and never one refused whole.
   Each item's answer is the server's, except for a line that is no JSON object,
   which is answered here as the server would answer it, without a request (each
   line is read with the server's own parser, so a number that is not finite or a
   key named twice is refused alone, not with every line of its batch), and a line
   larger than ``BATCH_BYTES`` on its own, which no batch may carry (413). Text is
   left to the server to judge, item by item, even text that is not Unicode (sent
   escaped, since UTF-8 cannot carry it), so one bad line never stops the others.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from feed.errors import ClientError
from feed.inputs import loads
from feed.limits import MAX_BATCH_ITEMS

BATCH_BYTES = 1024 * 1024  # a quarter of the server's batch limit by default (1)


@dataclass(frozen=True, slots=True)
class Line:
    """One line of ``feed post --ndjson``: its number, and the item to send, or the
    result it already has (1)."""

    number: int
    item: dict[str, Any]
    result: dict[str, Any] | None = None


def line_items(lines: Iterable[str], channel: str) -> Iterator[Line]:
    """The posts of ``lines``: a JSON object as it is (with ``channel`` if it names no
    place), any other line a post of its text to ``channel`` (1)."""
    for number, raw in enumerate(lines, 1):
        line = raw.rstrip("\r\n")
        if not line.strip():
            continue
        if not line.lstrip().startswith("{"):
            yield Line(number, {"channel": channel, "body": line})
            continue
        try:
            # As the server reads an NDJSON line: sent in an array, a number that is not
            # finite or a key named twice would sink every line of the batch.
            item = loads(line.encode("utf-8", "surrogatepass"))
        except ClientError as exc:
            said = f"{exc.message} ({exc.detail})" if isinstance(exc.detail, str) else exc.message
            yield _refused(number, said, exc.status)
            continue
        if not isinstance(item, dict):
            yield _refused(number, "not a JSON object")
        elif "channel" in item or "parent" in item:
            yield Line(number, item)
        else:
            yield Line(number, {"channel": channel} | item)


def _refused(number: int, error: str, status: int = 400) -> Line:
    return Line(number, {}, {"status": status, "error": error, "detail": None})


def batches(lines: Iterable[Line]) -> Iterator[list[Line]]:
    """``lines`` in batches the server takes whole (1)."""
    batch: list[Line] = []
    size = 2
    for line in lines:
        cost = len(json.dumps(line.item)) + 1
        if cost > BATCH_BYTES:  # alone it would still be too large: refused alone (1)
            line = _refused(line.number, f"longer than a batch's {BATCH_BYTES} bytes", 413)
            cost = 3
        if batch and (len(batch) == MAX_BATCH_ITEMS or size + cost > BATCH_BYTES):
            yield batch
            batch, size = [], 2
        batch.append(line)
        size += cost
    if batch:
        yield batch
