"""Reading a database's schema in tests, after taking it down to a revision first."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from alembic import command
from sqlalchemy import inspect
from sqlalchemy.engine.reflection import Inspector

from feed import schema
from feed.store import make_engine

T = TypeVar("T")


def schema_at(url: str, revision: str | None, read: Callable[[Inspector], T]) -> T:
    """``read`` of the database at ``url`` once its schema is taken down to
    ``revision``, or as it is (None)."""
    engine = make_engine(url)
    try:
        with engine.begin() as connection:
            if revision is not None:
                command.downgrade(schema._config(connection), revision)
            return read(inspect(connection))
    finally:
        engine.dispose()


def index_names(table: str) -> Callable[[Inspector], set[str]]:
    return lambda inspector: {i["name"] for i in inspector.get_indexes(table) if i["name"]}
