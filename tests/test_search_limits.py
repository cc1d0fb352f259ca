"""Searches in flight per client (security.py, on searches in flight): one client's
many expensive searches cannot occupy the store's connections while everyone else's
searches and posts wait. Every road to a search counts: the API (and the CLI, which
uses it), the search page and its results, and a kiosk watching a search."""

from __future__ import annotations

import ast
import asyncio
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

import feed
from feed.app import create_app
from feed.search import Query
from feed.search_values import Filters, Results
from feed.settings import Settings
from feed.store import Store
from tests.auth import ADMIN, _run, ensure_admin, kiosk_key
from tests.waiting import until

SLOW = "slowword"


class HeldStore(Store):
    """A store whose searches for ``SLOW`` wait until the test lets them go, so that
    they are in flight at once, as long searches would be."""

    held = threading.Event()
    inside = 0

    async def search(self, query: Query | None, filters: Filters, **kwargs: Any) -> Results:
        if query is not None and SLOW in query.text:
            type(self).inside += 1
            await asyncio.to_thread(self.held.wait, 10)
        return await super().search(query, filters, **kwargs)


@pytest.fixture
def held(monkeypatch: pytest.MonkeyPatch) -> type[HeldStore]:
    monkeypatch.setattr("feed.app.Store", HeldStore)
    HeldStore.held = threading.Event()
    HeldStore.inside = 0
    return HeldStore


@pytest.mark.parametrize("path", ["/api/search", "/partials/search", "/search"])
def test_searches_beyond_the_limit_are_429_while_others_search_and_post(
    tmp_path: Path, held: type[HeldStore], path: str
) -> None:
    url = f"sqlite:///{tmp_path / 'feed.db'}"
    ensure_admin(url)
    settings = Settings(database_url=url, max_searches_per_client=2)
    with TestClient(create_app(settings)) as client, ThreadPoolExecutor(4) as pool:
        made = client.post(
            "/api/channels/general/posts", json={"body": "a fast word"}, headers=ADMIN
        )
        assert made.status_code == 201

        def anonymous(q: str) -> httpx.Response:
            return client.get(path, params={"q": q})

        slow: list[Future[httpx.Response]] = [pool.submit(anonymous, SLOW) for _ in range(2)]
        try:
            until(lambda: held.inside, lambda n: n == 2, timeout=5)
            refused = anonymous(SLOW)
            assert refused.status_code == 429
            assert refused.headers["retry-after"] == "1"
            assert "Too many searches" in refused.text
            if path == "/api/search":
                assert "at most 2 searches at once" in refused.json()["error"]
            assert held.inside == 2  # the refused one never reached the store
            # Someone else searches and posts while this client's two are in flight.
            other = client.get("/api/search", params={"q": "fast"}, headers=ADMIN)
            assert other.status_code == 200
            assert [r["post"]["body"] for r in other.json()["results"]] == ["a fast word"]
            posted = client.post(
                "/api/channels/general/posts", json={"body": "still posting"}, headers=ADMIN
            )
            assert posted.status_code == 201
        finally:
            held.held.set()
        assert [f.result(10).status_code for f in slow] == [200, 200]
        # Once they are done, the client may search again.
        assert anonymous("fast").status_code == 200


@pytest.mark.parametrize("path", ["/kiosk", "/partials/kiosk"])
def test_a_kiosks_search_counts_against_the_limit_of_whoever_shows_it(
    tmp_path: Path, held: type[HeldStore], path: str
) -> None:
    url = f"sqlite:///{tmp_path / 'feed.db'}"
    ensure_admin(url)
    settings = Settings(database_url=url, max_searches_per_client=1)
    key = _run(kiosk_key(settings))
    with TestClient(create_app(settings)) as client, ThreadPoolExecutor(2) as pool:
        made = client.post(
            "/api/channels/general/posts", json={"body": "a fast word"}, headers=ADMIN
        )
        assert made.status_code == 201

        def kiosk(q: str, key: str | None = None) -> httpx.Response:
            params = {"q": q} if key is None else {"q": q, "key": key}
            answer: httpx.Response = client.get(path, params=params)
            return answer

        # Signed out, a kiosk counts by its address, as any search does.
        slow = [pool.submit(kiosk, SLOW)]
        try:
            until(lambda: held.inside, lambda n: n == 1, timeout=5)
            refused = kiosk(SLOW)
            assert refused.status_code == 429, refused.text
            assert refused.headers["retry-after"] == "1"
            assert "Too many searches" in refused.text
            assert held.inside == 1  # the refused one never reached the store
            # A kiosk link is an identity of its own: this address's search is not its.
            assert kiosk("fast", key).status_code == 200
            slow.append(pool.submit(kiosk, SLOW, key))
            until(lambda: held.inside, lambda n: n == 2, timeout=5)
            assert kiosk("fast", key).status_code == 429
            assert held.inside == 2
        finally:
            held.held.set()
        assert [f.result(10).status_code for f in slow] == [200, 200]
        assert kiosk("fast").status_code == 200
        assert kiosk("fast", key).status_code == 200


def _counted(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    """Whether ``node`` runs inside an ``async with ...searching(...)``."""
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.AsyncWith):
            for item in node.items:
                called = item.context_expr
                if isinstance(called, ast.Call) and ast.unparse(called.func).endswith("searching"):
                    return True
    return False


def test_every_road_to_the_stores_search_is_counted() -> None:
    """Each call of the store's ``search`` outside the store is within ``searching``,
    so a new road to a search cannot pass the limit by forgetting it."""
    package = Path(feed.__file__).parent
    roads: dict[str, bool] = {}
    for path in sorted(package.rglob("*.py")):
        relative = path.relative_to(package)
        if relative.parts[0] == "storage" or relative.name == "store.py":
            continue
        tree = ast.parse(path.read_text(), str(path))
        parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "search"
                and ast.unparse(node.func.value).endswith("store")
            ):
                roads[f"{relative}:{node.lineno}"] = _counted(node, parents)
    assert {road.split(":")[0] for road in roads} == {"api.py", "kiosk.py", "search_pages.py"}
    assert [road for road, counted in roads.items() if not counted] == []
