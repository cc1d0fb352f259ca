"""The ``feed`` command: its arguments, and what it prints.

Rationale:

1. Output read by another program may be cut short: ``feed token create ... | head -1``
   closes the pipe once it has its line. That is not a failure, so a command whose
   reader has gone stops quietly with status 0 instead of a traceback. Only a closed
   standard output counts; a connection broken elsewhere is reported as usual.
2. Exit codes are for scripts: 0 done, 1 the server or database could not be reached
   or failed, 2 bad usage or settings, 3 the server refused the request (its message
   is shown), 130 interrupted (Ctrl-C).
3. ``post``, ``tail``, ``search`` and ``channels`` import client.py (and terminal.py) only when
   they run, so ``feed serve`` never loads an HTTP client.
"""

from __future__ import annotations

import argparse
import dataclasses
import html
import io
import json
import os
import re
import select
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from feed import __version__
from feed.settings import Settings, SettingsError, reference
from feed.text import not_text

if TYPE_CHECKING:
    from feed.client import Client

# The token client commands act with; not a server setting.
TOKEN_VARIABLE = "FEED_TOKEN"
# prometheus_client's multiprocess switch (feed.metrics.SHARED_DIR_VARIABLE, which
# cannot be imported from here without importing prometheus_client).
SHARED_METRICS = "PROMETHEUS_MULTIPROC_DIR"
# Exit codes (2).
OK, UNREACHABLE, USAGE, REFUSED, INTERRUPTED = 0, 1, 2, 3, 130
EXIT_CODES = f"""exit codes: {OK} done; {UNREACHABLE} the server or database could not be
reached; {USAGE} bad usage or settings; {REFUSED} the server refused the request;
{INTERRUPTED} interrupted."""


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
    _credential_commands(commands)
    return parser


def _credential_commands(commands: Any) -> None:
    token = commands.add_parser(
        "token",
        help="create, list or revoke API tokens",
        description="API tokens, kept in the database of FEED_DATABASE_URL (only a digest "
        "of each). A token is shown once, when it is made.",
    )
    actions = token.add_subparsers(dest="action", metavar="ACTION", required=True)
    create = actions.add_parser("create", help="make a token and print it")
    create.add_argument("name", help="whose it is: the author of what it posts")
    create.add_argument(
        "--role",
        choices=("reader", "writer", "admin"),
        default="writer",
        help="reader reads; writer also posts; admin also edits anyone's posts and "
        "manages channels (default writer)",
    )
    create.add_argument(
        "--channel",
        action="append",
        metavar="NAME",
        help="limit the token to this channel (repeatable)",
    )
    actions.add_parser("list", help="list tokens (never their secrets)")
    revoke = actions.add_parser("revoke", help="revoke a token; its streams end within seconds")
    revoke.add_argument("id", type=int)
    kiosk = commands.add_parser(
        "kiosk",
        help="create, list or revoke kiosk links",
        description="Read-only links for screens that cannot sign in, limited to channels "
        "(private ones too) and signed with the feed's key.",
    )
    actions = kiosk.add_subparsers(dest="action", metavar="ACTION", required=True)
    create = actions.add_parser("create", help="make a kiosk link and print it")
    create.add_argument(
        "--channel", action="append", metavar="NAME", required=True, help="repeatable"
    )
    create.add_argument("--name", default="kiosk", help="a label, e.g. lobby (default kiosk)")
    create.add_argument("--url", help="the address people reach feed at, to print a full link")
    actions.add_parser("list", help="list kiosk links")
    revoke = actions.add_parser(
        "revoke", help="revoke a kiosk link; its screens stop within seconds"
    )
    revoke.add_argument("id", type=int)


