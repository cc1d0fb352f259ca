"""The permission rules as one table: who asks, on which channel, doing what.

Pure: no server, no store, no settings. Requests reach these rules through the gate
(test_access), which only finds out who asks and what the channels and memberships
are now.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import TypeVar

import pytest

from feed.errors import ClientError
from feed.identity import Identity, Role, Via
from feed.permissions import Permissions, forbidden_unless_admin
from feed.values import ChannelView, PostView

T = TypeVar("T")

# The channels, one per column of the table. A named identity is a member of #member
# (reading only) and of #granted (posting too); the others hold no membership.
CHANNELS = {
    c.name: c
    for c in (
        ChannelView("public", "A public channel", ""),
        ChannelView("member", "A private channel one is a member of", "", private=True),
        ChannelView("other", "A private channel one is not a member of", "", private=True),
        ChannelView("granted", "Announcements, posting granted", "", announcement_only=True),
        ChannelView("announce", "Announcements, no grant", "", announcement_only=True),
        ChannelView("archived", "An archived public channel", "", archived=True),
        ChannelView(
            "quiet", "Announcements, replies off", "", announcement_only=True, replies=False
        ),
    )
}
MEMBERSHIPS = {"member": False, "granted": True}  # channel -> may post

# Who asks, one group of rows each.
WHO = {
    "anonymous": Identity(None, None, Via.ANONYMOUS),
    "reader": Identity("rita", Role.READER, Via.TOKEN, credential=1),
    "writer": Identity("wes", Role.WRITER, Via.TOKEN, credential=2),
    "admin": Identity("ada", Role.ADMIN, Via.TOKEN, credential=3),
    # An admin's token limited to #public and #other.
    "scoped-admin": Identity(
        "sam", Role.ADMIN, Via.TOKEN, frozenset({"public", "other"}), credential=4
    ),
    # A kiosk link for #public, #other and #granted. It is named like a member of both,
    # but a kiosk link holds no membership: the admin who made it chose its channels.
    "kiosk": Identity(
        "wes", Role.READER, Via.KIOSK, frozenset({"public", "other", "granted"}), credential=5
    ),
    # Named by a single sign-on proxy's header: a writer, or an admin if trusted as one.
    "proxy-user": Identity("hal", Role.WRITER, Via.HEADER),
    "proxy-admin": Identity("root", Role.ADMIN, Via.HEADER),
}

# Y: allowed, -: refused. "edit" covers editing, deleting, pinning and unpinning a
# post; "reply" is replying to a post there; "reply-own" is editing or deleting one's
# own reply there; "manage" is making and changing channels
# and memberships, on any channel; "react" is giving or taking back one's own reaction
# to a post.
# An archived channel takes no new posts from anyone, but that is the channel's state,
# checked when the post is written (the store answers 409), not a permission.
TABLE = """
                          public  member  other  granted  announce  archived     quiet
