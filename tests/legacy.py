"""Text the edge refuses today (text.py), written straight into a database the way an
earlier release, or another program, could have stored it: output must stay safe
with it all the same."""

from __future__ import annotations

import asyncio

from feed.store import Store


async def _write(
    url: str, posts: list[tuple[str, str, str]], channels: list[tuple[str, str]]
) -> list[int]:
    store = Store.from_url(url)
    try:
        await store.create_schema()
        for name, title in channels:
            await store.create_channel(name, title, "")
        return [
            (await store.create_post(channel, author, body)).post.id
            for channel, author, body in posts
        ]
    finally:
        store.close()


def stored_posts(
    url: str, *bodies: str, author: str = "mallory", channel: str = "general"
) -> list[int]:
    """Post ``bodies`` in the database at ``url`` as ``author``; their ids."""
    return asyncio.run(_write(url, [(channel, author, body) for body in bodies], []))


def stored_channel(url: str, name: str, title: str) -> None:
    asyncio.run(_write(url, [], [(name, title)]))
