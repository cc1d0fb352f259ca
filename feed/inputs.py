"""What a request sends, read and checked: bodies, JSON and forms, their fields,
numbers in paths, queries and headers, channel names, post ids and named options.

Every web module reads its input here, so each rule is written once. The limits and
patterns below are the ones these readers enforce, and the OpenAPI document states
them from here too (openapi.py), so the two always agree.

Rationale:

1. A request body is hostile until checked. Anything the parser, the rest of feed
   or the database driver could not take is refused here with a 400 or 422, never
   left to fail later with a 500: nesting deeper than ``MAX_JSON_DEPTH`` (Python's
   parser runs out of stack near a thousand levels, and so would the API's
   idempotency fingerprint), NaN and Infinity (not JSON, and no answer could echo
   them), integers of thousands of digits, and strings that are not text (text.py)
   wherever they sit.
2. A number in a path, a query or a header is ASCII digits with an optional sign,
   read by one parser (``whole_number``): ``int()`` would also take digits of other
   scripts, digit separators (``1_0``) and surrounding spaces, and refuses thousands
   of digits with an error of its own. Beyond 64 bits a number is no id or count.
   A post id that is no number is answered like one that does not exist (404); any
   other number that does not fit is a 400 naming where it was sent.
3. A form is read within a byte limit before it is parsed, like a JSON body, and its
   fields take the API's checks (``text_field``, ``channel_name``): the compose and
   admin forms refuse exactly what the API refuses. Bytes that are not UTF-8, sent
   as they are or %-escaped, are a 400 as in a JSON body, never text with
   replacement characters in it.
4. A JSON object that names a key twice is refused with a 400 naming it, in every
   JSON body (the one decoder, ``loads``, checks it as it builds each object). JSON
   leaves the meaning to the reader: Python's parser keeps the last value, others the
   first, so a proxy or a checker in front of feed could pass what feed would then
   read otherwise.
5. A path is read as the HTTP server decodes it, and it writes a %-escape that is not
   UTF-8 as a replacement character: a member named "%ed%a0%80" would be stored as
   three of them. A query is read the same way: a search for "%ff" would look for
   one. Such an address is a 400 before any route sees it (``address_not_utf8``), as
   a form's bytes are (3); a replacement character sent as one (%EF%BF%BD) is a
   character like any other.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qs, unquote_to_bytes

from starlette.requests import ClientDisconnect, Request
from starlette.types import Scope

from feed import text
from feed.errors import ClientError
from feed.limits import MAX_POST_ID

# -- limits and patterns (the OpenAPI document states each of them) ------------------

# Posts in one page the API answers with.
MAX_PAGE = 200
MAX_TITLE_CHARS = 200
MAX_DESCRIPTION_CHARS = 2000
# Names appear in URLs, kiosk links and scripts, so they are short, lower-case slugs.
MAX_CHANNEL_NAME_CHARS = 64
CHANNEL_NAME = re.compile(rf"[a-z0-9][a-z0-9_-]{{0,{MAX_CHANNEL_NAME_CHARS - 1}}}")
CHANNEL_NAME_RULE = (
    f"A channel name is 1 to {MAX_CHANNEL_NAME_CHARS} lower-case letters, digits, "
    "'-' or '_', starting with a letter or digit."
)
# Event ids are 64-bit in both databases; a larger number is no id at all (not a 500).
# A post's is smaller (MAX_POST_ID, limits.py).
MAX_ID = 2**63 - 1
# Request bodies are flat objects; nesting this deep is no request feed knows.
MAX_JSON_DEPTH = 32
MAX_IDEMPOTENCY_KEY_CHARS = 255
# How much of a key named twice a refusal shows (4).
MAX_ECHOED_KEY_CHARS = 64
IDEMPOTENCY_KEY = re.compile(rf"[\x21-\x7e]{{1,{MAX_IDEMPOTENCY_KEY_CHARS}}}")

JSON_TYPE = "application/json"

WHOLE_NUMBER = re.compile(r"[+-]?[0-9]+")
# Fields whose text may span lines (text.py); every other text field is one line.
MULTILINE_FIELDS = frozenset({"body", "description"})


# -- bodies --------------------------------------------------------------------------


def header(scope: Scope, name: bytes) -> str | None:
    """The request's first header ``name`` (lower case, as the server hands them over),
    read as Starlette's ``Headers.get`` reads it, without making a ``Headers``: the
    request path of a post asks for four."""
    headers: list[tuple[bytes, bytes]] = scope["headers"]
    for key, value in headers:
        if key == name:
            return value.decode("latin-1")
    return None


def _too_big(limit: int) -> ClientError:
    return ClientError(413, f"The request body is larger than {limit} bytes.", limit)


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refusing more than ``limit`` bytes before reading them all."""
    declared = header(request.scope, b"content-length")
    if declared is not None and declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise _too_big(limit)
    chunks: list[bytes] = []
    size = 0
    # The server's messages read one by one, as Request.stream reads them, without an
    # async generator for each request to make, hook and finalise.
    more = True
    while more:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        if message["type"] != "http.request":
            continue
        chunk: bytes = message.get("body", b"")
        more = message.get("more_body", False)
        size += len(chunk)
        if size > limit:
            raise _too_big(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def post_form_bytes(max_body_bytes: int, max_post_chars: int) -> int:
    """The most a form that carries a post may send (3): the longest post the API
    takes, each character four bytes of UTF-8 and each byte %-escaped, and room for
    the form's other fields."""
    return max(max_body_bytes, 12 * max_post_chars + 4096)


async def read_form(request: Request, limit: int) -> dict[str, str]:
    """A form's fields, the first value of each, read within ``limit`` bytes (3)."""
    raw = await read_body(request, limit)
    try:
        # Strict at both steps: the bytes sent, then what their %-escapes spell.
        fields = parse_qs(raw.decode("utf-8"), keep_blank_values=True, errors="strict")
    except UnicodeDecodeError:
        raise ClientError(400, "The form is not valid UTF-8.") from None
    return {name: values[0] for name, values in fields.items() if values}


def media_type(request: Request) -> str:
    return (header(request.scope, b"content-type") or "").split(";")[0].strip().lower()


async def read_json(request: Request, limit: int) -> dict[str, Any]:
    """The request's JSON object, or a ClientError that says what is wrong with it."""
    if (media := media_type(request)) != JSON_TYPE:
        shown = media or "none"
        raise ClientError(415, "Send the body as JSON (Content-Type: application/json).", shown)
    raw = await read_body(request, limit)
    if not raw.strip():
        raise ClientError(400, "The request body is empty; send a JSON object.")
    payload = parse_json(raw)
    if not isinstance(payload, dict):
        raise ClientError(422, "The request body must be a JSON object.", type(payload).__name__)
    return payload


def parse_json(raw: bytes) -> Any:
    """``raw`` as JSON that the rest of feed can take (1), or a ClientError."""
    payload = loads(raw)
    check_shape(payload)
    return payload


def loads(raw: bytes) -> Any:
    try:
        # As json.loads reads bytes, with one decoder made once rather than one a call.
        payload = _DECODER.decode(raw.decode(json.detect_encoding(raw), "surrogatepass"))
    except UnicodeDecodeError:
        raise ClientError(400, "The request body is not valid UTF-8.") from None
    except json.JSONDecodeError as exc:
        raise ClientError(400, "The request body is not valid JSON.", str(exc)) from None
    except RecursionError:
        raise _too_deep() from None
    except ValueError:  # NaN, Infinity, 1e999, or an integer of thousands of digits
        raise ClientError(
            400, "The request body holds a number that is not finite or is far too long."
        ) from None
    return payload


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):
        raise ValueError(f"{literal[:40]} is not a finite number")
    return value


