"""Every setting feed has, read once from ``FEED_*`` environment variables.

Tests build ``Settings(...)`` directly; the server calls ``Settings.from_env()``
once at start-up, so a bad value stops the process before it serves anything,
with a message that names the variable.

Each setting is one declaration: a field of ``Settings`` whose annotation is its type
and whose ``setting(...)`` holds its default, the check a value must pass, how that
check reads to a person, and what the setting does. Parsing, checking, ``feed config``
and docs/configuration.md (``feed config --reference``) all read that declaration.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from feed import __version__
from feed.declarations import (
    Accepts,
    Declared,
    SettingsError,
    at_least,
    between,
    declared_in,
    positive,
    setting,
    table,
)
from feed.reaction_set import DEFAULT_REACTIONS, REACTION_SET_WORDS, is_reaction_set
from feed.redaction import redact_url

logger = logging.getLogger("feed.settings")

LOG_LEVELS = ("critical", "error", "warning", "info", "debug")
LOG_FORMATS = ("text", "json")
# Read by the `feed` client commands, not the server.
CLIENT_VARIABLES = frozenset({"FEED_TOKEN"})


# The shortest heartbeat interval. The timer wakes once for each turn an interval is
# cut into (heartbeats.py, on one timer), with streams to beat or not: shorter, it wakes
# the loop hundreds of times a second more, for beats no page or proxy needs.
MIN_HEARTBEAT = 0.2


def _url_with_scheme(*schemes: str) -> Callable[[str], bool]:
    def check(value: str) -> bool:
        parts = urlsplit(value)
        # The port is read as the driver will read it: a URL whose port is no number
        # (or whose brackets do not close, which urlsplit refuses) fails here, with a
        # message naming the variable, not later in a traceback.
        _ = parts.port  # raises ValueError
        return parts.scheme.split("+")[0] in schemes and "://" in value

    return check


def _is_origin(value: str) -> bool:
    if value == "*":
        return True
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc) and parts.path in ("", "/")


@dataclass(frozen=True, slots=True)
class Settings:
    """Validated configuration. Field ``x`` is read from ``FEED_X``."""

    database_url: str = setting(
        "sqlite:///feed.db",
        Accepts(
            _url_with_scheme("sqlite", "postgresql", "postgres"),
            "a sqlite:/// or postgresql:// URL",
        ),
        "The store and event log: SQLite (WAL mode) for one machine, PostgreSQL for several "
        "processes or machines. `postgres://` works too.",
        redact=redact_url,
    )
    broker_url: str = setting(
        "memory://",
        Accepts(
            _url_with_scheme("memory", "postgresql", "postgres", "redis", "rediss"),
            "memory://, a postgresql:// URL or a redis:// URL",
        ),
        "How processes wake each other when events are written: `memory://` (one process), "
        "PostgreSQL LISTEN/NOTIFY (needs the PostgreSQL store) or Redis pub/sub. The "
        "database stays the event log in every case.",
        redact=redact_url,
    )
    host: str = setting(
        "127.0.0.1",
        Accepts(bool, "a host name or address"),
        "Address to listen on; `0.0.0.0` for every IPv4 address.",
    )
    port: int = setting(
        8000,
        Accepts(lambda v: 0 <= v <= 65535, "a port number from 0 to 65535"),
        "Port to listen on; 0 picks a free one.",
    )
    workers: int = setting(
        1,
        between(1, 64),
        "Server processes sharing the port. More than one needs a PostgreSQL or Redis broker.",
    )
    heartbeat: float = setting(
        15.0,
        between(MIN_HEARTBEAT, 3600, "seconds"),
        "Seconds between heartbeats on idle streams. Keep proxy read timeouts above it; "
        'pages show "offline" after two missed heartbeats.',
    )
    retry_ms: int = setting(
        2000,
        between(100, 600_000, "milliseconds"),
        "Reconnect delay suggested to clients in the stream's `retry:` field. Each stream "
        "gets this plus up to half as much again, at random, so that clients dropped "
        "together (by a restart) do not all reconnect in the same instant.",
    )
    max_stream_seconds: float = setting(
        0.0,
        Accepts(lambda v: v == 0 or 1 <= v <= 604_800, "0 (off) or between 1 and 604800 seconds"),
        "Seconds after which the server ends a stream, plus up to a quarter more at random, "
        "so that streams opened together (after a restart) do not end together again. The "
        "client comes back at once and resumes from its last event, as after a restart, "
        "and lands on whichever worker the kernel picks: a restarted or added worker gets "
        "its share of streams back within this time. 0, the default, never ends a stream: "
        "every ending is a reconnect, a replay query and a moment a kiosk is not live, "
        "which buys nothing on one worker. Set it (an hour, say) with several workers or "
        "machines behind a proxy.",
    )
    replay_limit: int = setting(
        1000,
        positive("events"),
        "Most events replayed to a resuming client; beyond it the client gets one `resync` "
        "event and reloads its feed.",
    )
    max_post_chars: int = setting(
        10_000,
        positive("characters"),
        "Longest post body, in characters (422 beyond).",
    )
    max_body_bytes: int = setting(
        64 * 1024,
        at_least(1024, "bytes"),
        "Largest request body, in bytes (413 beyond); at least four bytes a character of "
        "`FEED_MAX_POST_CHARS` and 1024 more. Forms that post are allowed what the "
        "longest post takes %-escaped.",
    )
    subscriber_backlog: int = setting(
        1024 * 1024,
        at_least(4096, "bytes"),
        "Bytes queued for one slow client before it is disconnected (it reconnects and resumes).",
    )
    poll_interval: float = setting(
        2.0,
        between(0.05, 3600, "seconds"),
        "Seconds between checks of the event log for events a lost hint did not announce.",
    )
    presence_interval: float = setting(
        5.0,
        between(0.1, 600, "seconds"),
        'Seconds between presence reports: how often the "screens watching" counts are '
        "shared between processes and pushed to pages. A process that stops reporting no "
        "longer counts after three intervals.",
    )
    shutdown_timeout: float = setting(
        5.0,
        Accepts(lambda v: 0 < v <= 600, "between 0 and 600 seconds"),
        "Seconds open streams and requests get to finish on shutdown.",
    )
    page_size: int = setting(
        50,
        between(1, 500),
        "Posts per page on the dashboard and in the API, and the pinned posts a dashboard "
        "shows on top (older ones stay in their place among the others).",
    )
    log_level: str = setting(
        "info",
        Accepts(lambda v: v in LOG_LEVELS, "one of " + ", ".join(LOG_LEVELS)),
        "Least severe log messages written.",
    )
    log_format: str = setting(
        "text",
        Accepts(lambda v: v in LOG_FORMATS, "text or json"),
        "`text` for people; `json` writes one object per line, with a request id and each "
        "line's fields (status, duration, events sent...) as keys.",
    )
    # What pages are told the server runs; a page that sees it change reloads itself.
    release: str = setting(
        __version__,
        Accepts(lambda v: 0 < len(v) <= 64 and v.isprintable(), "1 to 64 characters"),
        "The version pages are told; open pages reload once when it changes. Defaults to "
        "feed's version.",
        shown="feed's version",
    )
    frame_ancestors: str = setting(
        "'none'",
        Accepts(
            lambda v: bool(v.strip()) and v.isprintable() and ";" not in v and "," not in v,
            "CSP sources separated by spaces, such as 'none', 'self' or https://portal.example",
        ),
        "Who may show feed's pages in a frame (the CSP `frame-ancestors`). `'none'` by "
        "default: kiosks are whole pages, and a framed page can be clickjacked.",
    )
    cors_origins: str = setting(
        "",
        Accepts(
            lambda v: all(_is_origin(o.strip()) for o in v.split(",") if o.strip()),
            "empty, * or origins such as https://app.example, separated by commas",
        ),
        "Origins whose scripts may call the API and open streams (CORS), separated by "
        "commas; `*` for any. Empty sends no CORS headers.",
    )
    post_rate: int = setting(
        600,
        between(1, 100_000, "posts a minute"),
        "Posts a minute one identity may publish, edits, pins and deletes included: each "
        "reaches every screen (429 with Retry-After beyond). Counted per process.",
    )
    max_searches_per_client: int = setting(
        4,
        between(1, 1000, "searches"),
        "Searches one identity (a kiosk link is one; signed out: one client address) may "
        "have running at once, per process, by every road: the API and the CLI, the "
        "search page, a kiosk watching a search. A search may read many posts, and the "
        "store's connections serve everyone's posts and pages too (429 with Retry-After "
        "beyond; the pages say so and search again by themselves).",
    )
    max_live_searches_per_client: int = setting(
        10,
        between(1, 1000, "searches"),
        "Different live searches (`/events?q=`) one identity (a kiosk link is one; signed "
        "out: one client address) may follow at once, per process; its streams of one "
        "search count once. Every event is matched against each different search, on the "
        "event loop that serves everyone (429 with Retry-After beyond).",
    )
    max_live_searches: int = setting(
        200,
        between(1, 100_000, "searches"),
        "Different live searches one process matches every event against, everyone's "
        "together; streams of one search count once (503 with Retry-After beyond, for a "
        "search nobody else follows yet). A search of many phrases costs up to about "
        "0.15 ms of the event loop per 10,000-character post, so 200 cost up to 30 ms.",
    )
    reads_per_client: int = setting(
        2,
        between(1, 1000, "reads"),
        "Reads (pages, partials, API GETs) one client address may have running at once, "
        "per process. Further ones wait their turn, in order, while other clients' reads "
        "go ahead: one client's burst never holds up the others, and screens behind one "
        "address that reload at once are served in turn, never refused.",
    )
    max_streams_per_client: int = setting(
        1000,
        between(1, 100_000),
        "Streams one client address may hold open at once, per process (429 beyond). "
        "Generous, for kiosks and offices behind one NAT address. One address may also "
        "hold twice as many connections in all (so that every screen behind it can reload "
        "at once), but never more than half of what the open-files limit leaves; further "
        "ones are cut. Proxies in `FEED_FORWARDED_ALLOW_IPS` are not capped. feed raises "
        "its soft open-files limit to the hard one and logs the cap.",
    )
    forwarded_allow_ips: str = setting(
        "127.0.0.1",
        Accepts(
            lambda v: bool(v.strip()) and v.isprintable() and " " not in v.strip(),
            "addresses or networks separated by commas, or *",
        ),
        "Proxies whose X-Forwarded-For and X-Forwarded-Proto are believed, so limits and "
        "logs see the real client address. Set it to the reverse proxy's address (or `*` "
        "when only the proxy can reach feed); otherwise every client looks like the proxy "
        "and shares one address's limits.",
    )
    anonymous_read: bool = setting(
        True,
        Accepts(lambda v: True, "true or false"),
        "Whether people who have not signed in may read public channels (pages, API and "
        "streams). Off: everything needs a token, a session or a kiosk link.",
    )
    secret_key: str = setting(
        "",
        Accepts(
            lambda v: v == "" or (len(v) >= 32 and v.isprintable()),
            "empty, or at least 32 printable characters",
        ),
        "Signs session cookies and kiosk links. Empty: a random key is made once and kept "
        "in the database, so every process and restart shares it. Changing it signs "
        "everyone out and breaks existing kiosk links.",
        secret=True,
    )
    trusted_user_header: str = setting(
        "",
        Accepts(
            lambda v: v == "" or re.fullmatch(r"[A-Za-z0-9-]{1,64}", v) is not None,
            "empty, or an HTTP header name such as X-Remote-User",
        ),
        "A header set by a fronting single sign-on proxy with the signed-in user's name, "
        "such as `X-Remote-User`. Off when empty. Only set it when clients can reach feed "
        "through that proxy alone, and the proxy strips the header from what clients send: "
        "anyone who can set it can be anyone.",
    )
    trusted_admins: str = setting(
        "",
        Accepts(lambda v: v.isprintable(), "identity names separated by commas"),
        "Names that the trusted user header makes admins; other names it signs in are writers.",
    )
    session_days: int = setting(
        30,
        between(1, 365, "days"),
        "How long a browser stays signed in.",
    )
    access_recheck: float = setting(
        5.0,
        between(0.05, 600, "seconds"),
        "Seconds between checks of open streams against revoked tokens, kiosk links, "
        "sign-outs, expired sessions and channel memberships; a stream whose access ended "
        "closes within this time.",
    )
    header_timeout: float = setting(
        10.0,
        between(0.1, 600, "seconds"),
        "Seconds a connection has to send complete request headers, from when it opens or, "
        "kept alive, from the end of the previous response; then it is closed. Bytes "
        "trickling in do not extend it.",
    )
    body_timeout: float = setting(
        30.0,
        between(0.1, 3600, "seconds"),
        "Seconds a request body has to arrive once its headers have (408 beyond).",
    )
    max_header_bytes: int = setting(
        32 * 1024,
        between(4096, 1024 * 1024, "bytes"),
        "Largest request line and headers together, in bytes (431 beyond). Room for "
        "cookies and a proxy's headers; nothing larger is buffered.",
    )

    reactions: str = setting(
        DEFAULT_REACTIONS,
        Accepts(is_reaction_set, REACTION_SET_WORDS),
        "The reactions people may give posts, separated by spaces, in the order pages show "
        "them. Reactions given with one that is later taken out stay counted.",
    )
    reaction_window: float = setting(
        0.5,
        between(0.05, 60, "seconds"),
        "Seconds a post's reaction updates are gathered for: a post sends screens at most "
        "one update of its counts per window, however many people react, and each carries "
        "the exact counts.",
    )

    def __post_init__(self) -> None:
        for declared in declarations():
            declared.validate(getattr(self, declared.name))
        _check_together(self)

    @property
    def reaction_set(self) -> tuple[str, ...]:
        """``reactions`` as a tuple, in order."""
        return tuple(self.reactions.split())

    @property
    def broker_kind(self) -> str:
        """``memory``, ``postgresql`` or ``redis``."""
        return url_kind(self.broker_url)

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        """Build settings from ``FEED_*`` variables; unset ones keep their defaults."""
        known = {d.variable: d for d in declarations()}
        for name in sorted(environ):
            if name.startswith("FEED_") and name not in known and name not in CLIENT_VARIABLES:
                logger.warning("ignoring unknown setting %s", name)
        values: dict[str, Any] = {}
        for var, declared in known.items():
            raw = environ.get(var)
            if raw is not None:
                values[declared.name] = declared.parse(raw.strip())
        return cls(**values)

    def describe(self) -> dict[str, str]:
        """Settings as ``FEED_*`` names and values, secrets and the passwords of URLs
        hidden (each declaration says which)."""
        return {d.variable: str(d.shown_value(getattr(self, d.name))) for d in declarations()}


_DECLARED = declared_in(Settings)


def declarations() -> tuple[Declared, ...]:
    """Every setting, in the order ``Settings`` declares them."""
    return _DECLARED


def url_kind(url: str) -> str:
    """What a database or broker URL names: ``sqlite``, ``postgresql``, ``redis`` or
    ``memory``, whichever spelling or driver it gives."""
    scheme = urlsplit(url).scheme.split("+")[0]
    return {"postgres": "postgresql", "rediss": "redis"}.get(scheme, scheme)


def _check_together(settings: Settings) -> None:
    broker = settings.broker_kind
    if settings.workers > 1 and broker == "memory":
        raise SettingsError(
            f"FEED_WORKERS={settings.workers} needs a broker shared by the workers: the "
            "memory broker only reaches one process, so each worker's subscribers would "
            "miss the posts written through the others. Set FEED_BROKER_URL to a "
            "postgresql:// or redis:// URL, or run one worker."
        )
    # The longest post, each character four bytes of UTF-8, with room for the JSON.
    needed = 4 * settings.max_post_chars + 1024
    if settings.max_body_bytes < needed:
        raise SettingsError(
            f"FEED_MAX_BODY_BYTES={settings.max_body_bytes} is too small for a post of "
            f"FEED_MAX_POST_CHARS={settings.max_post_chars} characters, which can take "
            f"{needed} bytes: raise it, or lower FEED_MAX_POST_CHARS."
        )
    if broker == "postgresql" and url_kind(settings.database_url) != "postgresql":
        raise SettingsError(
            "FEED_BROKER_URL is a PostgreSQL URL, but FEED_DATABASE_URL is not: the "
            "PostgreSQL broker sends its hints from inside the writing transaction, so "
            "it needs the PostgreSQL store. Use memory:// or redis:// with SQLite."
        )


def reference() -> str:
    """``docs/configuration.md``: every variable, its default, what it accepts and does."""
    lines = [
        "# Configuration",
        "",
        "<!-- Generated by `feed config --reference` from feed/settings.py; "
        "a test fails when it is stale. -->",
        "",
        "feed reads these environment variables once, at start-up. A bad value stops it "
        "with a message naming the variable (exit code 2); an unknown `FEED_*` variable is "
        "logged as a warning. `feed config` prints the values in effect, passwords hidden.",
        "",
    ]
    lines += table(declarations())
    lines += [
        "",
        "Settings that must agree:",
        "",
        "- `FEED_WORKERS` above 1 needs a `postgresql://` or `redis://` `FEED_BROKER_URL`: "
        "the memory broker reaches one process only.",
        "- A `postgresql://` `FEED_BROKER_URL` needs a `postgresql://` `FEED_DATABASE_URL`: "
        "its hints are sent inside the writing transaction.",
        "",
    ]
    return "\n".join(lines)
