"""Presence: screens watching per channel, summed over processes, shown live on pages."""

from __future__ import annotations

import json
import signal
from collections.abc import Callable
from typing import Any

import pytest
from playwright.sync_api import Browser, expect

from feed.brokers.memory import MemoryBroker
from feed.presence import Counts, Presence
from tests.browser import (  # noqa: F401
    LIVE_MS,
    Problems,
    browser,
    context,
    new_context,
    open_live,
    problems,
)
from tests.conftest import Server
from tests.services import Postgres, Valkey
from tests.sse import SSEClient
from tests.test_events import WalkCountingHub, _sub
from tests.waiting import until

FAST = 0.2  # seconds between presence reports in these tests


def presence(server: Server) -> dict[str, Any]:
    answer = server.client.get("/api/presence")
    assert answer.status_code == 200
    found: dict[str, Any] = answer.json()
    return found


def wait_presence(server: Server, check: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    return until(lambda: presence(server), check, timeout=10)


def stream(server: Server, **params: str) -> SSEClient:
    opened = SSEClient(server.port, params=params)
    opened.wait_for(lambda s: any(m.retry for m in s.messages))
    return opened


def test_one_process_counts_streams_per_channel_and_tells_pages(
    make_server: Callable[..., Server],
) -> None:
    server = make_server(presence_interval=FAST)
    assert presence(server)["streams"] == 0
    with (
        stream(server, format="html", channel="general") as page,
        stream(server, format="json"),
        stream(server, format="text", channel="announcements"),
    ):
        found = wait_presence(server, lambda p: p["streams"] == 3)
        assert found["watching"] == {"announcements": 2, "general": 2}
        assert found["workers"] == 1
        assert found["stale_after_seconds"] == pytest.approx(3 * FAST)
        page.wait_for(
            lambda s: any(
                m.event == "presence" and json.loads(m.data)["streams"] == 3 for m in s.messages
            )
        )
        latest = [json.loads(m.data) for m in page.messages if m.event == "presence"][-1]
        assert latest == {
            "streams": 3,
            "everything": 1,
            "channels": {"announcements": 1, "general": 1},
        }
        assert all(m.id is None for m in page.messages if m.event == "presence")
    wait_presence(server, lambda p: p["streams"] == 0)


@pytest.fixture(params=["postgresql", "redis"])
def shared(request: pytest.FixtureRequest, postgres: Postgres) -> dict[str, Any]:
    url = postgres.new_database()
    if request.param == "postgresql":
        broker = url
    else:
        valkey: Valkey = request.getfixturevalue("valkey")
        broker = valkey.url
    return {"database": url, "broker_url": broker, "presence_interval": FAST}


def test_processes_add_up_and_a_dead_one_stops_counting(
    make_server: Callable[..., Server], shared: dict[str, Any]
) -> None:
    a = make_server(**shared)
    b = make_server(**shared)
    with stream(a, format="json", channel="general"), stream(b, format="json"):
        b_view = wait_presence(b, lambda p: p["workers"] == 2 and p["streams"] == 2)
        assert b_view["watching"] == {"announcements": 1, "general": 2}
        wait_presence(a, lambda p: p["workers"] == 2 and p["streams"] == 2)
        b.stop(signal.SIGKILL)
        # B's report goes stale after three intervals; A stops counting it.
        after = wait_presence(a, lambda p: p["workers"] == 1)
        assert (after["streams"], after["watching"]["general"]) == (1, 1)


def test_the_dashboard_shows_how_many_screens_watch(
    make_server: Callable[..., Server],
    browser: Browser,  # noqa: F811
    problems: Problems,  # noqa: F811
) -> None:
    server = make_server(presence_interval=FAST)
    # A screen is a browser: the tabs of one share a stream (feed-tabs.js).
    screens = [new_context(browser, problems) for _ in range(3)]
    try:
        first = open_live(screens[0], server.url)
        expect(first.locator("#presence")).to_have_text("1 screen watching", timeout=LIVE_MS * 3)
        open_live(screens[1], f"{server.url}/channels/general")
        expect(first.locator("#presence")).to_have_text("2 screens watching", timeout=LIVE_MS * 3)
        other = open_live(screens[2], f"{server.url}/channels/announcements")
        # The all-channels page counts every stream; a channel page counts those that get
        # it, and a browser's shared stream gets every channel.
        expect(first.locator("#presence")).to_have_text("3 screens watching", timeout=LIVE_MS * 3)
        expect(other.locator("#presence")).to_have_text("3 screens watching", timeout=LIVE_MS * 3)
    finally:
        for screen in screens:
            screen.close()
    problems.assert_none()


def test_presence_counts_come_from_the_hub_without_walking_its_streams() -> None:
    hub = WalkCountingHub()
    for channels in (None, {"a"}, {"a", "b"}):
        hub.subscribe(_sub(channels=channels))
    counting = Presence(hub, MemoryBroker(), FAST, frozenset)
    summed, workers = counting.total()
    assert summed == Counts(1, {"a": 2, "b": 1}, 3) and workers == 1
    assert summed.watching("a") == 3 and summed.watching("c") == 1
    assert hub.walks == 0
