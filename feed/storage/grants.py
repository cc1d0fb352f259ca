"""Grants: API tokens and kiosk links, sessions signed out of, memberships of
channels, and the shared secrets that sign cookies and links.

Each change here is a change of access, announced with its commit (log.py, on the
commit announcement), so every process drops what it remembered of it.

Rationale:

1. Token digests. Tokens are random and long (access.py), so a plain SHA-256 digest
   is enough to keep them: a slow password hash protects guessable secrets, and these
   are not guessable. Looking a token up by its digest needs no secret comparison in
   Python.
2. Memberships changed while away. A stream resuming with ``Last-Event-ID`` is
   replayed with its reader's channels as they are now (history.py, on reads for a
   reader), and the log holds no event for a membership: a private channel given
   while the stream was away brings its new events but not its older posts, and one
   taken away leaves its posts on the page. So each change of an identity's
   memberships keeps the log's newest event id at that moment (``membership_changes``),
   and a stream of theirs resuming from that id or before is told to re-fetch its
   list (resume.py). Whether one may post somewhere changes no list, and is not kept.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from sqlalchemy import delete, func
from sqlmodel import Session, col, select

from feed.models import Channel, EndedSession, Event, Member, MembershipChange, Secret, Token
from feed.storage.channels import find_channel
from feed.storage.engine import in_thread, now
from feed.storage.log import EventLog
from feed.storage.refusals import TokenNotFound
from feed.values import AccessChange, MemberView, TokenView, _token_view


def _changed_for(session: Session, name: str) -> None:
    """Keep the log's newest event id as when ``name``'s memberships changed (2)."""
    newest = session.exec(select(func.max(Event.id))).one() or 0
    found = session.get(MembershipChange, name)
    if found is None:
        session.add(MembershipChange(name=name, event_id=newest))
    else:
        found.event_id = newest


class Grants(EventLog):
    """The store's tokens, kiosk links, sessions, memberships and secrets."""

    # -- tokens and kiosk links ---------------------------------------------------

    @in_thread
    def add_token(
        self, name: str, role: str, kind: str, channels: Sequence[str] | None, digest: str
    ) -> TokenView:
        """Keep a new token's digest (1); unknown ``channels`` raise ChannelNotFound."""
        with self._write() as session:
            for channel in channels or ():
                find_channel(session, channel)
            token = Token(
                name=name,
                role=role,
                kind=kind,
                channels=None if channels is None else ",".join(channels),
                digest=digest,
                created_at=now(),
            )
            session.add(token)
            session.flush()
            # A process may remember that this digest named no token a moment ago.
            self._access_changed(session, AccessChange(tokens=True))
            return _token_view(token)

    @in_thread
    def tokens(self, kind: str | None = None) -> list[TokenView]:
        query = select(Token).order_by(col(Token.id))
        if kind is not None:
            query = query.where(Token.kind == kind)
        with self._read() as session:
            return [_token_view(t) for t in session.exec(query).all()]

    @in_thread
    def token_by_digest(self, digest: str) -> TokenView | None:
        """The token with this digest (1), revoked or not; None if there is none."""
        with self._read() as session:
            found = session.exec(select(Token).where(Token.digest == digest)).first()
            return None if found is None else _token_view(found)

    @in_thread
    def revoke_token(self, token_id: int) -> TokenView:
        with self._write() as session:
            token = session.get(Token, token_id)
            if token is None:
                raise TokenNotFound(token_id)
            if token.revoked_at is None:
                token.revoked_at = now()
                self._access_changed(session, AccessChange(revoked=frozenset({token_id})))
            return _token_view(token)

    @in_thread
    def revoked_tokens(self, ids: Sequence[int]) -> set[int]:
        """Which of ``ids`` are revoked or gone."""
        if not ids:
            return set()
        query = select(Token.id).where(col(Token.id).in_(ids), col(Token.revoked_at).is_(None))
        with self._read() as session:
            live = set(session.exec(query).all())
        return set(ids) - live

    # -- sessions -----------------------------------------------------------------

    @in_thread
    def end_session(self, digest: str, expires_at: datetime) -> None:
        """Refuse the session ``digest`` names from now on (access.py, on signing out),
        and forget sessions ended earlier that have expired since."""
        with self._write() as session:
            session.execute(delete(EndedSession).where(col(EndedSession.expires_at) < now()))
            if session.get(EndedSession, digest) is None:
                session.add(EndedSession(digest=digest, expires_at=expires_at))
                self._access_changed(session, AccessChange(ended=frozenset({digest})))

    @in_thread
    def ended_sessions(self, digests: Sequence[str]) -> set[str]:
        """Which of ``digests`` name sessions that were signed out of."""
        if not digests:
            return set()
        query = select(EndedSession.digest).where(col(EndedSession.digest).in_(digests))
        with self._read() as session:
            return set(session.exec(query).all())

    # -- memberships --------------------------------------------------------------

    @in_thread
    def set_member(self, channel: str, name: str, *, may_post: bool) -> MemberView:
        with self._write() as session:
            chan = find_channel(session, channel)
            found = session.exec(
                select(Member).where(Member.channel_id == chan.id, Member.name == name)
            ).first()
            if found is None:
                assert chan.id is not None
                session.add(Member(channel_id=chan.id, name=name, may_post=may_post))
                _changed_for(session, name)
            elif found.may_post != may_post:
                found.may_post = may_post
            else:
                return MemberView(chan.name, name, may_post)  # as it was: nothing to tell
            self._access_changed(session, AccessChange(members=True))
            return MemberView(chan.name, name, may_post)

    @in_thread
    def remove_member(self, channel: str, name: str) -> bool:
        """Take a grant away; False if there was none."""
        with self._write() as session:
            chan = find_channel(session, channel)
            found = session.exec(
                select(Member).where(Member.channel_id == chan.id, Member.name == name)
            ).first()
            if found is None:
                return False
            session.delete(found)
            _changed_for(session, name)
            self._access_changed(session, AccessChange(members=True))
            return True

    @in_thread
    def memberships_changed_after(self, name: str, after: int) -> bool:
        """Whether ``name`` was given or refused a channel since event ``after`` (2)."""
        with self._read() as session:
            found = session.get(MembershipChange, name)
            return found is not None and found.event_id >= after

    @in_thread
    def members(
        self, *, channel: str | None = None, names: Sequence[str] | None = None
    ) -> list[MemberView]:
        """Grants by channel and name, of one channel or of some names."""
        query = select(Member, Channel.name).join(
            Channel, col(Channel.id) == col(Member.channel_id)
        )
        if channel is not None:
            query = query.where(Channel.name == channel)
        if names is not None:
            query = query.where(col(Member.name).in_(names))
        query = query.order_by(col(Channel.name), col(Member.name))
        with self._read() as session:
            return [MemberView(c, m.name, m.may_post) for m, c in session.exec(query).all()]

    # -- secrets ------------------------------------------------------------------

    @in_thread
    def secret(self, name: str, make: Callable[[], str]) -> str:
        """The shared secret ``name``, made with ``make`` the first time it is asked for."""
        with self._read() as session:
            found = session.get(Secret, name)
            if found is not None:
                return found.value
        with self._write() as session:
            # Another process may have made it while this one waited for the lock.
            found = session.get(Secret, name)
            if found is None:
                found = Secret(name=name, value=make())
                session.add(found)
            return found.value
