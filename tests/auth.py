"""Tokens for tests: every test database gets the admin token ``ADMIN_TOKEN`` (named
``tester``), made the way ``feed token create`` makes one, before a server starts."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from feed.access import Access
from feed.identity import digest, new_token
from feed.settings import Settings
from feed.store import Store

ADMIN_NAME = "tester"
ADMIN_TOKEN = "feed_tests-admin-token-not-a-secret"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
T = TypeVar("T")


def _run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run ``coroutine`` to the end, also from a test that is itself async."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _add(
    url: str, name: str, role: str, kind: str, channels: Sequence[str] | None, secret: str
) -> int:
    store = Store.from_url(url)
    try:
        await store.create_schema()
        found = await store.token_by_digest(digest(secret))
        if found is not None:
            return found.id
        made = await store.add_token(name, role, kind, channels, digest(secret))
        return made.id
    finally:
        store.close()


def ensure_admin(url: str) -> None:
    """Give the database at ``url`` the tests' admin token, once."""
    _run(_add(url, ADMIN_NAME, "admin", "api", None, ADMIN_TOKEN))


def make_token(
    url: str, name: str, role: str = "writer", channels: Sequence[str] | None = None
) -> tuple[str, int]:
    """A new API token in the database at ``url``: (token, id)."""
    token, _ = new_token()
    return token, _run(_add(url, name, role, "api", channels, token))


async def kiosk_key(settings: Settings) -> str:
    """A kiosk link's key for #general, made as ``feed kiosk create`` makes one."""
    store = Store.from_url(settings.database_url)
    try:
        access = Access(settings, store)
        await access.start()
        key = access.kiosk_key()
        await store.add_token("lobby", "reader", "kiosk", ["general"], digest(key))
        return key
    finally:
        store.close()