def _once_each(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object's members, each key once (4)."""
    found = dict(pairs)
    if len(found) < len(pairs):
        seen: set[str] = set()
        for key, _value in pairs:
            if key in seen:
                raise _named_twice(key)
            seen.add(key)
    return found


def _named_twice(key: str) -> ClientError:
    # The key is echoed as repr() shows it, so a lone surrogate in it (text.py) is
    # escaped, not sent; and only its start, since a key may be as long as the body.
    shown = key if len(key) <= MAX_ECHOED_KEY_CHARS else key[:MAX_ECHOED_KEY_CHARS] + "…"
    detail = shown if text.not_text(shown) is None else None
    return ClientError(400, f"The request body names the key {shown!r} twice.", detail)


_DECODER = json.JSONDecoder(
    parse_constant=_no_constant, parse_float=_finite, object_pairs_hook=_once_each
)


def _too_deep() -> ClientError:
    return ClientError(
        400, f"The request body is nested more than {MAX_JSON_DEPTH} levels deep.", MAX_JSON_DEPTH
    )


def check_shape(payload: Any) -> None:
    """Refuse nesting deeper than MAX_JSON_DEPTH and strings that are not text
    (text.py, on lone surrogates), wherever they are: a field name or an ignored value is
    echoed in refusals and fingerprinted for idempotency."""
    # (value, depth, the top-level field it is in, if any)
    pending: list[tuple[Any, int, str | None]] = [(payload, 0, None)]
    while pending:
        value, depth, field = pending.pop()
        if isinstance(value, str):
            refused = text.not_text(value)
            if refused is not None:
                where = "A string in the request body" if field is None else f"The field {field!r}"
                raise ClientError(422, f"{where} {refused}.", field)
        elif isinstance(value, dict | list):
            if depth >= MAX_JSON_DEPTH:
                raise _too_deep()
            if isinstance(value, list):
                pending += [(item, depth + 1, field) for item in value]
                continue
            for key, item in value.items():
                pending.append((item, depth + 1, field if depth else key))
                pending.append((key, depth, field))  # checked before its value names it


# -- fields --------------------------------------------------------------------------


def check_fields(
    payload: dict[str, Any], required: set[str], optional: frozenset[str] = frozenset()
) -> None:
    unknown = sorted(set(payload) - required - optional)
    if unknown:
        raise ClientError(422, f"Unknown field {unknown[0]!r}.", unknown)
    missing = sorted(required - set(payload))
    if missing:
        raise ClientError(422, f"The field {missing[0]!r} is required.", missing)


def text_field(payload: dict[str, Any], name: str, max_chars: int, label: str | None = None) -> str:
    """The field ``name`` as text feed may store (text.py): the fields in
    MULTILINE_FIELDS may span lines, others are one line. ``label``: what a form calls
    the field ("The post"), for its refusals; the API names the field."""
    what = label or f"The field {name!r}"
    value = payload.get(name)
    if not isinstance(value, str):
        raise ClientError(422, f"{what} must be a string.", name)
    if len(value) > max_chars:
        raise ClientError(422, f"{what} is longer than {max_chars} characters.", len(value))
    # What the text holds that it may not is said first: it names the character.
    refused = text.problem(value, multiline=name in MULTILINE_FIELDS)
    if refused is not None:
        raise ClientError(422, f"{what} {refused}.", name)
    if text.blank(value):
        shown = "" if not value.strip() else " (it holds only characters that show nothing)"
        raise ClientError(422, f"{what} must not be empty{shown}.", name)
    return value


def optional_text(payload: dict[str, Any], name: str, max_chars: int) -> str | None:
    return text_field(payload, name, max_chars) if name in payload else None


def flag(payload: dict[str, Any], name: str) -> bool | None:
    value = payload.get(name)
    if value is not None and not isinstance(value, bool):
        raise ClientError(422, f"The field {name!r} must be true or false.", name)
    return value


def event_id_field(payload: dict[str, Any], name: str) -> int | None:
    """The field ``name`` as an event id (a whole number, 0 to ``MAX_ID``), None if it
    was not sent; 422 otherwise. A JSON true is no number."""
    if name not in payload:
        return None
    value = payload[name]
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_ID:
        raise ClientError(
            422, f"The field {name!r} must be an event id: a whole number from 0 to {MAX_ID}."
        )
    return value


def channel_name(payload: dict[str, Any]) -> str:
    """The ``name`` field of a new channel, or a ClientError that says what a name is."""
    name = text_field(payload, "name", MAX_CHANNEL_NAME_CHARS)
    if not CHANNEL_NAME.fullmatch(name):
        raise ClientError(422, CHANNEL_NAME_RULE, name)
    return name


def post_body(
    payload: dict[str, Any], author: str, max_chars: int, label: str | None = None
) -> str:
    """A new post's body. The author is whoever posts: an ``author`` field, which
    scripts written for older versions send, must name that identity. ``label``: as
    ``text_field``'s."""
    check_fields(payload, {"body"}, frozenset({"author"}))
    if "author" in payload and payload["author"] != author:
        raise ClientError(
            422,
            f"The author of a post is the identity that writes it ({author!r}); "
            "leave out the 'author' field.",
            payload["author"],
        )
    return text_field(payload, "body", max_chars, label)


# -- numbers and options -------------------------------------------------------------


def whole_number(raw: str) -> int | None:
    """``raw`` as a whole number (2), or None. One past the 64-bit range stands for
    anything longer: no id or count is that long."""
    if not WHOLE_NUMBER.fullmatch(raw):
        return None
    digits = raw.lstrip("+-").lstrip("0")
    if len(digits) > len(str(MAX_ID)):
        return -(MAX_ID + 1) if raw.startswith("-") else MAX_ID + 1
    return int(raw)


def number(
    raw: str | None,
    subject: str,
    *,
    low: int,
    high: int = MAX_ID,
    meaning: str = "a whole number",
) -> int | None:
    """``raw`` as a whole number from ``low`` to ``high`` (2), None if it was not sent;
    otherwise a 400 that names ``subject`` ("The parameter 'limit'") and says what it
    must be."""
    if raw is None or raw == "":
        return None
    value = whole_number(raw)
    if value is None:
        raise ClientError(400, f"{subject} must be {meaning}.", raw)
    if low <= value <= high:
        return value
    if high != MAX_ID:
        bounds = f"be between {low} and {high}"
    elif value > high:  # beyond what a database column holds: a 400, not a 500
        bounds = f"be at most {MAX_ID}"
    else:
        bounds = "not be negative" if low == 0 else f"be at least {low}"
    raise ClientError(400, f"{subject} must {bounds}.", raw)


def int_param(request: Request, name: str, *, low: int, high: int = MAX_ID) -> int | None:
    """The query parameter ``name`` as a whole number, None if absent (2)."""
    return number(request.query_params.get(name), f"The parameter {name!r}", low=low, high=high)


def before_post(request: Request) -> int | None:
    """``before``, a post id to page back from, None if absent (2)."""
    return int_param(request, "before", low=1, high=MAX_POST_ID)


def resume_id(raw: str | None, source: str) -> int | None:
    """The event id a stream resumes after, from ``source`` (a header or parameter),
    or None if it was not sent."""
    return number(raw, source, low=0, meaning="an event id (a whole number)")


def post_id(request: Request) -> int:
    """The post id in the path; one that is no id is answered as not found (2)."""
    raw: str = request.path_params["post_id"]
    value = whole_number(raw)
    if value is None or value < 0 or value > MAX_POST_ID:
        raise ClientError(404, f"There is no post with id {raw}.", raw)
    return value


def choice(raw: str | None, name: str, allowed: Sequence[str], *, default: str) -> str:
    """``raw`` if it is one of ``allowed``, ``default`` if it was not sent; otherwise a
    400 that lists them."""
    if not raw:
        return default
    if raw not in allowed:
        raise ClientError(400, f"{name} must be one of {', '.join(allowed)}.", raw)
    return raw


def address_not_utf8(scope: Scope) -> str | None:
    """Why the request's address cannot be read, if a %-escape (or a byte) in its path
    or its query is not UTF-8 (5)."""
    query: bytes = scope.get("query_string") or b""
    if "\ufffd" in scope["path"]:  # nearly never: one search
        raw: bytes = scope.get("raw_path") or b""
        if not _utf8(unquote_to_bytes(raw)):
            return "The address holds a %-escape that is not UTF-8."
    if (b"%" in query or not query.isascii()) and not _utf8(unquote_to_bytes(query)):
        return "The query holds a %-escape or a byte that is not UTF-8."
    return None


def _utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
