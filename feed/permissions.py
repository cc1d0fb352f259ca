"""What an identity may read and write: the permission rules.

Rationale:

1. The rules are pure. They take who asks (identity.py), the channels and that
   person's memberships as they are now, and answer; nothing here reads the
   database, the clock or the settings, and nothing awaits. The gate (access.py)
   gathers what they take, and the endpoints, the stream and the recheck of open
   streams all ask these rules, so one table of who asks, on which channel, doing
   what (tests/test_permissions.py) covers every door.
2. Roles nest: a reader reads, a writer also posts, an admin also edits anyone's
   posts. A token or kiosk link limited to some channels (``scope``) can touch those
   channels only, whatever its role, so only an admin without a scope manages
   channels and memberships.
3. A private channel is readable by its members and admins only; an
   announcement-only channel takes posts only from members granted posting, and
   admins. To everyone else a private channel does not exist: the answer is the same
   404 as for a name that was never made, so names cannot be probed.
4. A kiosk link is made by an admin for the channels it names, private ones too: it
   reads those, and never posts. It holds no membership: a grant to a person of the
   same name is not its.
5. A refusal says what would help: 401, with a ``WWW-Authenticate`` challenge, to
   someone not signed in; 403 to someone signed in who may not.
6. Archiving is not a permission: an archived channel takes no new posts from
   anyone, which the store checks as it writes (409).
7. Replies. Whoever may post in a channel may reply there. An announcement-only
   channel is where readers most need to answer, so there every signed-in reader may
   reply too, unless the channel turns replies off (``replies``): then only those who
   may post reply. The setting takes nothing from those who may post, in any channel.
   A kiosk link never replies, as it never posts. Editing and deleting a reply are
   editing and deleting a post (``may_edit``), with one addition: a reader may edit
   and delete its own replies, as it may have written them.
8. Reacting is reading out loud: anyone signed in who may read a channel may react to
   its posts, readers included, but never a kiosk link, which only shows, nor someone
   not signed in, whose reaction would be nobody's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from feed.errors import ClientError
from feed.identity import Identity, Role, Via
from feed.values import ChannelView, PostView


def grantee(who: Identity) -> str | None:
    """The name whose memberships ``who`` holds; None if nobody's (4)."""
    return None if who.via is Via.KIOSK else who.name


