"""Every setting feed has, read once from ``FEED_*`` environment variables.

Tests build ``Settings(...)`` directly; the server calls ``Settings.from_env()``
once at start-up, so a bad value stops the process before it serves anything,
with a message that names the variable.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from feed import __version__

logger = logging.getLogger("feed.settings")

DEFAULT_DATABASE_URL = "sqlite:///feed.db"
DEFAULT_BROKER_URL = "memory://"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
DEFAULT_WORKERS = 1
DEFAULT_HEARTBEAT = 15.0
DEFAULT_RETRY_MS = 2000
DEFAULT_REPLAY_LIMIT = 1000
DEFAULT_MAX_POST_CHARS = 10_000
DEFAULT_MAX_BODY_BYTES = 64 * 1024
DEFAULT_SUBSCRIBER_BACKLOG = 1024 * 1024
DEFAULT_POLL_INTERVAL = 2.0
DEFAULT_PRESENCE_INTERVAL = 5.0
DEFAULT_SHUTDOWN_TIMEOUT = 5.0
DEFAULT_PAGE_SIZE = 50
DEFAULT_LOG_LEVEL = "info"
DEFAULT_LOG_FORMAT = "text"
# What pages are told the server runs; a page that sees it change reloads itself.
DEFAULT_RELEASE = __version__

LOG_LEVELS = ("critical", "error", "warning", "info", "debug")
DEFAULT_FRAME_ANCESTORS = "'none'"
DEFAULT_CORS_ORIGINS = ""
DEFAULT_POST_RATE = 600
DEFAULT_MAX_STREAMS_PER_CLIENT = 1000
DEFAULT_FORWARDED_ALLOW_IPS = "127.0.0.1"
LOG_FORMATS = ("text", "json")
DEFAULT_ANONYMOUS_READ = True
DEFAULT_SECRET_KEY = ""
DEFAULT_TRUSTED_USER_HEADER = ""
DEFAULT_TRUSTED_ADMINS = ""
DEFAULT_SESSION_DAYS = 30
DEFAULT_ACCESS_RECHECK = 5.0
DEFAULT_HEADER_TIMEOUT = 10.0
DEFAULT_BODY_TIMEOUT = 30.0
DEFAULT_MAX_HEADER_BYTES = 32 * 1024
TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")
# Read by the `feed` client commands, not the server.
CLIENT_VARIABLES = frozenset({"FEED_TOKEN"})
# Settings whose values never reach a log or `feed config`.
SECRETS = frozenset({"secret_key"})


class SettingsError(ValueError):
    """A ``FEED_*`` variable has a value feed cannot use."""


@dataclass(frozen=True, slots=True)
class Settings:
    """Validated configuration. Field ``x`` is read from ``FEED_X``."""

    database_url: str = DEFAULT_DATABASE_URL
    broker_url: str = DEFAULT_BROKER_URL
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    workers: int = DEFAULT_WORKERS
    heartbeat: float = DEFAULT_HEARTBEAT
    retry_ms: int = DEFAULT_RETRY_MS
    replay_limit: int = DEFAULT_REPLAY_LIMIT
    max_post_chars: int = DEFAULT_MAX_POST_CHARS
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    subscriber_backlog: int = DEFAULT_SUBSCRIBER_BACKLOG
    poll_interval: float = DEFAULT_POLL_INTERVAL
    presence_interval: float = DEFAULT_PRESENCE_INTERVAL
    shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT
    page_size: int = DEFAULT_PAGE_SIZE
    log_level: str = DEFAULT_LOG_LEVEL
    log_format: str = DEFAULT_LOG_FORMAT
    release: str = DEFAULT_RELEASE
    frame_ancestors: str = DEFAULT_FRAME_ANCESTORS
    cors_origins: str = DEFAULT_CORS_ORIGINS
    post_rate: int = DEFAULT_POST_RATE
    max_streams_per_client: int = DEFAULT_MAX_STREAMS_PER_CLIENT
    forwarded_allow_ips: str = DEFAULT_FORWARDED_ALLOW_IPS
    anonymous_read: bool = DEFAULT_ANONYMOUS_READ
    secret_key: str = DEFAULT_SECRET_KEY
    trusted_user_header: str = DEFAULT_TRUSTED_USER_HEADER
    trusted_admins: str = DEFAULT_TRUSTED_ADMINS
    session_days: int = DEFAULT_SESSION_DAYS
    access_recheck: float = DEFAULT_ACCESS_RECHECK
    header_timeout: float = DEFAULT_HEADER_TIMEOUT
    body_timeout: float = DEFAULT_BODY_TIMEOUT
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            _check(field.name, getattr(self, field.name))
        _check_together(self)

    @property
    def broker_kind(self) -> str:
        """``memory``, ``postgresql`` or ``redis``."""
        return _scheme(self.broker_url)

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        """Build settings from ``FEED_*`` variables; unset ones keep their defaults."""
        known = {f"FEED_{f.name.upper()}": f for f in dataclasses.fields(cls)}
        for name in sorted(environ):
            if name.startswith("FEED_") and name not in known and name not in CLIENT_VARIABLES:
                logger.warning("ignoring unknown setting %s", name)
        values: dict[str, Any] = {}
        for var, field in known.items():
            raw = environ.get(var)
            if raw is None:
                continue
            values[field.name] = _parse(var, raw.strip(), _KINDS[field.name][0])
        return cls(**values)

    def describe(self) -> dict[str, str]:
        """Settings as ``FEED_*`` names and values, with credentials in URLs hidden."""
        out: dict[str, str] = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.name.endswith("_url"):
                value = redact_url(value)
            elif field.name in SECRETS and value:
                value = "***"
            out[f"FEED_{field.name.upper()}"] = str(value)
        return out


def redact_url(url: str) -> str:
    """Hide the password in a database or broker URL before it reaches a log."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


