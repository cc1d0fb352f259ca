"""What the database plans for the statements the store sends, in tests of indexes."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from sqlalchemy import Engine, event

from feed.store import Store

Sent = list[tuple[str, Any]]


@contextlib.contextmanager
def migrated(url: str) -> Iterator[Store]:
    """A store on ``url`` with its schema brought up to date, closed afterwards."""
    store = Store.from_url(url)
    try:
        asyncio.run(store.create_schema())
        yield store
    finally:
        store.close()


def sent_by(engine: Engine, work: Callable[[], object], naming: str = "events") -> Sent:
    """The statements naming ``naming`` that ``work()`` sends on ``engine``, as sent."""
    sent: Sent = []

    def seen(_c: Any, _cur: Any, statement: str, parameters: Any, *_: Any) -> None:
        if naming in statement:
            sent.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", seen)
    try:
        work()
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    return sent


def explained(engine: Engine, sent: Sent) -> list[str]:
    """The database's plan for each statement, as text. PostgreSQL is told not to scan
    a table whole where it has another way: the tables of a test are too small for the
    plan it would choose on a long log, and a lookup it cannot make still shows as a
    scan."""
    sqlite = engine.dialect.name == "sqlite"
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        if not sqlite:
            cursor.execute("SET enable_seqscan = off")
        plans = []
        for statement, parameters in sent:
            cursor.execute(
                f"{'EXPLAIN QUERY PLAN' if sqlite else 'EXPLAIN'} {statement}", parameters
            )
            plans.append("\n".join(str(row[-1]) for row in cursor.fetchall()))
        return plans
    finally:
        raw.close()