def _client_commands(commands: Any) -> None:
    url_help = "the server (default http://FEED_HOST:FEED_PORT, so http://127.0.0.1:8000)"
    token_help = f"an API token to act as (default ${TOKEN_VARIABLE})"
    post = commands.add_parser(
        "post",
        help="publish a post through a running server",
        description="Publish a post through the server's HTTP API.",
        epilog="example: FEED_TOKEN=... feed post announcements 'Deploy at **5 pm**'",
    )
    post.add_argument("channel", help="channel name, e.g. general")
    post.add_argument("text", help="the post's Markdown; - reads it from standard input")
    post.add_argument("--json", action="store_true", help="print the server's JSON answer")
    post.add_argument("--url", help=url_help)
    post.add_argument("--token", default=os.environ.get(TOKEN_VARIABLE), help=token_help)
    search = commands.add_parser(
        "search",
        help="search posts through a running server",
        description='Print the posts that match a search, best first: words, "phrases", '
        "prefixes (depl*) and -exclusions, all of which must hold.",
        epilog="example: feed search 'lift maintenance' --channel announcements",
    )
    search.add_argument("query", help="what to look for")
    search.add_argument(
        "--channel", action="append", metavar="NAME", help="only this channel (repeatable)"
    )
    search.add_argument("--author", help="only posts by this author")
    search.add_argument("--limit", type=int, metavar="N", help="at most N results")
    search.add_argument("--json", action="store_true", help="print the server's JSON results")
    search.add_argument("--url", help=url_help)
    search.add_argument("--token", default=os.environ.get(TOKEN_VARIABLE), help=token_help)
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
    tail.add_argument("--token", default=os.environ.get(TOKEN_VARIABLE), help=token_help)
    channels = commands.add_parser(
        "channels",
        help="list, create, retitle, archive or restore channels",
        description="Manage channels through the server's HTTP API. With no action, list "
        "them. A channel's name is fixed (it is in links and kiosk URLs); its title is not.",
    )
    channels.add_argument("--url", help=url_help)
    channels.add_argument("--token", default=os.environ.get(TOKEN_VARIABLE), help=token_help)
    actions = channels.add_subparsers(dest="action", metavar="ACTION")
    actions.add_parser("list", help="list the channels (the default)")
    create = actions.add_parser("create", help="create a channel")
    create.add_argument("name", help="lower-case letters, digits, - and _")
    create.add_argument("title", help="what readers see")
    create.add_argument("--description", help="one line about the channel")
    create.add_argument("--private", action="store_true", help="readable by members only")
    create.add_argument(
        "--announcement-only",
        action="store_true",
        help="only members granted posting (and admins) may post",
    )
    grant = actions.add_parser(
        "grant", help="make someone a member (reads a private channel, posts if --post)"
    )
    grant.add_argument("name")
    grant.add_argument("who", help="the identity's name, as in `feed token create`")
    grant.add_argument("--post", action="store_true", help="may post in announcement-only")
    ungrant = actions.add_parser("ungrant", help="take a membership away")
    ungrant.add_argument("name")
    ungrant.add_argument("who")
    members = actions.add_parser("members", help="list a channel's members")
    members.add_argument("name")
    rename = actions.add_parser("rename", help="change a channel's title")
    rename.add_argument("name")
    rename.add_argument("title")
    for verb, text in (("archive", "stop new posts; keep the old ones"), ("restore", "undo")):
        action = actions.add_parser(verb, help=text)
        action.add_argument("name")


def main(argv: Sequence[str] | None = None) -> int:
    try:
        code = _main(argv)
        sys.stdout.flush()  # here, where a closed pipe can still be told apart
    except BrokenPipeError:
        if not _reader_gone():
            raise
        # Python flushes standard output once more on its way out; give it nowhere
        # to fail.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return OK
    return code