def _parse(var: str, raw: str, kind: type) -> Any:
    if kind is bool:
        if raw.lower() in TRUE_WORDS:
            return True
        if raw.lower() in FALSE_WORDS:
            return False
        raise SettingsError(f"{var} must be true or false (or 1/0, yes/no, on/off), got {raw!r}")
    try:
        if kind is int:
            return int(raw)
        if kind is float:
            return float(raw)
    except ValueError:
        article = "an" if kind is int else "a"
        noun = "integer" if kind is int else "number"
        raise SettingsError(f"{var} must be {article} {noun}, got {raw!r}") from None
    return raw


def _scheme(url: str) -> str:
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
    if broker == "postgresql" and _scheme(settings.database_url) != "postgresql":
        raise SettingsError(
            "FEED_BROKER_URL is a PostgreSQL URL, but FEED_DATABASE_URL is not: the "
            "PostgreSQL broker sends its hints from inside the writing transaction, so "
            "it needs the PostgreSQL store. Use memory:// or redis:// with SQLite."
        )


def _is_origin(value: str) -> bool:
    if value == "*":
        return True
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc) and parts.path in ("", "/")


def _positive(value: float) -> bool:
    return value > 0


def _url_with_scheme(*schemes: str) -> Callable[[str], bool]:
    def check(value: str) -> bool:
        return urlsplit(value).scheme.split("+")[0] in schemes and "://" in value

    return check


