"""The gate: who a request comes from, and what the permission rules need to know.

An identity (identity.py) is found from the request's credential; the rules
(permissions.py) answer from it, the channels and memberships the gate holds. The gate
also signs session cookies and kiosk links, keeps recent answers so that busy moments
cost few queries, and keeps the one map of which channels are private.

Rationale:

1. On where an identity comes from. In this order: an ``Authorization: Bearer``
   token (scripts, the CLI), a kiosk link's ``key`` query parameter (a kiosk cannot
   sign in), the signed session cookie (browsers) unless the header below names
   someone else (rationale 7), the trusted user header of a fronting single sign-on
   proxy (off unless ``FEED_TRUSTED_USER_HEADER`` is set), else nobody. A credential
   that is present but wrong is refused with 401; it never falls back to anonymous,
   so a typo in a script's token is not silently a reader.
2. On cookies and CSRF. The session cookie holds the identity, the token it was
   exchanged for (so revoking the token ends the session), and the CSRF token that
   unsafe requests made with the cookie must echo in ``X-CSRF-Token`` (htmx sends
   it from the page's ``hx-headers``) or a ``csrf_token`` form field. A bearer token
   is not sent by the browser on its own, so it needs no CSRF token. The CSRF token
   is random per sign-in, so it also names the session: signing out keeps its
   digest until the cookie would have expired, and a copy of the cookie (another
   browser, a stolen one) is refused from then on, in every process, and its open
   streams end.
3. On rechecking streams. Streams check access when they open, and the hub checks
   every event of a private channel against the stream's grants (events.py). A
   running ``Watch`` (watch.py) re-reads the revocations and memberships behind open
   streams whenever a process announces a change of access, before later events
   reach them, and every ``FEED_ACCESS_RECHECK`` seconds besides: a revoked token or
   kiosk link, a session signed out of or expired, ends its streams, a membership
   taken away stops that channel's events, in every process. A session's expiry is
   read from its cookie's signature when the stream opens and travels with the
   identity, since nothing reads the cookie again while the stream lasts.
4. On signing. Secrets sign cookies and kiosk links (itsdangerous). Without
   ``FEED_SECRET_KEY`` the key is made once and kept in the database, so every
   process, restart and ``feed`` command agrees on it.
5. On recent answers. The channel list, tokens and memberships behind permission
   checks are read at most twice a second each: a thousand kiosks reconnecting at
   once cost one query, not a thousand, and a script posting hundreds of times a
   second does not look its token up for each post. An answer in use is read again
   before it is too old, after the request that asked, not in it (recent.py, on
   reading again ahead of time, and after the answer). A change of access announced
   by any process drops what it made stale (``changed``); one that is not (a command
   on a database with the memory broker) is refused within a second. The recheck of
   open streams always reads the database. A stale list cannot leak: the hub checks
   each event against the channel as it is when the event is read (events.py), and
   reads of posts and of the log filter in SQL on the same. A channel made or
   changed through this process is seen at once; through another, as soon as its
   event or hint arrives, and within that second.
6. On privacy learnt from the log. Which channels are private is known in one place,
   this channel map, and learnt from the channel events of the log as the relay
   delivers them (``learn``), in every process, before the hub or a page sees them.
   Presence and ``/metrics`` hide the names it calls private; nothing waits for the
   next recheck or reload. With several workers, a scrape also adds up the others'
   numbers as each last shared them (metrics.py): a name made private can show
   there until that worker shares again, within a second.
7. On the proxy's user. Behind a single sign-on proxy, the header names who is at
   the browser now, and the session cookie who was there when it was made. When they
   differ (someone else signed in at the proxy), the header wins: the request is the
   header's user's, without the old session's CSRF token, so a write carrying that
   token is refused, and a page seen this way begins a session for the header's user
   (viewers.py). Otherwise the old session would go on acting, and posting, as the
   person before.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import secrets
import time
from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from itsdangerous import BadSignature, URLSafeSerializer, URLSafeTimedSerializer
from starlette.datastructures import Headers, QueryParams
from starlette.requests import HTTPConnection
from starlette.types import Scope

from feed.errors import ClientError
from feed.identity import ANONYMOUS, Identity, Role, Via, digest, identity_name, of_credential
from feed.inputs import header
from feed.permissions import Permissions, grantee, unauthorized
from feed.recent import MISSING, READ_AHEAD_AFTER, RECENT_TTL, Missing, ReadsAhead, RecentAnswers
from feed.settings import Settings
from feed.store import Store
from feed.values import AccessChange, ChannelView, FeedEvent, TokenView

SESSION_COOKIE = "feed_session"
SESSION_SALT = "feed-session"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
KIOSK_PARAM = "key"
SIGNING_SECRET = "signing-key"
SCOPE_KEY = "feed.identity"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
READS = 3  # tries at a channel list no channel event overtook (``Access.channels``)


class Access:
    """One app's way of telling who asks and what they may do."""

    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self._sessions: URLSafeTimedSerializer | None = None
        self._links: URLSafeSerializer | None = None
        self._admins = frozenset(n.strip() for n in settings.trusted_admins.split(",") if n.strip())
        self._channels: dict[str, ChannelView] | None = None
        self._channels_at = 0.0
        self._loading = asyncio.Lock()
        # The private channels' names, from the map as last read or learnt (rationale
        # 6); kept while the map itself waits to be read again.
        self._private: frozenset[str] = frozenset()
        self._learned = 0  # batches of channel events learnt, so a read across one is stale
        # Recent answers (rationale 5): token digest -> token; token id -> revoked;
        # name -> its memberships.
        # Their reads ahead of time, and the channel list's, one at a time.
        self._ahead = ReadsAhead()
        self._tokens: RecentAnswers[str, TokenView | None] = RecentAnswers(self._ahead)
        self._revoked: RecentAnswers[int, bool] = RecentAnswers(self._ahead)
        # Session (its CSRF token's digest) -> signed out of (rationale 2).
        self._ended: RecentAnswers[str, bool] = RecentAnswers(self._ahead)
        self._grants: RecentAnswers[str, dict[str, bool]] = RecentAnswers(self._ahead)

    async def close(self) -> None:
        """End the reads ahead of time still queued or under way (rationale 5)."""
        await self._ahead.close()

    def changed(self, change: AccessChange) -> None:
        """Forget what ``change`` made stale (rationale 5): the next check reads it."""
        if change.elsewhere:
            for recent in (self._tokens, self._revoked, self._ended, self._grants):
                recent.clear()
        if change.elsewhere or change.channels:
            self._channels = None
            self._learned += 1  # a read in flight may predate the change: not kept
        if change.members:
            self._grants.clear()
        if change.tokens:
            self._tokens.clear()
        self.forget(change.revoked)
        self.forget_sessions(change.ended)

    def _keep(self, channels: dict[str, ChannelView]) -> None:
        self._channels = channels
        self._channels_at = time.monotonic()
        self._private = frozenset(name for name, c in channels.items() if c.private)

    def private_channels(self) -> frozenset[str]:
        """The names of the private channels now (rationale 6)."""
        return self._private

    def learn(self, events: Sequence[FeedEvent]) -> None:
        """Take in the channels as the channel events among ``events`` show them
        (``Relay.on_delivered``, rationale 6)."""
        views = {e.channel_view.name: e.channel_view for e in events if e.channel_view}
        if not views:
            return
        self._learned += 1
        hidden = {name for name, view in views.items() if view.private}
        self._private = (self._private - views.keys()) | hidden
        if self._channels is not None:
            # A new map: permissions already handed out keep the one they were made with.
            self._channels = {**self._channels, **views}

    async def channels(self, *, fresh: bool = False) -> dict[str, ChannelView]:
        """Every channel by name, read at most once per ``RECENT_TTL`` (rationale 5), or
        now if ``fresh``. A read never undoes what was learnt from the log meanwhile."""
        if fresh:
            return await self._read_channels()
        recent = self._recent()
        if recent is not None:
            if time.monotonic() - self._channels_at > READ_AHEAD_AFTER:
                self._ahead.start("channels", self._read_ahead)  # (5)
            return recent
        # One read for everyone who finds the map old at the same moment.
        async with self._loading:
            recent = self._recent()
            return await self._read_channels() if recent is None else recent

    async def _read_ahead(self) -> None:
        if self._loading.locked():
            return  # a read is under way already
        async with self._loading:
            await self._read_channels()

    def _recent(self) -> dict[str, ChannelView] | None:
        if self._channels is None or time.monotonic() - self._channels_at > RECENT_TTL:
            return None
        return self._channels

    async def _read_channels(self) -> dict[str, ChannelView]:
        for _ in range(READS):
            learned = self._learned
            read = {c.name: c for c in await self.store.list_channels()}
            if learned == self._learned:
                self._keep(read)
                return read
            # A channel event came while we read: what we read may be older than what
            # it said. Read again.
        return read  # still changing: use it this once, keep what was learnt

    async def start(self) -> None:
        await self.channels()  # private channels are known before anything is shown
        key = await signing_key(self.settings, self.store)
        self._sessions = URLSafeTimedSerializer(key, salt=SESSION_SALT)
        self._links = URLSafeSerializer(key, salt="feed-kiosk-link")

    @property
    def session_seconds(self) -> int:
        """How long a session lasts (``FEED_SESSION_DAYS``)."""
        return self.settings.session_days * 86400

    @property
    def sessions(self) -> URLSafeTimedSerializer:
        assert self._sessions is not None, "Access.start() was not awaited"
        return self._sessions

    # -- who is asking ----------------------------------------------------------

    async def identify(self, scope: Scope) -> Identity:
        """The identity behind a request (rationale 1), remembered in its scope."""
        found = scope.get(SCOPE_KEY)
        if isinstance(found, Identity):
            return found
        who = await self._identify(scope)
        if not who.signed_in and not self.settings.anonymous_read:
            raise unauthorized("Sign in first: this feed is not open to anonymous readers.")
        # Only once allowed: a refused identity asked again is refused again.
        scope[SCOPE_KEY] = who
        return who

    async def recognise(self, scope: Scope) -> Identity:
        """Who a request is from as of now, not remembered in its scope: for what only
        needs to tell clients apart (fairness.py), before the request's endpoint asks
        ``identify`` for itself, later."""
        return await self._identify(scope)

    async def _identify(self, scope: Scope) -> Identity:
        authorization = header(scope, b"authorization")
        if authorization is not None:
            kind, _, token = authorization.partition(" ")
            if kind.lower() != "bearer" or not token.strip():
                raise unauthorized("Send the token as 'Authorization: Bearer <token>'.")
            return await self.from_token(token.strip())
        key = QueryParams(scope.get("query_string", b"")).get(KIOSK_PARAM)
        if key:
            return await self._from_link(key)
        trusted = self.settings.trusted_user_header
        user = Headers(scope=scope).get(trusted, "").strip() if trusted else ""
        by_header = self._from_header(user) if user else None
        cookie = HTTPConnection(scope).cookies.get(SESSION_COOKIE)
        if cookie:
            who = await self._from_session(cookie)
            # The person the proxy names now wins over a session another began (rationale 7).
            if who is not None and (by_header is None or who.name == by_header.name):
                return who
        return by_header or ANONYMOUS

    async def from_token(self, token: str) -> Identity:
        found = await self._token(digest(token))
        if found is None or found.kind != "api":
            raise unauthorized("The token is not valid: check it, or make a new one.")
        if found.revoked:
            raise unauthorized("The token has been revoked; ask an admin for a new one.")
        return of_credential(found, Via.TOKEN)

    async def _from_link(self, key: str) -> Identity:
        links = self._links
        assert links is not None
        try:
            links.loads(key)
        except BadSignature:
            raise unauthorized(
                "This kiosk link is not valid; ask an admin for a new one."
            ) from None
        found = await self._token(digest(key))
        if found is None or found.kind != "kiosk" or found.revoked:
            raise unauthorized("This kiosk link has been revoked; ask an admin for a new one.")
        return of_credential(found, Via.KIOSK)

    async def _from_session(self, cookie: str) -> Identity | None:
        """The cookie's identity; None if it is forged, expired or its token revoked."""
        try:
            data, signed_at = self.sessions.loads(
                cookie, max_age=self.session_seconds, return_timestamp=True
            )
            name, role, token, csrf = data["n"], Role(data["r"]), data["t"], data["x"]
            scope = None if data["s"] is None else frozenset(data["s"])
        except (BadSignature, KeyError, TypeError, ValueError):
            return None
        if token is not None and await self._is_revoked(token):
            return None
        if await self._is_ended(digest(csrf)):
            return None
        if token is None:
            # Made from the proxy's header: it lasts only while feed trusts that header,
            # and the role follows FEED_TRUSTED_ADMINS as it is now.
            if not self.settings.trusted_user_header:
                return None
            role = self._header_role(name)
        # Ends to the second the Watch ends its streams (itsdangerous keeps it a second
        # longer, as it counts in whole seconds), so a reconnect then is refused.
        expires_at = signed_at.timestamp() + self.session_seconds
        if time.time() >= expires_at:
            return None
        return Identity(name, role, Via.SESSION, scope, token, csrf, expires_at)

    def _header_role(self, name: str) -> Role:
        return Role.ADMIN if name in self._admins else Role.WRITER

    def _from_header(self, user: str) -> Identity:
        try:
            name = identity_name(user)
        except ValueError:
            raise ClientError(
                400, "The signed-in user's name from the proxy is not usable."
            ) from None
        return Identity(name, self._header_role(name), Via.HEADER)

    def session(self, who: Identity) -> tuple[str, Identity]:
        """A session cookie's value for ``who``, and the identity it stands for."""
        csrf = secrets.token_urlsafe(24)
        data: dict[str, Any] = {
            "n": who.name,
            "r": who.role,
            "t": who.credential,
            "s": None if who.scope is None else sorted(who.scope),
            "x": csrf,
        }
        expires_at = time.time() + self.session_seconds
        cookie = self.sessions.dumps(data)
        return cookie, replace(who, via=Via.SESSION, csrf=csrf, expires_at=expires_at)

    def kiosk_key(self) -> str:
        """The secret part of a new kiosk link: signed, so a forged one costs no query."""
        links = self._links
        assert links is not None
        return str(links.dumps({"n": secrets.token_urlsafe(16)}))

    # -- what they may do -------------------------------------------------------

    async def permissions(self, who: Identity) -> Permissions:
        """``who``'s permissions: ``permissions_of`` for one, without its sets and sorts
        while the memberships are recent, since every request asks."""
        channels = await self.channels()
        name = grantee(who)
        grants = {} if name is None else self._grants.get(name)
        if isinstance(grants, Missing):
            return (await self.permissions_of([who]))[who]
        if name is not None and self._grants.aging(name):
            self._grants.read_ahead(name, functools.partial(self._grants_of, name))
        return Permissions(who, channels, grants)

    def forget(self, revoked: Iterable[int]) -> None:
        """Tokens found revoked: refuse them from now on, whatever was read recently."""
        gone = set(revoked)
        for token_id in gone:
            self._revoked.put(token_id, True)
        self._tokens.drop(lambda found: found is not None and found.id in gone)

    async def _token(self, kept: str) -> TokenView | None:
        return await self._tokens.get_or_load(kept, lambda: self.store.token_by_digest(kept))

    async def sign_out(self, who: Identity) -> None:
        """End ``who``'s session for good, not only in this browser (rationale 2)."""
        if who.via is not Via.SESSION or who.csrf is None:
            return
        until = datetime.now(UTC) + timedelta(seconds=self.session_seconds)
        await self.store.end_session(digest(who.csrf), until)

    def forget_sessions(self, ended: Iterable[str]) -> None:
        """Sessions found signed out of: refuse them from now on."""
        for kept in ended:
            self._ended.put(kept, True)

    async def _is_ended(self, kept: str) -> bool:
        async def load() -> bool:
            return bool(await self.store.ended_sessions([kept]))

        return await self._ended.get_or_load(kept, load)

    async def _is_revoked(self, token_id: int) -> bool:
        async def load() -> bool:
            return bool(await self.store.revoked_tokens([token_id]))

        return await self._revoked.get_or_load(token_id, load)

    async def permissions_of(
        self, whos: Iterable[Identity], *, fresh: bool = False
    ) -> dict[Identity, Permissions]:
        """Several identities' permissions from at most two queries, however many there
        are; ``fresh`` reads memberships from the database whatever was read recently."""
        whos = set(whos)
        channels = await self.channels()
        names = sorted({name for w in whos if (name := grantee(w)) is not None})
        grants: dict[str, dict[str, bool]] = {}
        for name in names:
            known = MISSING if fresh else self._grants.get(name)
            if not isinstance(known, Missing):
                grants[name] = known
        unknown = [name for name in names if name not in grants]
        if unknown:
            reading = self._grants.reading()
            for name in unknown:
                grants[name] = {}
            for member in await self.store.members(names=unknown):
                grants[member.name][member.channel] = member.may_post
            for name in unknown:
                self._grants.keep(name, grants[name], reading)
        return {w: Permissions.given(w, channels, grants) for w in whos}

    async def _grants_of(self, name: str) -> dict[str, bool]:
        return {m.channel: m.may_post for m in await self.store.members(names=[name])}

    async def check(self, connection: HTTPConnection) -> Permissions:
        """Identify the request, check CSRF for a browser's unsafe request, and return
        what it may do (rationale 2)."""
        who = await self.identify(connection.scope)
        if connection.scope.get("method") in UNSAFE_METHODS and who.ambient:
            check_csrf(connection, who)
        return await self.permissions(who)


def check_csrf(
    connection: HTTPConnection, who: Identity, form: dict[str, str] | None = None
) -> None:
    sent = connection.headers.get(CSRF_HEADER) or (form or {}).get(CSRF_FIELD, "")
    # Compared as bytes: compare_digest refuses a str that is not ASCII, and a token
    # that is not is simply a wrong one.
    given = sent.encode("utf-8", "surrogateescape")
    if who.csrf is None or not sent or not hmac.compare_digest(given, who.csrf.encode()):
        raise ClientError(
            403,
            "This request came without the page's CSRF token; reload the page and try again.",
        )


async def signing_key(settings: Settings, store: Store) -> str:
    if settings.secret_key:
        return settings.secret_key
    return await store.secret(SIGNING_SECRET, lambda: secrets.token_urlsafe(48))
