"""Who is asking: an identity, its role, how it was established, and the names and
token digests behind it.

What an identity may do is decided by the rules (permissions.py); how a request is
found to be someone is the gate's part (access.py).

Rationale:

1. An identity says how it was established (``Via``), because the way matters after
   it is made: a session cookie or a proxy's header is sent by the browser on its
   own, so requests carrying one need a CSRF token (access.py, on cookies and CSRF);
   a kiosk link never posts; and what can end it (a token revoked, a session signed
   out of or expired) is what the recheck of open streams looks for (access.py, on
   rechecking streams).
2. A token or kiosk link may be limited to some channels: the identity carries that
   ``scope``, whatever its role, so a stream or a session made from it keeps it.
3. Tokens are random and long, and only a digest of each is kept, so the database
   never holds a token itself; being unguessable, they need no slow hash (the
   store, on token digests).
4. A name, of a token's holder or of a member, is one short line of printable text
   without commas (text.py): commas separate names in ``FEED_TRUSTED_ADMINS``, and
   no invisible character may tell two look-alike names apart.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from enum import StrEnum

from feed import text
from feed.values import TokenView

TOKEN_PREFIX = "feed_"
MAX_NAME_CHARS = 80


class Role(StrEnum):
    READER = "reader"
    WRITER = "writer"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return (Role.READER, Role.WRITER, Role.ADMIN).index(self)


class Via(StrEnum):
    """How an identity was established (1)."""

    ANONYMOUS = "anonymous"
    TOKEN = "token"
    KIOSK = "kiosk"
    SESSION = "session"
    HEADER = "header"


@dataclass(frozen=True, slots=True)
class Identity:
    name: str | None
    role: Role | None
    via: Via
    # Channels this credential is limited to; None: no limit beyond the role's (2).
    scope: frozenset[str] | None = None
    # The token (or kiosk link) behind it, so revoking it ends what it opened.
    credential: int | None = None
    csrf: str | None = None
    # When a session ends by itself (seconds since the epoch), so the streams it
    # opened end then too (access.py, on rechecking streams); None: not a session.
    expires_at: float | None = None

    @property
    def signed_in(self) -> bool:
        return self.name is not None

    @property
    def ambient(self) -> bool:
        """Sent by the browser on its own (a cookie, a proxy's header): needs CSRF checks."""
        return self.via in (Via.SESSION, Via.HEADER)

    def at_least(self, role: Role) -> bool:
        return self.role is not None and self.role.rank >= role.rank

    @property
    def is_admin(self) -> bool:
        """An admin of the whole feed: may manage channels and memberships."""
        return self.role is Role.ADMIN and self.scope is None

    @property
    def limit_key(self) -> str | None:
        """What per-client limits count by, or None to count by address."""
        if self.via is Via.KIOSK:
            return f"kiosk:{self.credential}"
        return None if self.name is None else f"user:{self.name}"


ANONYMOUS = Identity(None, None, Via.ANONYMOUS)


def of_credential(token: TokenView, via: Via) -> Identity:
    """The identity a stored token (``Via.TOKEN``) or kiosk link (``Via.KIOSK``) stands
    for: a kiosk link reads, whatever role its row names."""
    scope = None if token.channels is None else frozenset(token.channels)
    role = Role(token.role) if via is Via.TOKEN else Role.READER
    return Identity(token.name, role, via, scope, token.id)


def new_token() -> tuple[str, str]:
    """A new token and the digest that is kept of it (3)."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    return token, digest(token)


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def identity_name(value: str) -> str:
    """A name for tokens and grants (4), or ValueError saying why ``value`` is none."""
    name = value.strip()
    refused = text.problem(name, multiline=False)
    if refused is not None:
        raise ValueError(f"the name {refused}")
    if not name or len(name) > MAX_NAME_CHARS or not name.isprintable() or "," in name:
        # Echoed to whoever gave it, a command line or an API client: its beginning will
        # do to recognise a name of thousands of characters.
        shown = value if len(value) <= MAX_NAME_CHARS else f"{value[:MAX_NAME_CHARS]}…"
        raise ValueError(
            f"a name is 1 to {MAX_NAME_CHARS} printable characters without commas, got {shown!r}"
        )
    return name
