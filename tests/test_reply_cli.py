"""Replies from the command line: ``feed post --reply-to``, replies in ``feed tail``, and
the channel setting that lets readers reply (``--no-replies``, ``feed channels replies``)."""

from __future__ import annotations

import re

import pytest

from tests.auth import ADMIN_TOKEN
from tests.conftest import Server
from tests.test_cli import run_feed
from tests.test_terminal import feed_process


@pytest.fixture
def database_url(each_database_url: str) -> str:
    return each_database_url


def test_post_replies_and_tail_shows_replies(server: Server) -> None:
    ada = server.token("ada")
    parent = server.post("the plan")["post"]["id"]
    sent = run_feed(
        "post", "--reply-to", str(parent), "agreed", "--token", ada, "--url", server.url
    )
    assert sent.returncode == 0, sent.stderr
    said = re.fullmatch(
        rf"replied to post {parent} in #general: post (\d+), event \d+", sent.stdout.strip()
    )
    assert said is not None, sent.stdout
    named = run_feed("post", "--reply-to", "general", "x", "--token", ada)
    assert named.returncode == 2 and "the id of the post to answer" in named.stderr
    for digits in ("²", "١٢"):  # digits to Unicode, not numbers a URL can carry
        odd = run_feed("post", "--reply-to", digits, "x", "--token", ada)
        assert odd.returncode == 2 and "the id of the post to answer" in odd.stderr, odd.stderr
    nested = run_feed("post", "--reply-to", said[1], "no", "--token", ada, "--url", server.url)
    assert nested.returncode != 0 and f"reply to post {parent} instead" in nested.stderr
    edited = server.client.patch(f"/api/posts/{said[1]}", json={"body": "agreed, mostly"})
    # A replay shows each post as it is now (render.py): the reply's latest text.
    assert [line.split(" ", 1)[1] for line in tail_lines(server, 0, 3)] == [
        "#general tester: the plan",
        f"#general ↳ ada replied to post {parent}: agreed, mostly",
        f"#general ↳ ada edited reply {said[1]} to post {parent}: agreed, mostly",
    ]
    server.client.delete(f"/api/posts/{said[1]}")
    assert [line.split(" ", 1)[1] for line in tail_lines(server, edited.json()["event_id"], 1)] == [
        f"#general ↳ ada deleted reply {said[1]} to post {parent}"
    ]


def tail_lines(server: Server, since: int, count: int) -> list[str]:
    tail = feed_process(
        "tail",
        "--since",
        str(since),
        "--count",
        str(count),
        "--color",
        "never",
        "--url",
        server.url,
    )
    out, err = tail.communicate(timeout=30)
    assert tail.returncode == 0, err
    return out.splitlines()


def test_channels_take_replies_unless_told_not_to(server: Server) -> None:
    admin = ("--token", ADMIN_TOKEN, "--url", server.url)
    made = run_feed(
        "channels", *admin, "create", "news", "News", "--announcement-only", "--no-replies"
    )
    assert made.returncode == 0, made.stderr
    listed = run_feed("channels", *admin, "list").stdout
    assert "news\tNews\t(announcement_only, no replies)" in listed
    parent = server.post("launch day", channel="news")["post"]["id"]
    reader = server.token("rita", role="reader")
    refused = run_feed("post", "--reply-to", str(parent), "yay", "--token", reader, *admin[2:])
    assert refused.returncode != 0 and "may reply" in refused.stderr
    turned = run_feed("channels", *admin, "replies", "news", "on")
    assert turned.stdout.strip() == "#news: readers may reply"
    allowed = run_feed("post", "--reply-to", str(parent), "yay", "--token", reader, *admin[2:])
    assert allowed.returncode == 0, allowed.stderr
