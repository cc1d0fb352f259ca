"""The ``feed`` command."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Sequence
from typing import Any

from feed import __version__
from feed.settings import Settings, SettingsError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="feed", description="A real-time updates feed over Server-Sent Events."
    )
    parser.add_argument("--version", action="version", version=f"feed {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    serve = commands.add_parser(
        "serve",
        help="run the web server (the default)",
        description="Run the web server. Settings come from FEED_* variables; "
        "these flags override them.",
    )
    serve.add_argument("--host", help="address to listen on (FEED_HOST, default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (FEED_PORT, default 8000)")
    serve.add_argument(
        "--workers",
        type=int,
        help="worker processes (FEED_WORKERS, default 1; more than one needs a "
        "postgresql:// or redis:// FEED_BROKER_URL)",
    )
    db = commands.add_parser(
        "db",
        help="show or upgrade the database schema",
        description="The schema of the database in FEED_DATABASE_URL. `feed serve` "
        "upgrades it on start too; run `feed db upgrade` to do it ahead of a deploy.",
    )
    db_commands = db.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    db_commands.add_parser("upgrade", help="apply every pending migration")
    db_commands.add_parser("current", help="print the schema revision, and the newest known")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = Settings.from_env(os.environ)
        overrides: dict[str, Any] = {
            name: getattr(args, name, None)
            for name in ("host", "port", "workers")
            if getattr(args, name, None) is not None
        }
        settings = dataclasses.replace(settings, **overrides)
    except SettingsError as exc:
        print(f"feed: {exc}", file=sys.stderr)
        return 2
    if args.command == "db":
        return _db(settings, args.db_command)
    from feed.server import serve

    return serve(settings)


def _db(settings: Settings, action: str) -> int:
    from sqlalchemy.exc import SQLAlchemyError

    from feed import schema
    from feed.store import StoreError, make_engine

    try:
        engine = make_engine(settings.database_url)
        try:
            if action == "upgrade":
                before, after = schema.upgrade(engine)
                change = (
                    "already current"
                    if before == after
                    else "created"
                    if before is None
                    else f"upgraded from {before}"
                )
                print(f"schema at revision {after} ({change})")
            else:
                print(f"schema at revision {schema.current(engine)}; newest is {schema.head()}")
        finally:
            engine.dispose()
    except (StoreError, SQLAlchemyError) as exc:
        print(f"feed: cannot reach the database: {exc}", file=sys.stderr)
        return 1
    return 0