# field -> (type, predicate, what the value must be)
_KINDS: dict[str, tuple[type, Callable[[Any], bool], str]] = {
    "database_url": (
        str,
        _url_with_scheme("sqlite", "postgresql", "postgres"),
        "a sqlite:/// or postgresql:// URL",
    ),
    "broker_url": (
        str,
        _url_with_scheme("memory", "postgresql", "postgres", "redis", "rediss"),
        "memory://, a postgresql:// URL or a redis:// URL",
    ),
    "host": (str, bool, "a host name or address"),
    "port": (int, lambda v: 0 <= v <= 65535, "a port number from 0 to 65535"),
    "workers": (int, lambda v: 1 <= v <= 64, "between 1 and 64"),
    "heartbeat": (float, lambda v: 0.05 <= v <= 3600, "between 0.05 and 3600 seconds"),
    "retry_ms": (int, lambda v: 100 <= v <= 600_000, "between 100 and 600000 milliseconds"),
    "replay_limit": (int, _positive, "a positive number of events"),
    "max_post_chars": (int, _positive, "a positive number of characters"),
    "max_body_bytes": (int, lambda v: v >= 1024, "at least 1024 bytes"),
    "subscriber_backlog": (int, lambda v: v >= 4096, "at least 4096 bytes"),
    "poll_interval": (float, lambda v: 0.05 <= v <= 3600, "between 0.05 and 3600 seconds"),
    "presence_interval": (float, lambda v: 0.1 <= v <= 600, "between 0.1 and 600 seconds"),
    "shutdown_timeout": (float, lambda v: 0 < v <= 600, "between 0 and 600 seconds"),
    "page_size": (int, lambda v: 1 <= v <= 500, "between 1 and 500"),
    "log_level": (str, lambda v: v in LOG_LEVELS, "one of " + ", ".join(LOG_LEVELS)),
    "log_format": (str, lambda v: v in LOG_FORMATS, "text or json"),
    "release": (str, lambda v: 0 < len(v) <= 64 and v.isprintable(), "1 to 64 characters"),
    "frame_ancestors": (
        str,
        lambda v: bool(v.strip()) and v.isprintable() and ";" not in v and "," not in v,
        "CSP sources separated by spaces, such as 'none', 'self' or https://portal.example",
    ),
    "cors_origins": (
        str,
        lambda v: all(_is_origin(o.strip()) for o in v.split(",") if o.strip()),
        "empty, * or origins such as https://app.example, separated by commas",
    ),
    "post_rate": (int, lambda v: 1 <= v <= 100_000, "between 1 and 100000 posts a minute"),
    "max_streams_per_client": (int, lambda v: 1 <= v <= 100_000, "between 1 and 100000"),
    "forwarded_allow_ips": (
        str,
        lambda v: bool(v.strip()) and v.isprintable() and " " not in v.strip(),
        "addresses or networks separated by commas, or *",
    ),
    "anonymous_read": (bool, lambda v: True, "true or false"),
    "secret_key": (
        str,
        lambda v: v == "" or (len(v) >= 32 and v.isprintable()),
        "empty, or at least 32 printable characters",
    ),
    "trusted_user_header": (
        str,
        lambda v: v == "" or re.fullmatch(r"[A-Za-z0-9-]{1,64}", v) is not None,
        "empty, or an HTTP header name such as X-Remote-User",
    ),
    "trusted_admins": (
        str,
        lambda v: v.isprintable(),
        "identity names separated by commas",
    ),
    "session_days": (int, lambda v: 1 <= v <= 365, "between 1 and 365 days"),
    "access_recheck": (float, lambda v: 0.05 <= v <= 600, "between 0.05 and 600 seconds"),
    "header_timeout": (float, lambda v: 0.1 <= v <= 600, "between 0.1 and 600 seconds"),
    "body_timeout": (float, lambda v: 0.1 <= v <= 3600, "between 0.1 and 3600 seconds"),
    "max_header_bytes": (
        int,
        lambda v: 4096 <= v <= 1024 * 1024,
        "between 4096 and 1048576 bytes",
    ),
}