anonymous     read          Y       -       -       Y        Y         Y         Y
anonymous     post          -       -       -       -        -         -         -
anonymous     reply         -       -       -       -        -         -         -
anonymous     edit-own      -       -       -       -        -         -         -
anonymous     edit-other    -       -       -       -        -         -         -
anonymous     reply-own     -       -       -       -        -         -         -
anonymous     manage        -       -       -       -        -         -         -
anonymous     react         -       -       -       -        -         -         -
reader        read          Y       Y       -       Y        Y         Y         Y
reader        post          -       -       -       -        -         -         -
reader        reply         -       -       -       Y        Y         -         -
reader        edit-own      -       -       -       -        -         -         -
reader        edit-other    -       -       -       -        -         -         -
reader        reply-own     Y       Y       -       Y        Y         Y         Y
reader        manage        -       -       -       -        -         -         -
reader        react         Y       Y       -       Y        Y         Y         Y
writer        read          Y       Y       -       Y        Y         Y         Y
writer        post          Y       Y       -       Y        -         Y         -
writer        reply         Y       Y       -       Y        Y         Y         -
writer        edit-own      Y       Y       -       Y        Y         Y         Y
writer        edit-other    -       -       -       -        -         -         -
writer        reply-own     Y       Y       -       Y        Y         Y         Y
writer        manage        -       -       -       -        -         -         -
writer        react         Y       Y       -       Y        Y         Y         Y
admin         read          Y       Y       Y       Y        Y         Y         Y
admin         post          Y       Y       Y       Y        Y         Y         Y
admin         reply         Y       Y       Y       Y        Y         Y         Y
admin         edit-own      Y       Y       Y       Y        Y         Y         Y
admin         edit-other    Y       Y       Y       Y        Y         Y         Y
admin         reply-own     Y       Y       Y       Y        Y         Y         Y
admin         manage        Y       Y       Y       Y        Y         Y         Y
admin         react         Y       Y       Y       Y        Y         Y         Y
scoped-admin  read          Y       -       Y       -        -         -         -
scoped-admin  post          Y       -       Y       -        -         -         -
scoped-admin  reply         Y       -       Y       -        -         -         -
scoped-admin  edit-own      Y       -       Y       -        -         -         -
scoped-admin  edit-other    Y       -       Y       -        -         -         -
scoped-admin  reply-own     Y       -       Y       -        -         -         -
scoped-admin  manage        -       -       -       -        -         -         -
scoped-admin  react         Y       -       Y       -        -         -         -
kiosk         read          Y       -       Y       Y        -         -         -
kiosk         post          -       -       -       -        -         -         -
kiosk         reply         -       -       -       -        -         -         -
kiosk         edit-own      -       -       -       -        -         -         -
kiosk         edit-other    -       -       -       -        -         -         -
kiosk         reply-own     -       -       -       -        -         -         -
kiosk         manage        -       -       -       -        -         -         -
kiosk         react         -       -       -       -        -         -         -
proxy-user    read          Y       Y       -       Y        Y         Y         Y
proxy-user    post          Y       Y       -       Y        -         Y         -
proxy-user    reply         Y       Y       -       Y        Y         Y         -
proxy-user    edit-own      Y       Y       -       Y        Y         Y         Y
proxy-user    edit-other    -       -       -       -        -         -         -
proxy-user    reply-own     Y       Y       -       Y        Y         Y         Y
proxy-user    manage        -       -       -       -        -         -         -
proxy-user    react         Y       Y       -       Y        Y         Y         Y
proxy-admin   read          Y       Y       Y       Y        Y         Y         Y
proxy-admin   post          Y       Y       Y       Y        Y         Y         Y
proxy-admin   reply         Y       Y       Y       Y        Y         Y         Y
proxy-admin   edit-own      Y       Y       Y       Y        Y         Y         Y
proxy-admin   edit-other    Y       Y       Y       Y        Y         Y         Y
proxy-admin   reply-own     Y       Y       Y       Y        Y         Y         Y
proxy-admin   manage        Y       Y       Y       Y        Y         Y         Y
proxy-admin   react         Y       Y       Y       Y        Y         Y         Y
"""


def _rows() -> list[tuple[str, str, dict[str, bool]]]:
    header, *lines = TABLE.strip("\n").splitlines()
    columns = header.split()
    assert columns == list(CHANNELS), "the table's columns are the channels, in order"
    rows = []
    for line in lines:
        role, action, *cells = line.split()
        assert len(cells) == len(columns) and set(cells) <= {"Y", "-"}, line
        rows.append(
            (role, action, {c: cell == "Y" for c, cell in zip(columns, cells, strict=True)})
        )
    return rows


ROWS = _rows()
ACTIONS = ("read", "post", "reply", "edit-own", "edit-other", "reply-own", "manage", "react")


def test_the_table_has_one_row_for_each_role_and_action() -> None:
    assert [(role, action) for role, action, _ in ROWS] == [
        (role, action) for role in WHO for action in ACTIONS
    ]


def permissions(who: Identity) -> Permissions:
    everyone = {w.name: dict(MEMBERSHIPS) for w in WHO.values() if w.name is not None}
    return Permissions.given(who, CHANNELS, everyone)


def test_a_kiosk_link_holds_no_membership_even_under_a_members_name() -> None:
    assert WHO["kiosk"].name == WHO["writer"].name
    assert permissions(WHO["writer"]).grants == MEMBERSHIPS
    assert permissions(WHO["kiosk"]).grants == {}
    assert permissions(WHO["anonymous"]).grants == {}


def post_in(channel: str, author: str) -> PostView:
    return PostView(
        7, channel, author, "hello", datetime(2026, 1, 1, tzinfo=UTC), None, False, False, ""
    )


def allowed(who: Identity, action: str, channel: str) -> bool:
    """What the rules answer, asked the way the endpoints ask it."""
    perms = permissions(who)
    if action == "read":
        return perms.may_read(channel)
    if action == "post":
        return perms.may_post(channel)
    if action == "reply":
        return perms.may_reply(channel)
    if action == "react":
        return perms.may_react(channel)
    if action == "manage":
        try:
            forbidden_unless_admin(who)
        except ClientError:
            return False
        return True
    author = (who.name or "") if action in ("edit-own", "reply-own") else "someone-else"
    post = post_in(channel, author)
    if action == "reply-own":
        post = replace(post, parent=1)
    return perms.may_edit(post)


@pytest.mark.parametrize(("role", "action", "expected"), ROWS, ids=[f"{r}-{a}" for r, a, _ in ROWS])
def test_permissions_follow_the_table(role: str, action: str, expected: dict[str, bool]) -> None:
    who = WHO[role]
    actual = {channel: allowed(who, action, channel) for channel in CHANNELS}
    assert cells(actual) == cells(expected)


def cells(answers: dict[str, bool]) -> str:
    """A row as the table writes it, so that a failure shows which cells differ."""
    return "  ".join(f"{channel}:{'Y' if ok else '-'}" for channel, ok in answers.items())


def refusal(check: Callable[[T], object], argument: T) -> int | None:
    """The status ``check(argument)`` refuses with, or None if it lets it through."""
    try:
        check(argument)
    except ClientError as refused:
        return refused.status
    return None


@pytest.mark.parametrize("role", list(WHO))
def test_a_refused_check_answers_404_for_what_one_may_not_read_else_401_or_403(
    role: str,
) -> None:
    """The checks the endpoints call refuse exactly what the table refuses: 404 for a
    channel one may not read (as for one that does not exist, so names cannot be
    probed), 401 to someone not signed in, 403 to someone signed in."""
    who = WHO[role]
    perms = permissions(who)
    refused = 401 if who.name is None else 403
    for channel in CHANNELS:
        hidden = None if perms.may_read(channel) else 404
        assert refusal(perms.check_read, channel) == hidden
        expected = hidden or (None if perms.may_post(channel) else refused)
        assert refusal(perms.check_post, channel) == expected, channel
        expected = hidden or (None if perms.may_reply(channel) else refused)
        assert refusal(perms.check_reply, channel) == expected, channel
        for author in (who.name or "", "someone-else"):
            post = post_in(channel, author)
            expected = hidden or (None if perms.may_edit(post) else refused)
            assert refusal(perms.check_edit, post) == expected, (channel, author)
        expected = hidden or (None if perms.may_react(channel) else refused)
        assert refusal(perms.check_react, channel) == expected, channel


@pytest.mark.parametrize("role", list(WHO))
def test_listed_channels_are_the_readable_and_postable_ones(role: str) -> None:
    perms = permissions(WHO[role])
    rows = {action: cells for r, action, cells in ROWS if r == role}
    assert [c.name for c in perms.readable()] == [c for c, ok in rows["read"].items() if ok]
    assert [c.name for c in perms.postable()] == [c for c, ok in rows["post"].items() if ok]
    private = {c.name for c in CHANNELS.values() if c.private and rows["read"][c.name]}
    expected = None if WHO[role].is_admin else frozenset(private)
    assert perms.private_readable() == expected


def test_a_selection_is_every_readable_channel_or_none_when_that_is_all_of_them() -> None:
    assert permissions(WHO["admin"]).selection(None) is None
    assert permissions(WHO["reader"]).selection(None) == [
        "public",
        "member",
        "granted",
        "announce",
        "archived",
        "quiet",
    ]
    assert permissions(WHO["reader"]).selection(["member", "public"]) == ["member", "public"]
    with pytest.raises(ClientError) as hidden:
        permissions(WHO["reader"]).selection(["public", "other"])
    assert (hidden.value.status, str(hidden.value)) == (404, "There is no channel named 'other'.")
