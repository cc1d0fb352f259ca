"""What a request of the command line's carries, checked before it is sent: the
token, text, a JSON body and a channel's path (client.py sends them).

Rationale:

1. Text is checked with the server's loosest rule (text.py) before it is sent, so
   what could never be stored is refused here, without a request; what passes may
   still be refused, with its reason, by the server.
2. The token is sent without the blanks around it (a token file with Windows line
   endings, read with ``$(cat file)``, ends in CR); one that is still no header value
   is refused before any request, unshown.
"""

from __future__ import annotations

import json
import re
from typing import Any

from feed import text
from feed.client_failures import NotSendable
from feed.inputs import CHANNEL_NAME, CHANNEL_NAME_RULE

# What a token may hold (2): a header value's visible ASCII, as RFC 6750's b64token does.
TOKEN_VALUE = re.compile(r"[\x21-\x7e]+")


def usable_token(token: str | None) -> str | None:
    """``token`` without the blanks around it, None for none; NotSendable, without
    showing it, if it could not go in a header (2)."""
    token = (token or "").strip()
    if token and not TOKEN_VALUE.fullmatch(token):
        raise NotSendable(
            "the token (--token or FEED_TOKEN) holds a space, a control character or a "
            "letter outside ASCII, which no token has; it is not shown, being secret"
        )
    return token or None


def sendable(what: str, value: str) -> str:
    """``value``, if the server could take it as text at all (1)."""
    refused = text.problem(value, multiline=True)
    if refused is not None:
        raise NotSendable(f"{what} {refused}")
    return value


def json_body(payload: Any) -> bytes:
    """``payload`` as the body of a request: UTF-8 as it is (escaped, a character can
    take 12 bytes of the body's limit), but a lone surrogate, text that is not Unicode,
    escaped, so that it reaches the server, whose refusal names its item
    (post_lines.py)."""
    return _SURROGATE.sub(_escaped, json.dumps(payload, ensure_ascii=False)).encode()


def _escaped(found: re.Match[str]) -> str:
    return f"\\u{ord(found.group()):04x}"


_SURROGATE = re.compile("[\ud800-\udfff]")


def channel_path(name: str) -> str:
    """A channel's URL; a name that is no channel's is not sent, so that a "/" or
    ".." in it never leads to another channel."""
    if not CHANNEL_NAME.fullmatch(name):
        raise NotSendable(f"there is no channel named {name!r}. {CHANNEL_NAME_RULE}")
    return f"/api/channels/{name}"