@dataclass(frozen=True, slots=True)
class Permissions:
    """What one identity may do, given the channels and its memberships now."""

    identity: Identity
    channels: dict[str, ChannelView]
    grants: dict[str, bool]  # channel -> may post

    @classmethod
    def given(
        cls,
        who: Identity,
        channels: dict[str, ChannelView],
        memberships: Mapping[str, dict[str, bool]],
    ) -> Permissions:
        """``who``'s permissions, from everyone's ``memberships`` by name."""
        name = grantee(who)
        return cls(who, channels, {} if name is None else memberships.get(name, {}))

    def may_read(self, name: str) -> bool:
        channel = self.channels.get(name)
        scope = self.identity.scope
        if channel is None or (scope is not None and name not in scope):
            return False
        if not channel.private or self.identity.role is Role.ADMIN:
            return True
        # A kiosk link reads the private channels it was made for (4).
        return self.identity.via is Via.KIOSK or name in self.grants

    def may_post(self, name: str) -> bool:
        who = self.identity
        if not self.may_read(name) or who.via is Via.KIOSK or not who.at_least(Role.WRITER):
            return False
        if who.role is Role.ADMIN or not self.channels[name].announcement_only:
            return True
        return self.grants.get(name, False)

    def may_reply(self, name: str) -> bool:
        """Whether this identity may reply to posts of channel ``name`` (7)."""
        if self.may_post(name):
            return True
        who = self.identity
        if not self.may_read(name) or who.via is Via.KIOSK or not who.signed_in:
            return False
        channel = self.channels[name]
        return channel.announcement_only and channel.replies

    def may_edit(self, post: PostView) -> bool:
        """Authors edit, delete and pin their own posts; admins anyone's. A reader edits
        and deletes its own replies, which it may have written (7)."""
        who = self.identity
        if not self.may_read(post.channel) or who.via is Via.KIOSK or not who.signed_in:
            return False
        if who.role is Role.ADMIN:
            return True
        if post.author != who.name:
            return False
        return who.at_least(Role.WRITER) or post.parent is not None

    def may_react(self, name: str) -> bool:
        """Give or take back one's own reactions to the channel's posts (8)."""
        who = self.identity
        return self.may_read(name) and who.signed_in and who.via is not Via.KIOSK

    def reactor(self) -> str | None:
        """Whose reactions a page marks as its reader's own: nobody's on a kiosk or for
        someone not signed in, who may not react (8)."""
        who = self.identity
        return who.name if who.signed_in and who.via is not Via.KIOSK else None

    def readable(self) -> list[ChannelView]:
        return [c for c in self.channels.values() if self.may_read(c.name)]

    def postable(self) -> list[ChannelView]:
        return [c for c in self.channels.values() if self.may_post(c.name)]

    def private_readable(self) -> frozenset[str] | None:
        """The private channels this identity may read; None for an admin of everything."""
        if self.identity.is_admin:
            return None
        return frozenset(
            c.name for c in self.channels.values() if c.private and self.may_read(c.name)
        )

    def selection(self, requested: Sequence[str] | None) -> list[str] | None:
        """The channels a query should cover: ``requested`` (each checked, 404 for one it
        may not read, exactly as for one that does not exist), or every readable one;
        None when that is every channel, so the query needs no filter."""
        if requested:
            for name in requested:
                self.check_read(name)
            return list(requested)
        readable = self.readable()
        if len(readable) == len(self.channels):
            return None
        return [c.name for c in readable]

    def check_read(self, name: str) -> ChannelView:
        if not self.may_read(name):
            raise ClientError(404, f"There is no channel named {name!r}.", name)
        return self.channels[name]

    def check_post(self, name: str) -> None:
        self.check_read(name)
        if self.may_post(name):
            return
        who = self.identity
        if not who.signed_in:
            raise unauthorized("Posting needs a writer's token or a signed-in session.")
        if who.via is Via.KIOSK or not who.at_least(Role.WRITER):
            raise ClientError(403, f"{who.name!r} may read but not post.", name)
        raise ClientError(
            403,
            f"#{name} is announcement-only: only members granted posting, and admins, "
            "may post there.",
            name,
        )

    def check_reply(self, name: str) -> None:
        """404 for a channel one may not read; 401 or 403 for one one may not reply in (7)."""
        self.check_read(name)
        if self.may_reply(name):
            return
        who = self.identity
        if not who.signed_in:
            raise unauthorized("Replying needs a token or a signed-in session.")
        if who.via is Via.KIOSK:
            raise ClientError(403, f"{who.name!r} is a kiosk link: it may read but not reply.")
        raise ClientError(
            403, f"Only those who may post in #{name} may reply there, and not {who.name!r}.", name
        )

    def check_edit(self, post: PostView) -> None:
        self.check_read(post.channel)
        if not self.may_edit(post):
            if not self.identity.signed_in:
                raise unauthorized("Changing a post needs its author's or an admin's token.")
            raise ClientError(403, "Only the post's author or an admin may change it.", post.id)

    def check_react(self, name: str) -> None:
        self.check_read(name)
        if self.may_react(name):
            return
        if not self.identity.signed_in:
            raise unauthorized("Reacting needs a token or a signed-in session.")
        raise ClientError(403, "A kiosk link shows posts; it does not react to them.", name)


def unauthorized(message: str) -> ClientError:
    """A 401 with the challenge that says a credential would help (5)."""
    return ClientError(401, message, headers={"WWW-Authenticate": 'Bearer realm="feed"'})


def forbidden_unless_admin(who: Identity) -> None:
    """Managing channels and memberships is for an admin of the whole feed (2)."""
    if who.is_admin:
        return
    if not who.signed_in:
        raise unauthorized("This needs an admin's token or a signed-in admin.")
    raise ClientError(403, "Only an admin of the whole feed may do this.")
