"""Alembic's entry point. feed runs migrations from code (``feed.schema``), which
hands over an open connection; there is no alembic.ini."""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

import feed.models  # noqa: F401  (registers the tables on SQLModel.metadata)
from feed import schema

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=SQLModel.metadata,
    # SQLite cannot alter most things in place; batch mode copies the table instead.
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
    include_name=schema.include_name,
)
with context.begin_transaction():
    context.run_migrations()
