"""The ``feed`` command's arguments: every command, action and option, and the exit
codes its help states.

Rationale:

1. A client command's ``--url`` and ``--token`` go anywhere after its name: people
   add them last (``feed channels list --token T``) as often as first. argparse
   gives a command's options to the command alone and an action's to the action
   alone, so ``channels`` declares them on itself and again on each action.
2. A number the server would refuse, or that would mean nothing (``tail --count 0``),
   is a usage error here, before any request: ``search --limit`` is checked against
   the server's own bound (limits.py).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from typing import Any

from feed import __version__
from feed.limits import MAX_SEARCH_PAGE

# The token client commands act with; not a server setting.
TOKEN_VARIABLE = "FEED_TOKEN"
# Exit codes (cli.py, on exit codes).
OK, UNREACHABLE, USAGE, REFUSED, INTERRUPTED = 0, 1, 2, 3, 130
TERMINATED = 143  # 128 + SIGTERM, as a shell reports a command the signal ended
EXIT_CODES = f"""exit codes: {OK} done; {UNREACHABLE} the server or database could not be
reached, or failed, or what answered is no feed server; {USAGE} bad usage or settings;
{REFUSED} the server refused the request; {INTERRUPTED} interrupted; {TERMINATED}
terminated (SIGTERM)."""


def parser() -> argparse.ArgumentParser:
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
    post = commands.add_parser(
        "post",
        help="publish a post through a running server",
        description="Publish a post through the server's HTTP API.",
        epilog="examples: FEED_TOKEN=... feed post announcements 'Deploy at **5 pm**'; "
        "feed post --reply-to 12 'Thanks!'; tail -f build.log | feed post --ndjson builds -",
    )
    # With --reply-to, the first argument is the post to answer: two plain positionals
    # keep ``--url`` and ``--token`` usable anywhere (1).
    post.add_argument(
        "channel",
        metavar="CHANNEL",
        help="channel name, e.g. general; with --reply-to, a post id; with --ndjson, where "
        "lines that name no channel go",
    )
    post.add_argument("text", help="the post's Markdown; - reads it from standard input")
    post.add_argument(
        "--ndjson",
        action="store_true",
        help="with TEXT -, post every line of standard input, in batches: a line that is a "
        'JSON object is a post ({"body": ..., "channel": ..., "parent": ..., '
        '"idempotency_key": ...}), any other line a post of its text to CHANNEL; prints '
        "one line per post and exits 3 if any was refused. A batch is sent once full or "
        "soon after its first line, so a live pipe is posted as it comes; a batch without "
        "an answer, or refused for the rate, is sent again without posting a line twice, "
        "and one too large for the server is split. Stopped (exit 1 if the server cannot "
        "be reached, 3 if it refuses the batch whole, 130 on Ctrl-C, 143 on SIGTERM), it "
        "reports every line answered and says which may or may not have been posted and "
        "from which line on none was posted",
    )
    post.add_argument(
        "--reply-to",
        action="store_true",
        help="reply to the post whose id is the first argument (in its own channel)",
    )
    post.add_argument("--json", action="store_true", help="print the server's JSON answer")
    _where_and_who(post)
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
    search.add_argument(
        "--limit",
        type=_between(1, MAX_SEARCH_PAGE),
        metavar="N",
        help=f"at most N results, 1 to {MAX_SEARCH_PAGE} (default: the server's page size)",
    )
    search.add_argument("--json", action="store_true", help="print the server's JSON results")
    _where_and_who(search)
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
    tail.add_argument(
        "--mentions", action="store_true", help="only posts that mention you (needs a token)"
    )
    tail.add_argument(
        "--count", type=_between(1, None), metavar="N", help="stop after N events (N ≥ 1)"
    )
    _where_and_who(tail)
    channels = commands.add_parser(
        "channels",
        help="list, create, retitle, archive or restore channels",
        description="Manage channels through the server's HTTP API. With no action, list "
        "them. A channel's name is fixed (it is in links and kiosk URLs); its title is not.",
    )
    _where_and_who(channels)
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
    create.add_argument(
        "--no-replies",
        action="store_true",
        help="announcement-only: readers may not reply (those who may post still may)",
    )
    replies = actions.add_parser(
        "replies", help="let readers of an announcement-only channel reply, or not"
    )
    replies.add_argument("name")
    replies.add_argument("setting", choices=("on", "off"))
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
    for action in actions.choices.values():
        _where_and_who(action, inner=True)


def _where_and_who(parser: argparse.ArgumentParser, *, inner: bool = False) -> None:
    """``--url`` and ``--token`` on a client command, and again on each of its actions
    (``inner``), so they may come before the action, after it or among its arguments
    (1). An action's copies have no default: argparse copies what an action parsed
    over what its command did, so a default there would undo an option given earlier."""
    defaults = (argparse.SUPPRESS, argparse.SUPPRESS) if inner else (None, _env_token())
    parser.add_argument(
        "--url",
        default=defaults[0],
        help="the server (default http://FEED_HOST:FEED_PORT, so http://127.0.0.1:8000); "
        "an https:// server's certificate is checked against the authorities browsers "
        "trust (certifi's) or, in their place, those of the PEM file $SSL_CERT_FILE or the "
        "directory $SSL_CERT_DIR (a local CA's, such as Caddy's for tls internal)",
    )
    parser.add_argument(
        "--token",
        default=defaults[1],
        help=f"an API token to act as (default ${TOKEN_VARIABLE})",
    )


def _between(low: int, high: int | None) -> Callable[[str], int]:
    """A number from ``low`` to ``high`` (None: no top), or a usage error (2)."""

    def number(given: str) -> int:
        try:
            value = int(given)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{given!r} is not a whole number") from None
        if value < low or (high is not None and value > high):
            top = f"{low} to {high}" if high is not None else f"at least {low}"
            raise argparse.ArgumentTypeError(f"must be {top}, not {value}")
        return value

    return number


def _env_token() -> str | None:
    return os.environ.get(TOKEN_VARIABLE)
