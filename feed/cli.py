"""The ``feed`` command."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from feed import __version__
from feed.settings import Settings, SettingsError, reference

EXIT_CODES = """exit codes: 0 done; 1 the server or database could not be reached; 2 bad usage
or settings; 3 the server refused the request; 130 interrupted."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="feed",
        description="A real-time updates feed over Server-Sent Events.",
        epilog=EXIT_CODES,
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
    config = commands.add_parser(
        "config",
        help="print the settings in effect",
        description="Print the FEED_* settings in effect, passwords hidden.",
    )
    config.add_argument(
        "--reference", action="store_true", help="print the Markdown reference of every setting"
    )
    _client_commands(commands)
    return parser


def _client_commands(commands: Any) -> None:
    url_help = "the server (default http://FEED_HOST:FEED_PORT, so http://127.0.0.1:8000)"
    post = commands.add_parser(
        "post",
        help="publish a post through a running server",
        description="Publish a post through the server's HTTP API.",
        epilog="example: feed post announcements 'Deploy at **5 pm**' --author ops",
    )
    post.add_argument("channel", help="channel name, e.g. general")
    post.add_argument("text", help="the post's Markdown; - reads it from standard input")
    post.add_argument("--author", default=os.environ.get("USER") or "feed", help="default $USER")
    post.add_argument("--json", action="store_true", help="print the server's JSON answer")
    post.add_argument("--url", help=url_help)
    tail = commands.add_parser(
        "tail",
        help="follow the feed live in the terminal",
        description="Print events as they happen. Reconnects and resumes with "
        "Last-Event-ID, so nothing is missed or repeated across restarts and cuts.",
        epilog="examples: feed tail --channel announcements; "
        "feed tail --format json | jq .post.body",
    )
    tail.add_argument(
        "--channel", action="append", metavar="NAME", help="only this channel (repeatable)"
    )
    tail.add_argument("--format", choices=("text", "json"), default="text", help="default text")
    tail.add_argument("--since", type=int, metavar="ID", help="first replay every event after ID")
    tail.add_argument(
        "--color",
        choices=("auto", "always", "never"),
        default="auto",
        help="colour text lines (default auto: on a terminal, unless NO_COLOR is set)",
    )
    tail.add_argument("--count", type=int, metavar="N", help="stop after N events")
    tail.add_argument("--url", help=url_help)
    channels = commands.add_parser(
        "channels",
        help="list, create, retitle, archive or restore channels",
        description="Manage channels through the server's HTTP API. With no action, list "
        "them. A channel's name is fixed (it is in links and kiosk URLs); its title is not.",
    )
    channels.add_argument("--url", help=url_help)
    actions = channels.add_subparsers(dest="action", metavar="ACTION")
    actions.add_parser("list", help="list the channels (the default)")
    create = actions.add_parser("create", help="create a channel")
    create.add_argument("name", help="lower-case letters, digits, - and _")
    create.add_argument("title", help="what readers see")
    create.add_argument("--description", help="one line about the channel")
    rename = actions.add_parser("rename", help="change a channel's title")
    rename.add_argument("name")
    rename.add_argument("title")
    for verb, text in (("archive", "stop new posts; keep the old ones"), ("restore", "undo")):
        action = actions.add_parser(verb, help=text)
        action.add_argument("name")


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
    if args.command == "config":
        if args.reference:
            print(reference(), end="")
        else:
            for name, value in settings.describe().items():
                print(f"{name}={value}")
        return 0
    if args.command in ("post", "tail", "channels"):
        return _remote(args, args.url or _default_url(settings))
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


def _default_url(settings: Settings) -> str:
    # A server listening on every address is reached on loopback.
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{settings.port}"


def _remote(args: argparse.Namespace, url: str) -> int:
    from feed import terminal

    url = url.rstrip("/")
    try:
        if args.command == "tail":
            return terminal.run_tail(args, url)
        if args.command == "channels":
            return _channels(args, url)
        text = sys.stdin.read() if args.text == "-" else args.text
        answer = terminal.post(url, args.channel, text, args.author)
    except terminal.CommandError as exc:
        print(f"feed: {exc}", file=sys.stderr)
        return exc.code
    if args.json:
        print(json.dumps(answer))
    else:
        print(
            f"posted to #{answer['post']['channel']}: post {answer['post']['id']}, "
            f"event {answer['event_id']}"
        )
    return terminal.OK


def _channels(args: argparse.Namespace, url: str) -> int:
    from feed import terminal

    action = args.action or "list"
    if action == "list":
        for channel in terminal.channels(url):
            state = "\t(archived)" if channel["archived"] else ""
            print(f"{channel['name']}\t{channel['title']}{state}")
        return terminal.OK
    if action == "create":
        fields = {"name": args.name, "title": args.title}
        if args.description:
            fields["description"] = args.description
        answer = terminal.call(url, "POST", "/api/channels", fields)
    elif action == "rename":
        answer = terminal.call(url, "PATCH", f"/api/channels/{args.name}", {"title": args.title})
    else:
        answer = terminal.call(url, "POST", f"/api/channels/{args.name}/{action}")
    channel = answer["channel"]
    state = "archived" if channel["archived"] else "open"
    print(f"#{channel['name']}: {channel['title']} ({state})")
    return terminal.OK
