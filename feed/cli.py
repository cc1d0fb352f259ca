"""The ``feed`` command: what each command does and prints (its arguments are
arguments.py's).

Rationale:

1. Output read by another program may be cut short: ``feed token create ... | head -1``
   closes the pipe once it has its line. That is not a failure, so a command whose
   reader has gone stops quietly with status 0 instead of a traceback. Only a closed
   standard output counts; a connection broken elsewhere is reported as usual.
2. Exit codes are for scripts: 0 done, 1 the server or database could not be reached
   or failed (or what answered is no feed server), 2 bad usage or settings, 3 the
   server refused the request (its message is shown), 130 interrupted (Ctrl-C), 143
   terminated (SIGTERM). ``post --ndjson`` hears SIGTERM as it hears Ctrl-C and says
   which lines it posted before it exits 143; any other command is ended by the
   signal, which a shell reports as 143 as well.
3. ``post``, ``tail``, ``search`` and ``channels`` import client.py (and terminal.py)
   only when they run, so ``feed serve`` never loads an HTTP client. They import none
   of the server's libraries either (the database's, the templates'): the input rules
   they share with the server and the store's refusals are kept apart from both
   (limits.py, storage/refusals.py, terminal_text.py), so a ``feed post`` starts in
   about a fifth of the second it took when they came with SQLAlchemy.
4. Every string a server sent (a refusal's reason, a channel's name or title, an
   author, a date) reaches the terminal through terminal_text.py, one line each
   (``one_line``), and JSON through ``json_safe``: another server, or text stored by other
   means, could otherwise set the terminal's title, clear it or reverse a line. The
   client has checked the answer's shape first (client.py, on answers feed never gives).
"""

from __future__ import annotations

import argparse
import dataclasses
import html
import json
import os
import re
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from feed.arguments import (
    INTERRUPTED,
    OK,
    REFUSED,
    UNREACHABLE,
    USAGE,
    parser,
)
from feed.declarations import SettingsError
from feed.post_command import no_input, post, post_arguments
from feed.settings import Settings, reference
from feed.standard_output import reader_gone, to_nowhere
from feed.terminal_text import json_safe, one_line
from feed.text import not_text

if TYPE_CHECKING:
    from feed.client import Client

# prometheus_client's multiprocess switch (feed.metrics.SHARED_DIR_VARIABLE, which
# cannot be imported from here without importing prometheus_client).
SHARED_METRICS = "PROMETHEUS_MULTIPROC_DIR"


def main(argv: Sequence[str] | None = None) -> int:
    try:
        code = _main(argv)
        sys.stdout.flush()  # here, where a closed pipe can still be told apart
    except BrokenPipeError:
        if not reader_gone():
            raise
        to_nowhere()
        return OK
    except KeyboardInterrupt:
        # Any command, wherever Ctrl-C found it (2); those that have something to say
        # about what was left undone say it themselves first.
        print(file=sys.stderr)
        return INTERRUPTED
    return code


def _main(argv: Sequence[str] | None) -> int:
    undecodable = _not_text(sys.argv[1:] if argv is None else argv)
    if undecodable is not None:
        print(f"feed: {undecodable}", file=sys.stderr)
        return USAGE
    args = parser().parse_args(argv)
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
    if args.command == "post" and (wrong := post_arguments(args) or no_input(args)):
        print(f"feed: {wrong}", file=sys.stderr)
        return USAGE
    if args.command in ("post", "tail", "channels", "search"):
        return _remote(args, args.url or _default_url(settings), settings.max_body_bytes)
    # prometheus_client picks where its numbers live from these when it is first
    # imported. Only the supervisor names a directory, a fresh one, for its workers
    # (metrics.py, on workers sharing a port); one left in the environment by
    # something else would make this server add in the numbers of whatever wrote there.
    for name in (SHARED_METRICS, SHARED_METRICS.lower()):
        os.environ.pop(name, None)
    from feed.server import serve

    try:
        return serve(settings)
    except KeyboardInterrupt:
        # Ctrl-C: the server has shut down in good order by now, and the signal is
        # raised again once it has; a traceback would tell the user nothing (2).
        return INTERRUPTED


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
    from feed.credentials import missing_database
    from feed.store import StoreError, make_engine

    # Connecting would create the file: only ``upgrade`` is asked to.
    missing = missing_database(settings.database_url) if action == "current" else None
    if missing is not None:
        print(f"feed: {missing}", file=sys.stderr)
        return UNREACHABLE
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


def _remote(args: argparse.Namespace, url: str, body_limit: int) -> int:
    from feed import client, client_failures

    try:
        server = client.Client(url, args.token)
        if args.command == "tail":
            return _tail(args, server)
        if args.command == "channels":
            return _channels(args, server)
        if args.command == "search":
            return _search(args, server)
        return post(args, server, body_limit)
    except client_failures.Failure as exc:
        print(f"feed: {one_line(exc)}", file=sys.stderr)
        if isinstance(exc, client_failures.NotSendable):
            return USAGE
        return REFUSED if isinstance(exc, client_failures.Refused) else UNREACHABLE


def _search(args: argparse.Namespace, server: Client) -> int:
    results = server.search(args.query, args.channel or [], args.author, args.limit)
    for found in results:
        if args.json:
            print(json_safe(json.dumps(found)))
            continue
        post = found["post"]
        # The snippet is HTML (search.py): a terminal gets its text, marks dropped.
        text = html.unescape(re.sub(r"</?mark>", "", found["snippet"]))
        # A reply is found where it is read: in its thread (render.py, post_link).
        what = "post" if post["parent"] is None else "reply"
        thread = "" if post["parent"] is None else f" in thread {post['parent']}"
        by = one_line(post["author"])
        where = f"#{one_line(post['channel'])} {what} {post['id']}{thread} by {by}"
        print(f"{where}, {one_line(post['created_at'])}: {one_line(text)}")
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
        only="mentions" if args.mentions else None,
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
            if channel.get("announcement_only") and channel.get("replies") is False:
                marks.append("no replies")
            state = f"\t({', '.join(marks)})" if marks else ""
            print(f"{one_line(channel['name'])}\t{one_line(channel['title'])}{state}")
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
            replies=not args.no_replies,
        )
    elif action == "replies":
        channel = server.set_replies(args.name, args.setting == "on")
        may = "may" if channel.get("replies") else "may not"
        print(f"#{one_line(channel['name'])}: readers {may} reply")
        return OK
    elif action == "rename":
        channel = server.retitle_channel(args.name, args.title)
    elif action == "archive":
        channel = server.archive_channel(args.name)
    else:
        channel = server.restore_channel(args.name)
    state = "archived" if channel["archived"] else "open"
    print(f"#{one_line(channel['name'])}: {one_line(channel['title'])} ({state})")
    return OK


def _members(args: argparse.Namespace, server: Client) -> int:
    if args.action == "members":
        for member in server.members(args.name):
            print(f"{one_line(member['name'])}\t{'may post' if member['may_post'] else 'reads'}")
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
