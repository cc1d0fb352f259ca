"""``python -m tests.held_search DIR``: ``feed serve`` whose searches for ``HELD`` wait
at a gate, so a test can keep one in flight for as long as it needs while a browser
searches beside it.

The server touches ``DIR/inside`` when such a search reaches the store, and lets it go
once ``DIR/go`` exists (or after ``MAX_HELD`` seconds, so a failed test cannot leave
the server stuck).
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

import feed.app
from feed.cli import main
from feed.search import Query
from feed.search_values import Filters, Results
from feed.store import Store

HELD = "heldword"
MAX_HELD = 20.0


def wait_for(path: Path, timeout: float) -> None:
    """Until ``path`` exists, or ``timeout`` seconds, asking every 20 ms."""
    deadline = time.monotonic() + timeout
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.02)  # polling a file another process makes, with a deadline


class GatedStore(Store):
    """A store whose searches for ``HELD`` wait at the gate in ``gate``."""

    gate = Path()

    async def search(self, query: Query | None, filters: Filters, **kwargs: Any) -> Results:
        if query is not None and HELD in query.text:
            (self.gate / "inside").touch()
            await asyncio.to_thread(wait_for, self.gate / "go", MAX_HELD)
        return await super().search(query, filters, **kwargs)


if __name__ == "__main__":
    GatedStore.gate = Path(sys.argv[1])
    feed.app.Store = GatedStore  # type: ignore[attr-defined]
    sys.exit(main(["serve"]))