# field -> what it does; docs/configuration.md is generated from this and _KINDS.
_MEANINGS: dict[str, str] = {
    "database_url": "The store and event log: SQLite (WAL mode) for one machine, PostgreSQL "
    "for several processes or machines. `postgres://` works too.",
    "broker_url": "How processes wake each other when events are written: `memory://` "
    "(one process), PostgreSQL LISTEN/NOTIFY (needs the PostgreSQL store) or Redis "
    "pub/sub. The database stays the event log in every case.",
    "host": "Address to listen on; `0.0.0.0` for every IPv4 address.",
    "port": "Port to listen on; 0 picks a free one.",
    "workers": "Server processes sharing the port. More than one needs a PostgreSQL or "
    "Redis broker.",
    "heartbeat": "Seconds between heartbeats on idle streams. Keep proxy read timeouts "
    'above it; pages show "offline" after two missed heartbeats.',
    "retry_ms": "Reconnect delay suggested to clients in the stream's `retry:` field. "
    "Each stream gets this plus up to half as much again, at random, so that clients "
    "dropped together (by a restart) do not all reconnect in the same instant.",
    "replay_limit": "Most events replayed to a resuming client; beyond it the client gets "
    "one `resync` event and reloads its feed.",
    "max_post_chars": "Longest post body, in characters (422 beyond).",
    "max_body_bytes": "Largest request body, in bytes (413 beyond).",
    "subscriber_backlog": "Bytes queued for one slow client before it is disconnected "
    "(it reconnects and resumes).",
    "poll_interval": "Seconds between checks of the event log for events a lost hint did "
    "not announce.",
    "presence_interval": 'Seconds between presence reports: how often the "screens '
    'watching" counts are shared between processes and pushed to pages. A process that '
    "stops reporting no longer counts after three intervals.",
    "shutdown_timeout": "Seconds open streams and requests get to finish on shutdown.",
    "page_size": "Posts per page on the dashboard and in the API.",
    "log_level": "Least severe log messages written.",
    "log_format": "`text` for people; `json` writes one object per line, with a request id "
    "and each line's fields (status, duration, events sent...) as keys.",
    "release": "The version pages are told; open pages reload once when it changes. "
    "Defaults to feed's version.",
    "frame_ancestors": "Who may show feed's pages in a frame (the CSP `frame-ancestors`). "
    "`'none'` by default: kiosks are whole pages, and a framed page can be clickjacked.",
    "cors_origins": "Origins whose scripts may call the API and open streams (CORS), "
    "separated by commas; `*` for any. Empty sends no CORS headers.",
    "post_rate": "Posts a minute one identity may publish, edits, pins and deletes "
    "included: each reaches every screen (429 with Retry-After beyond). Counted per "
    "process.",
    "max_streams_per_client": "Streams one client address may hold open at once, per "
    "process (429 beyond). Generous, for kiosks and offices behind one NAT address. "
    "One address may also hold twice as many connections in all (so that every screen "
    "behind it can reload at once), but never more than half of what the open-files "
    "limit leaves; further ones are cut. Proxies in `FEED_FORWARDED_ALLOW_IPS` are not "
    "capped. feed raises its soft open-files limit to the hard one and logs the cap.",
    "forwarded_allow_ips": "Proxies whose X-Forwarded-For and X-Forwarded-Proto are believed, "
    "so limits and logs see the real client address. Set it to the reverse proxy's "
    "address (or `*` when only the proxy can reach feed); otherwise every client "
    "looks like the proxy and shares one address's limits.",
    "anonymous_read": "Whether people who have not signed in may read public channels "
    "(pages, API and streams). Off: everything needs a token, a session or a kiosk link.",
    "secret_key": "Signs session cookies and kiosk links. Empty: a random key is made once "
    "and kept in the database, so every process and restart shares it. Changing it signs "
    "everyone out and breaks existing kiosk links.",
    "trusted_user_header": "A header set by a fronting single sign-on proxy with the "
    "signed-in user's name, such as `X-Remote-User`. Off when empty. Only set it when "
    "clients can reach feed through that proxy alone, and the proxy strips the header "
    "from what clients send: anyone who can set it can be anyone.",
    "trusted_admins": "Names that the trusted user header makes admins; other names it "
    "signs in are writers.",
    "session_days": "How long a browser stays signed in.",
    "access_recheck": "Seconds between checks of open streams against revoked tokens, "
    "kiosk links, sign-outs, expired sessions and channel memberships; a stream whose "
    "access ended closes within this time.",
    "header_timeout": "Seconds a connection has to send complete request headers, from "
    "when it opens or, kept alive, from the end of the previous response; then it is "
    "closed. Bytes trickling in do not extend it.",
    "body_timeout": "Seconds a request body has to arrive once its headers have (408 beyond).",
    "max_header_bytes": "Largest request line and headers together, in bytes (431 "
    "beyond). Room for cookies and a proxy's headers; nothing larger is buffered.",
}


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
        "| variable | default | accepts | meaning |",
        "|---|---|---|---|",
    ]
    for field in dataclasses.fields(Settings):
        default = f"`{field.default}`" if field.name != "release" else "feed's version"
        if field.default == "":
            default = "empty"
        elif isinstance(field.default, bool):
            default = f"`{str(field.default).lower()}`"
        lines.append(
            f"| `FEED_{field.name.upper()}` | {default} | {_KINDS[field.name][2]} | "
            f"{_MEANINGS[field.name]} |"
        )
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


def _check(name: str, value: Any) -> None:
    kind, ok, expected = _KINDS[name]
    var = f"FEED_{name.upper()}"
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if kind is bool:
        if not isinstance(value, bool):
            raise SettingsError(f"{var} must be {expected}, got {value!r}")
        return
    if not isinstance(value, kind) or isinstance(value, bool) or not ok(value):
        raise SettingsError(f"{var} must be {expected}, got {value!r}")
