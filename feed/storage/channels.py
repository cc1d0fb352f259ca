"""Channels: the ones every feed starts with, and making, changing and archiving them.

Each change logs a channel event (log.py), which is also a change of access: which
channels are private, and who may post where.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlmodel import Session, col, select

from feed.models import Channel, EventKind
from feed.storage import keys
from feed.storage.engine import in_thread
from feed.storage.log import EventLog
from feed.storage.refusals import ChannelExists, ChannelNotFound
from feed.values import Answer, ChannelChange, ChannelView, Claim, Once, _channel_view

SEED_CHANNELS = (
    ("general", "General", "Anything and everything."),
    ("announcements", "Announcements", "News from the company."),
)


def find_channel(session: Session, name: str) -> Channel:
    channel = session.exec(select(Channel).where(Channel.name == name)).first()
    if channel is None:
        raise ChannelNotFound(name)
    return channel


def seed_channels(session: Session) -> None:
    """Create the channels every feed starts with, where missing."""
    existing = set(session.exec(select(Channel.name)).all())
    for name, title, description in SEED_CHANNELS:
        if name not in existing:
            session.add(Channel(name=name, title=title, description=description))


class Channels(EventLog):
    """The store's channels."""

    @in_thread
    def list_channels(self, *, archived: bool = True) -> list[ChannelView]:
        """Channels by name; ``archived=False`` leaves out the archived ones."""
        query = select(Channel).order_by(col(Channel.name))
        if not archived:
            query = query.where(col(Channel.archived).is_(False))
        with self._read() as session:
            return [_channel_view(c) for c in session.exec(query).all()]

    @in_thread
    def channel_names(self) -> set[str]:
        with self._read() as session:
            return set(session.exec(select(Channel.name)).all())

    @in_thread
    def create_channel(
        self,
        name: str,
        title: str,
        description: str,
        *,
        private: bool = False,
        announcement_only: bool = False,
        replies: bool = True,
    ) -> ChannelChange:
        with self._write() as session:
            return self._add_channel(
                session, name, title, description, private, announcement_only, replies
            )

    @in_thread
    def create_channel_once(
        self,
        claim: Claim,
        name: str,
        title: str,
        description: str,
        answer: Callable[[ChannelChange], Answer],
        *,
        private: bool = False,
        announcement_only: bool = False,
        replies: bool = True,
    ) -> Once:
        """``create_channel``, answered once per ``claim`` (keys.py, on idempotency keys)."""
        with self._write() as session:
            kept = keys.kept_answers(session, [claim]).get(claim.key)
            if kept is not None:
                return keys.replay(claim, kept)
            change = self._add_channel(
                session, name, title, description, private, announcement_only, replies
            )
            given = answer(change)
            keys.keep(session, claim, given)
            return Once(given, change.event_id, False)

    def _add_channel(
        self,
        session: Session,
        name: str,
        title: str,
        description: str,
        private: bool = False,
        announcement_only: bool = False,
        replies: bool = True,
    ) -> ChannelChange:
        if session.exec(select(Channel.id).where(Channel.name == name)).first() is not None:
            raise ChannelExists(name)
        channel = Channel(
            name=name,
            title=title,
            description=description,
            private=private,
            announcement_only=announcement_only,
            replies=replies,
        )
        session.add(channel)
        session.flush()
        event_id = self._log_channel(session, EventKind.CHANNEL_CREATED, channel)
        return ChannelChange(_channel_view(channel), event_id)

    @in_thread
    def update_channel(
        self,
        name: str,
        *,
        title: str | None = None,
        description: str | None = None,
        private: bool | None = None,
        announcement_only: bool | None = None,
        replies: bool | None = None,
    ) -> ChannelChange:
        """Change a channel's title, description or access; its name, used in links, stays."""
        with self._write() as session:
            channel = find_channel(session, name)
            before = _channel_view(channel)
            channel.title = title if title is not None else channel.title
            channel.description = description if description is not None else channel.description
            channel.private = private if private is not None else channel.private
            if announcement_only is not None:
                channel.announcement_only = announcement_only
            channel.replies = replies if replies is not None else channel.replies
            if _channel_view(channel) == before:
                return ChannelChange(_channel_view(channel), None)
            event_id = self._log_channel(session, EventKind.CHANNEL_UPDATED, channel)
            if channel.private != before.private:
                # For streams resuming from before it (history.py, on channels changed
                # while away).
                channel.privacy_event = event_id
            return ChannelChange(_channel_view(channel), event_id)

    @in_thread
    def set_archived(self, name: str, archived: bool) -> ChannelChange:
        """An archived channel keeps its posts but takes no new ones."""
        with self._write() as session:
            channel = find_channel(session, name)
            if channel.archived == archived:
                return ChannelChange(_channel_view(channel), None)
            channel.archived = archived
            kind = EventKind.CHANNEL_ARCHIVED if archived else EventKind.CHANNEL_RESTORED
            event_id = self._log_channel(session, kind, channel)
            return ChannelChange(_channel_view(channel), event_id)
