"""Background tasks that live as long as the app: the relay, presence, the access
watch and the broker listener each run one."""

from __future__ import annotations

import asyncio


async def stop(task: asyncio.Task[None] | None) -> None:
    """Cancel ``task`` and wait until it has ended, so nothing it does outlives the
    app's shutdown; whatever it raised on the way out is dropped."""
    if task is None:
        return
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
