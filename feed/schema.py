"""The database schema's version, and moving it forward with Alembic.

Migrations live in ``feed/migrations/versions``; ``feed db upgrade`` and every server
start run them. A database made by feed 0.1.0, before there were migrations, has the
tables but no version: it is recognised and marked as the first revision, then
upgraded like any other.

Several processes may start at once, so the upgrade runs while holding the store's
write lock (an advisory lock on PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite): the first
process migrates, the others then find nothing to do. They wait for it as long as a
migration may take (``MIGRATION_WAIT``), not the few seconds a write waits for the
lock: a worker that gave up waiting failed to start, its supervisor then stopped the
worker that was migrating, the migration rolled back, and every start did the same.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, inspect, text

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# What feed 0.1.0's tables correspond to.
BASELINE = "0001"
UNVERSIONED = "unversioned (feed 0.1.0)"
# Any fixed number works; it only has to be the same in every feed process.
LOCK_KEY = 0x66656564
# The search index (storage/search.py): on SQLite an FTS5 table and the tables it
# keeps itself, on PostgreSQL a generated column and its index, which no model
# describes; comparisons with the models leave them out.
SEARCH_INDEX = "posts_search"
# Seconds a start waits for another process's migration to finish (see above).
MIGRATION_WAIT = 3600.0


def _config(connection: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def include_name(name: str | None, kind: str, _parents: object) -> bool:
    """Whether a comparison with the models looks at ``name``: not the search index."""
    searching = ("table", "index", "column")
    return not (kind in searching and name is not None and name.startswith(SEARCH_INDEX))


def head() -> str:
    """The newest revision this feed knows."""
    script = ScriptDirectory(str(MIGRATIONS))
    found = script.get_current_head()
    assert found is not None
    return found


def current(engine: Engine) -> str | None:
    """The database's revision; None for an empty database."""
    with engine.connect() as connection:
        revision = MigrationContext.configure(connection).get_current_revision()
        if revision is None and "events" in inspect(connection).get_table_names():
            return UNVERSIONED
        return revision


def upgrade(engine: Engine) -> tuple[str | None, str]:
    """Bring the schema to the newest revision; returns (revision before, after).

    "Before" is None for an empty database and ``UNVERSIONED`` for one made by
    feed 0.1.0."""
    with (
        engine.connect() as connection,
        _waiting_for_migrations(connection),
        connection.begin(),
    ):
        if connection.dialect.name == "postgresql":
            wait = f"{round(MIGRATION_WAIT)}s"
            connection.execute(
                text("SELECT set_config('lock_timeout', :wait, true)"), {"wait": wait}
            )
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK_KEY})
        before = MigrationContext.configure(connection).get_current_revision()
        config = _config(connection)
        if before is None and "events" in inspect(connection).get_table_names():
            command.stamp(config, BASELINE)
            before = UNVERSIONED
        command.upgrade(config, "head")
    return before, head()


@contextmanager
def _waiting_for_migrations(connection: Connection) -> Iterator[None]:
    """On SQLite, let this connection's ``BEGIN IMMEDIATE`` wait ``MIGRATION_WAIT`` for
    another process's migration, then wait as briefly as before (PostgreSQL sets its
    wait inside the transaction). Set on the driver's connection itself, before the
    transaction begins: a statement through SQLAlchemy would begin it first."""
    if connection.dialect.name != "sqlite":
        yield
        return
    raw = connection.connection.driver_connection
    assert raw is not None
    before = raw.execute("PRAGMA busy_timeout").fetchone()[0]
    raw.execute(f"PRAGMA busy_timeout = {round(MIGRATION_WAIT * 1000)}")
    try:
        yield
    finally:
        raw.execute(f"PRAGMA busy_timeout = {int(before)}")
