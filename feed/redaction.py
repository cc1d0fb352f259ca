"""A URL as feed shows it: in messages, ``feed config`` and logs, with its secrets
hidden (settings.py's URLs, the command line's --url and the redirects it is sent).
"""

from __future__ import annotations

import re
from urllib.parse import unquote

# What the name of a parameter that carries a secret holds, in any case: libpq's
# password and sslpassword, redis-py's password, and any other whose name says it
# holds a password, a key, a token, a signature or a session. The one list: what a
# URL may show is decided here alone.
SECRET_PARAMETER_WORDS = (
    "pass",
    "pwd",
    "secret",
    "token",
    "key",
    "auth",
    "credential",
    "sig",
    "session",
)
_SECRET_PARAMETER = re.compile("|".join(SECRET_PARAMETER_WORDS), re.IGNORECASE)
# Where a parameter may begin: after a query's ``?``, another's ``&`` or ``;``, or a
# fragment's ``#`` (an OAuth callback carries its token there).
_PARAMETER_START = re.compile("([?&;#])")


def redact_url(url: str) -> str:
    """``url`` with its secrets hidden: the user name and password, whole, and every
    parameter whose name says it holds one (``SECRET_PARAMETER_WORDS``). A user name
    alone may be a token (``https://TOKEN@host``), and a password may hold an unescaped
    ``?``, ``#``, ``/`` or ``:``, which the drivers read as part of it: so everything
    before the last ``@`` is hidden, even an ``@`` in a query's value, which hides
    more than it needs to rather than a password. It reads the text itself rather
    than urllib's parse, so that a URL urllib refuses (a setting's message quotes it)
    is hidden all the same."""
    scheme, slashes, rest = url.partition("://")
    if not slashes:
        return url
    userinfo, at, rest = rest.rpartition("@")
    # The host and path, then each mark and what follows it; after an @ in a query's
    # value (or a fragment's), the first part is the rest of a parameter.
    place, *parameters = _PARAMETER_START.split(rest)
    if "?" in userinfo or "#" in userinfo:
        place = _redact_parameter(place)
    shown = "".join(_redact_parameter(part) for part in parameters)
    return f"{scheme}://{'***' if at else ''}{at}{place}{shown}"


def _redact_parameter(pair: str) -> str:
    name, equals, _ = pair.partition("=")
    return f"{name}=***" if equals and _SECRET_PARAMETER.search(unquote(name)) else pair
