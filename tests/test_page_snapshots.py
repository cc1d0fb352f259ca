"""Every event id a page carries is read with its list, in one snapshot (storage/log.py,
on one snapshot): a card's own event and its newest reply's are never newer than the
list's position, and always the ones of what the card shows.

A reply is committed by another store (as another process would) in the very moment
after the page's list was read and before the page was made: the page must not carry
it, in its summary or in its ids. Each test runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pytest
from sqlmodel import Session
from starlette.testclient import TestClient

from feed.settings import Settings
from feed.storage import lists
from feed.store import Store
from feed.values import PostView
from tests.auth import bearer, make_token


@pytest.fixture
def database_url(each_database_url: str) -> str:
    return each_database_url


@dataclass
class RacingReply:
    """Once armed, commits one reply to ``parent`` right after the next read of a list
    of posts, inside that read's transaction; ``event_ids`` are those replies' events."""

    url: str
    parent: int
    armed: bool = False
    event_ids: list[int] = field(default_factory=list)

    def after_list_read(self) -> None:
        if not self.armed:
            return
        self.armed = False
        # A thread of its own, with no context of the reading one: another writer.
        with ThreadPoolExecutor(1) as pool:
            self.event_ids.append(pool.submit(asyncio.run, self._reply()).result())

    async def _reply(self) -> int:
        writer = Store.from_url(self.url)
        try:
            change = await writer.create_reply("general", self.parent, "carol", "racing")
        finally:
            writer.close()
        assert change.event_id is not None
        return change.event_id


Read = Callable[
    [Session, Sequence[str] | None, int | None, int, bool | None, Collection[str] | None],
    list[PostView],
]


@pytest.fixture
def race(
    client: TestClient, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> tuple[RacingReply, int, int]:
    """A card with one reply, and a reply that will race the next page's read: the
    race, the card's post id and its one reply's event id."""
    parent = client.post("/api/channels/general/posts", json={"body": "the plan"}).json()
    url = f"/api/posts/{parent['post']['id']}/replies"
    first = client.post(url, json={"body": "first"}).json()
    racing = RacingReply(settings.database_url, parent["post"]["id"])
    read: Read = lists._posts

    def read_then_race(*args: object) -> list[PostView]:
        found = read(*args)  # type: ignore[arg-type]
        racing.after_list_read()
        return found

    monkeypatch.setattr(lists, "_posts", read_then_race)
    return racing, parent["post"]["id"], first["event_id"]


def _card(html: str, post_id: int) -> str:
    found = re.search(rf'<article id="post-{post_id}"[^>]*>', html)
    assert found is not None, html
    return found.group(0)


def _ids(html: str, attribute: str) -> list[int]:
    return [int(x) for x in re.findall(rf'{attribute}="(\d+)"', html)]


@pytest.mark.parametrize(
    "path",
    ["/", "/channels/general", "/partials/posts", "/partials/posts?channel=general"],
)
def test_a_page_carries_no_reply_newer_than_its_position(
    client: TestClient, settings: Settings, race: tuple[RacingReply, int, int], path: str
) -> None:
    racing, parent, first = race
    bob = bearer(make_token(settings.database_url, "bob")[0])
    racing.armed = True
    page = client.get(path, headers=bob)
    assert page.status_code == 200
    assert len(racing.event_ids) == 1, "the reply did not race the read"
    header = page.headers.get("x-feed-last-event-id")
    position = int(header) if header else _ids(page.text, "data-last-event-id")[0]
    assert first <= position < racing.event_ids[0]
    card = _card(page.text, parent)
    assert f'data-reply-event-id="{first}"' in card
    assert re.search(rf'<span id="replies-{parent}"[^>]*>1 reply · ', page.text)
    carried = _ids(page.text, "data-event-id") + _ids(page.text, "data-reply-event-id")
    assert carried and max(carried) <= position


def test_a_page_of_older_posts_carries_the_replies_its_cards_show(
    client: TestClient, settings: Settings, race: tuple[RacingReply, int, int]
) -> None:
    racing, parent, first = race
    bob = bearer(make_token(settings.database_url, "bob")[0])
    racing.armed = True
    page = client.get(f"/partials/posts?channel=general&before={parent + 1}", headers=bob)
    assert page.status_code == 200
    assert len(racing.event_ids) == 1, "the reply did not race the read"
    card = _card(page.text, parent)
    # The card's summary and its newest reply's event are the same moment's.
    assert f'data-reply-event-id="{first}"' in card
    assert re.search(rf'<span id="replies-{parent}"[^>]*>1 reply · ', page.text)
    # Asked again, the page shows the reply that raced the first one, and its event.
    again = client.get(f"/partials/posts?channel=general&before={parent + 1}", headers=bob)
    assert f'data-reply-event-id="{racing.event_ids[0]}"' in _card(again.text, parent)
    assert re.search(rf'<span id="replies-{parent}"[^>]*>2 replies · ', again.text)
