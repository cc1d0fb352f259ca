"""``feed token`` and ``feed kiosk``: credentials made and revoked in the database.

They work on the database directly, not through a server: the first admin token
must exist before anyone can sign in, and revoking must work while the servers are
busy or down. Their store announces what they change as a server's does
(storage/announcements.py, on the commit announcement), through the broker of
``FEED_BROKER_URL``: with the PostgreSQL or Redis broker running servers hear of a
revocation at once, and end its streams. With the memory broker nobody hears: a
server notices within a second for new requests, and within ``FEED_ACCESS_RECHECK``
seconds for open streams (access.py, on rechecking streams).

They never make a new SQLite database: a mistyped ``FEED_DATABASE_URL``, or the
default ``sqlite:///feed.db`` in another directory than the server's, would otherwise
get a database of its own, and a token the real server has never heard of. Creating
one is asked for explicitly, with ``feed db upgrade`` (or ``feed serve``, which
creates it too). A file that is there but holds none of feed's tables (an empty one,
another program's) is no feed database either: they would have built feed's schema
in it. ``feed db current`` makes none either (cli.py).
"""

from __future__ import annotations

import argparse
import sqlite3
from contextlib import closing
from pathlib import Path
from urllib.parse import urlencode

from feed.access import Access
from feed.brokers import broker_from_url
from feed.identity import Role, digest, identity_name, new_token
from feed.redaction import redact_url
from feed.settings import Settings
from feed.storage.engine import sqlite_file
from feed.store import Store, StoreUnavailable
from feed.values import TokenView

__all__ = ["StoreUnavailable", "UsageError", "missing_database", "run"]

# The table every feed database has had, since before there were migrations
# (schema.py recognises one made by feed 0.1.0 by it).
FEED_TABLE = "events"


class UsageError(Exception):
    """Arguments the command cannot use (exit code 2)."""


async def run(settings: Settings, args: argparse.Namespace) -> int:
    _database_exists(settings.database_url)
    store = Store.from_url(settings.database_url, notify=settings.broker_kind == "postgresql")
    broker = broker_from_url(settings.broker_url)
    store.on_commit(broker.hint_others)
    try:
        await store.create_schema()
        if args.command == "token":
            return await _token(store, args)
        return await _kiosk(settings, store, args)
    finally:
        await broker.close()  # after the hints it still has to send
        store.close()


def _database_exists(url: str) -> None:
    """Refuse an SQLite URL whose file is not there, or holds no feed database, naming
    it (StoreUnavailable)."""
    wrong = missing_database(url)
    path = sqlite_file(url)
    if wrong is None and path is not None:
        wrong = _not_feeds(path, url)
    if wrong is not None:
        raise StoreUnavailable(wrong)


def missing_database(url: str) -> str | None:
    """Why an SQLite ``url`` names no database, if its file is not there; None if it
    is, or if ``url`` is another database's (its server says whether it is there)."""
    path = sqlite_file(url)
    if path is None or path.exists():
        return None
    return (
        f"there is no database at {path} ({_where(url)}): set FEED_DATABASE_URL to the "
        "server's database, or create this one with `feed db upgrade` (`feed serve` "
        "creates it too)"
    )


def _not_feeds(path: Path, url: str) -> str | None:
    """Why the SQLite file at ``path`` is no feed database, if it is not one. It is
    read as it is, read-only: opening it as the store does would write to it."""
    try:
        with closing(sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)) as database:
            found = database.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (FEED_TABLE,)
            ).fetchone()
    except sqlite3.OperationalError:
        return None  # unreadable here (locked, not allowed): the store says why
    except sqlite3.DatabaseError:
        found, why = None, "it is not an SQLite database"
    else:
        why = "it has none of feed's tables"
    if found is not None:
        return None
    return (
        f"{path} holds no feed database: {why} ({_where(url)}): set FEED_DATABASE_URL "
        "to the server's database, or create feed's tables there with `feed db upgrade`"
    )


def _where(url: str) -> str:
    relative = "" if url.startswith("sqlite:////") else ", in the directory this command runs in"
    return f"FEED_DATABASE_URL={redact_url(url)}{relative}"


async def _token(store: Store, args: argparse.Namespace) -> int:
    if args.action == "create":
        name = _name(args.name)
        token, kept = new_token()
        made = await store.add_token(name, Role(args.role).value, "api", args.channel, kept)
        print(token)
        scope = f", limited to {', '.join('#' + c for c in made.channels)}" if made.channels else ""
        print(
            f"token {made.id} for {made.name!r} ({made.role}{scope}). It is shown only "
            "now: keep it somewhere safe.",
            flush=True,
        )
        return 0
    if args.action == "list":
        _table(await store.tokens("api"))
        return 0
    return await _revoke(store, args.id, "api")


async def _kiosk(settings: Settings, store: Store, args: argparse.Namespace) -> int:
    if args.action == "create":
        access = Access(settings, store)
        await access.start()
        key = access.kiosk_key()
        made = await store.add_token(_name(args.name), "reader", "kiosk", args.channel, digest(key))
        query = urlencode([*(("channel", c) for c in args.channel), ("key", key)])
        base = (args.url or "").rstrip("/")
        print(f"{base}/kiosk?{query}")
        print(f"kiosk link {made.id} ({made.name}); revoke it with `feed kiosk revoke {made.id}`.")
        return 0
    if args.action == "list":
        _table(await store.tokens("kiosk"))
        return 0
    return await _revoke(store, args.id, "kiosk")


async def _revoke(store: Store, token_id: int, kind: str) -> int:
    found = {t.id: t for t in await store.tokens(kind)}
    if token_id not in found:
        noun = "token" if kind == "api" else "kiosk link"
        raise UsageError(f"there is no {noun} with id {token_id}")
    revoked = await store.revoke_token(token_id)
    print(f"revoked {token_id} ({revoked.name}); its streams end within seconds")
    return 0


def _name(value: str) -> str:
    try:
        return identity_name(value)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _table(tokens: list[TokenView]) -> None:
    for t in tokens:
        scope = ",".join(t.channels) if t.channels else "*"
        state = f"revoked {t.revoked_at:%Y-%m-%d %H:%M}" if t.revoked_at else "active"
        print(f"{t.id}\t{t.name}\t{t.role}\t{scope}\t{t.created_at:%Y-%m-%d %H:%M}\t{state}")