def _reader_gone() -> bool:
    """Whether standard output is a pipe nobody reads any more."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except (OSError, ValueError):
        return False


def _main(argv: Sequence[str] | None) -> int:
    undecodable = _not_text(sys.argv[1:] if argv is None else argv)
    if undecodable is not None:
        print(f"feed: {undecodable}", file=sys.stderr)
        return USAGE
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
        return USAGE
    if args.command == "db":
        return _db(settings, args.db_command)
    if args.command == "config":
        if args.reference:
            print(reference(), end="")
        else:
            for name, value in settings.describe().items():
                print(f"{name}={value}")
        return OK
    if args.command in ("token", "kiosk"):
        return _credentials(settings, args)
    if args.command in ("post", "tail", "channels", "search"):
        return _remote(args, args.url or _default_url(settings))
    # prometheus_client picks where its numbers live from these when it is first
    # imported. Only the supervisor names a directory, a fresh one, for its workers
    # (metrics.py, on workers sharing a port); one left in the environment by
    # something else would make this server add in the numbers of whatever wrote there.
    for name in (SHARED_METRICS, SHARED_METRICS.lower()):
        os.environ.pop(name, None)
    from feed.server import serve

    return serve(settings)


def _not_text(argv: Sequence[str]) -> str | None:
    """Why an argument cannot be used, if one holds bytes that are not UTF-8 (Python
    passes them on as lone surrogates, which nothing can store or send)."""
    for given in argv:
        refused = not_text(given)
        if refused is not None:
            return f"an argument {refused}: arguments must be UTF-8 text"
    return None


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
        return UNREACHABLE
    return OK


def _default_url(settings: Settings) -> str:
    # A server listening on every address is reached on loopback.
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{settings.port}"


def _remote(args: argparse.Namespace, url: str) -> int:
    from feed import client

    try:
        server = client.Client(url, args.token)
        if args.command == "tail":
            return _tail(args, server)
        if args.command == "channels":
            return _channels(args, server)
        if args.command == "search":
            return _search(args, server)
        return _post(args, server)
    except client.Failure as exc:
        print(f"feed: {exc}", file=sys.stderr)
        if isinstance(exc, client.NotSendable):
            return USAGE
        return REFUSED if isinstance(exc, client.Refused) else UNREACHABLE


def _post(args: argparse.Namespace, server: Client) -> int:
    text = args.text
    if text == "-":
        # Bytes that are not UTF-8 become lone surrogates, which the client refuses.
        stdin = io.TextIOWrapper(sys.stdin.buffer, "utf-8", "surrogateescape")
        text = stdin.read()
    answer = server.post(args.channel, text)
    if args.json:
        print(json.dumps(answer))
    else:
        print(
            f"posted to #{answer['post']['channel']}: post {answer['post']['id']}, "
            f"event {answer['event_id']}"
        )
    return OK


def _search(args: argparse.Namespace, server: Client) -> int:
    from feed.render import terminal_safe

    results = server.search(args.query, args.channel or [], args.author, args.limit)
    for found in results:
        if args.json:
            print(json.dumps(found))
            continue
        post = found["post"]
        # The snippet is HTML (search.py): a terminal gets its text, marks dropped.
        text = html.unescape(re.sub(r"</?mark>", "", found["snippet"]))
        where = f"#{post['channel']} post {post['id']} by {terminal_safe(post['author'])}"
        print(f"{where}, {post['created_at']}: {terminal_safe(text)}")
    return OK


def _tail(args: argparse.Namespace, server: Client) -> int:
    from feed.terminal import Tail, want_colour

    tail = Tail(
        client=server,
        channels=args.channel or [],
        fmt=args.format,
        last_id=args.since,
        out=sys.stdout,
        err=sys.stderr,
        colour=want_colour(args.color, sys.stdout),
        limit=args.count,
    )
    try:
        tail.run()
    except KeyboardInterrupt:
        return INTERRUPTED
    return OK


def _channels(args: argparse.Namespace, server: Client) -> int:
    action = args.action or "list"
    if action == "list":
        for channel in server.channels():
            marks = [m for m in ("archived", "private", "announcement_only") if channel.get(m)]
            state = f"\t({', '.join(marks)})" if marks else ""
            print(f"{channel['name']}\t{channel['title']}{state}")
        return OK
    if action in ("grant", "ungrant", "members"):
        return _members(args, server)
    if action == "create":
        channel = server.create_channel(
            args.name,
            args.title,
            description=args.description,
            private=args.private,
            announcement_only=args.announcement_only,
        )
    elif action == "rename":
        channel = server.retitle_channel(args.name, args.title)
    elif action == "archive":
        channel = server.archive_channel(args.name)
    else:
        channel = server.restore_channel(args.name)
    state = "archived" if channel["archived"] else "open"
    print(f"#{channel['name']}: {channel['title']} ({state})")
    return OK


def _members(args: argparse.Namespace, server: Client) -> int:
    if args.action == "members":
        for member in server.members(args.name):
            print(f"{member['name']}\t{'may post' if member['may_post'] else 'reads'}")
    elif args.action == "grant":
        server.grant(args.name, args.who, may_post=args.post)
        print(f"{args.who} is a member of #{args.name}{' and may post' if args.post else ''}")
    else:
        server.ungrant(args.name, args.who)
        print(f"{args.who} is no longer a member of #{args.name}")
    return OK


def _credentials(settings: Settings, args: argparse.Namespace) -> int:
    """``feed token`` and ``feed kiosk``: made in the database directly, so the first
    admin token can exist before anyone can sign in."""
    import asyncio

    from feed import credentials
    from feed.store import StoreError

    try:
        return asyncio.run(credentials.run(settings, args))
    except credentials.UsageError as exc:
        print(f"feed: {exc}", file=sys.stderr)
        return USAGE
    except StoreError as exc:
        print(f"feed: {exc}", file=sys.stderr)
        return UNREACHABLE if isinstance(exc, credentials.StoreUnavailable) else REFUSED
