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
    from feed.server import serve

    return serve(settings)
