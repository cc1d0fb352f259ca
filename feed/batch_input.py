"""What a batch request sends, read and checked: its body, a JSON array or NDJSON of
posts, and its ``Prefer`` header. A batch's items are read as a single request body is
(inputs.py, on hostile bodies), one by one.

Rationale:

1. A batch's envelope. A batch of posts is a JSON array or NDJSON, one object a line.
   What is wrong with the batch as a whole (its media type, its size, JSON that does not
   parse as an array, no items or too many) is one answer for the whole request; what is
   wrong with one item (a line that is no JSON, a lone surrogate, an item that is no
   object, a line of NDJSON that is not UTF-8) is that item's answer only, so one bad
   item never fails the others. A JSON array is read whole, so one that cannot be
   decoded is one answer for the request. Its byte
   limit is ``BATCH_BODIES`` single bodies (``batch_bytes``): room for a full batch of
   ordinary posts, and for as many of the longest ones as one write should render,
   without a second setting to keep in step with ``FEED_MAX_BODY_BYTES``. Within that
   limit a body of nothing but tiny values (``[{},{},...]``, or one item padded with
   them) would be over a million objects, a hundred megabytes and most of a second of
   the event loop to parse, only to be refused: a batch holding more than
   ``MAX_BATCH_VALUES`` values is refused whole before it is parsed, counted by one pass
   over its text (decoded as the parser will decode it) that skips strings.
2. ``Prefer`` (RFC 7240) is read as a list of preferences, from every ``Prefer``
   header in order, each a name, an optional value (bare or quoted) and parameters
   after ``;``; names and the ``return`` values are compared without case. Only the
   first ``return`` counts, as the RFC says of a preference given twice. A comma
   inside a quoted value would split it: no preference the API honours has one.
3. Plain arrays. Walking every item for lone surrogates and nesting (``check_shape``)
   cost about as much as parsing it. A JSON array's text is read once for what could
   make either: a surrogate as it stands or JSON's escape of one (a false alarm, say
   a valid pair, only means the walk), and more brackets and braces than the array
   and its objects need. When it holds neither, no string of any item is a lone
   surrogate and no item nests, and its objects are taken as they are. The text read
   is the one the parser reads (``_as_text`` decodes it as ``inputs.loads`` does).
"""

from __future__ import annotations

import json
import re
from typing import Any

from starlette.requests import Request

from feed import inputs
from feed.errors import ClientError
from feed.inputs import JSON_TYPE
from feed.limits import MAX_BATCH_ITEMS

# A batch's body may be this many times the largest single request body (1).
BATCH_BODIES = 64
# JSON values (objects, arrays and what separates them) in one batch: a flat item has a
# handful, so this is room for every item and then some, not for a body of nothing
# but tiny values (1).
MAX_BATCH_VALUES = MAX_BATCH_ITEMS * 32
# A string, whole (cut short at a line's end, where no JSON string goes on), or the
# opening or separator of a value outside strings. One pass, no backtracking (1).
_VALUE_MARKS = re.compile(r'"[^"\\\n]*(?:\\[^\n][^"\\\n]*)*"?|([\[{,])')
# What could make a lone surrogate in a parsed string: one as it stands, or JSON's
# escape of one (3).
_MAYBE_SURROGATE = re.compile(r"[\ud800-\udfff]|\\u[dD][89a-fA-F]")
NDJSON_TYPE = "application/x-ndjson"
# The preference (RFC 7240) for an answer without what the client sent back (2).
PREFER_MINIMAL = "return=minimal"

Item = dict[str, Any] | ClientError


def batch_bytes(max_body_bytes: int) -> int:
    """The largest batch body, given the largest single request body (1)."""
    return max_body_bytes * BATCH_BODIES


async def read_batch(request: Request, max_body_bytes: int) -> list[Item]:
    """A batch's items, in order: each a JSON object, or the ClientError that is that
    item's answer; a ClientError raised for the batch as a whole (1)."""
    media = inputs.media_type(request)
    if media not in (JSON_TYPE, NDJSON_TYPE):
        raise ClientError(
            415,
            f"Send the batch as a JSON array ({JSON_TYPE}) or as NDJSON ({NDJSON_TYPE}).",
            media or "none",
        )
    raw = await inputs.read_body(request, batch_bytes(max_body_bytes))
    text = _as_text(raw, media)
    _check_values(text)
    items = _ndjson_items(raw) if media == NDJSON_TYPE else _array_items(raw, text)
    if not items:
        raise ClientError(422, "The batch is empty; send at least one post.")
    return items


def _as_text(raw: bytes, media: str) -> str:
    """A batch's body as the JSON parser will read it: NDJSON is UTF-8, and a JSON
    array in whichever Unicode encoding ``json.loads`` finds."""
    if media == NDJSON_TYPE:
        # A line that is not UTF-8 is that line's refusal (1); replaced, its bytes
        # hide no quote or bracket from the count.
        return raw.decode("utf-8", "replace")
    try:
        return raw.decode(json.detect_encoding(raw), "surrogatepass")
    except UnicodeDecodeError:
        raise ClientError(400, "The request body is not valid UTF-8.") from None


def _check_values(text: str) -> None:
    """Refuse a batch of more than ``MAX_BATCH_VALUES`` JSON values before it is
    parsed (1)."""
    if sum(text.count(mark) for mark in ",[{") <= MAX_BATCH_VALUES:
        return  # not even counting what sits in strings: no need to look closer
    values = 0
    for found in _VALUE_MARKS.finditer(text):
        values += found.group(1) is not None
        if values > MAX_BATCH_VALUES:
            raise ClientError(
                422,
                f"The batch holds more than {MAX_BATCH_VALUES} JSON values; "
                "its items are objects of a few fields.",
                MAX_BATCH_VALUES,
            )


def _too_many(count: int) -> ClientError:
    return ClientError(
        422, f"A batch holds at most {MAX_BATCH_ITEMS} posts, not {count}.", MAX_BATCH_ITEMS
    )


def _array_items(raw: bytes, text: str) -> list[Item]:
    payload = inputs.loads(raw)
    if not isinstance(payload, list):
        raise ClientError(422, "The batch must be a JSON array of objects.", type(payload).__name__)
    if len(payload) > MAX_BATCH_ITEMS:
        raise _too_many(len(payload))
    if _plain(text, payload):  # (3)
        return [value if isinstance(value, dict) else _item(value) for value in payload]
    return [_item(value) for value in payload]


def _plain(text: str, payload: list[Any]) -> bool:
    """Whether the array ``payload``, parsed from ``text``, holds no lone surrogate
    and nothing nested in its items (3)."""
    objects = sum(isinstance(value, dict) for value in payload)
    if text.count("{") + text.count("[") != objects + 1:
        return False  # a nested value, or only a bracket inside a string
    if text.isascii() and "\\u" not in text:
        return True  # neither a surrogate nor an escape: no need for the expression
    return _MAYBE_SURROGATE.search(text) is None


def _ndjson_items(raw: bytes) -> list[Item]:
    lines = [line for line in _ndjson_lines(raw) if not isinstance(line, str) or line.strip()]
    if len(lines) > MAX_BATCH_ITEMS:
        raise _too_many(len(lines))
    items: list[Item] = []
    for line in lines:
        if isinstance(line, ClientError):
            items.append(line)
            continue
        try:
            items.append(_item(inputs.loads(line.encode())))
        except ClientError as exc:
            items.append(exc)
    return items


def _ndjson_lines(raw: bytes) -> list[str | ClientError]:
    """NDJSON's lines, each decoded alone when the body is not all UTF-8, so that a
    line that is not fails only itself (1). A newline byte is never part of another
    character in UTF-8, so bytes split where the text would."""
    try:
        return list(raw.decode("utf-8").split("\n"))  # of the wider type
    except UnicodeDecodeError:
        pass
    lines: list[str | ClientError] = []
    for line in raw.split(b"\n"):
        try:
            lines.append(line.decode("utf-8"))
        except UnicodeDecodeError:
            lines.append(ClientError(400, "This line is not valid UTF-8."))
    return lines


def _item(value: Any) -> Item:
    """One item of a batch, checked as a request body is (1), or its refusal."""
    if not isinstance(value, dict):
        return ClientError(422, "Each item of a batch must be a JSON object.", type(value).__name__)
    try:
        inputs.check_shape(value)
    except ClientError as exc:
        return exc
    return value


def prefers_minimal(request: Request) -> bool:
    """Whether the request prefers ``return=minimal`` (2)."""
    for header in request.headers.getlist("prefer"):
        for preference in header.split(","):
            name, _, value = preference.split(";", 1)[0].partition("=")
            if name.strip().lower() == "return":
                return value.strip().strip('"').lower() == "minimal"
    return False
