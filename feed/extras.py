"""Which optional dependencies the database and broker URLs in the environment need.

A PostgreSQL URL in ``FEED_DATABASE_URL`` or ``FEED_BROKER_URL`` needs the
PostgreSQL client, a Redis URL the Redis client: pyproject.toml's extras of the same
names. ``make run`` asks ``python -m feed.extras`` which ones to install before it
serves, so setting the URL is all it takes to get a server that uses it.

It runs with the system's Python, before anything is installed, so it needs the
standard library only (settings.py does too). It does not check the settings: a bad
value is ``feed serve``'s to report, naming the variable.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from feed.settings import declarations, url_kind

# Each extra, named for the kind of URL that needs it.
OPTIONAL = frozenset({"postgresql", "redis"})
URL_SETTINGS = ("database_url", "broker_url")


def needed(environ: Mapping[str, str]) -> list[str]:
    """The extras the URL settings in ``environ`` need, sorted."""
    kinds = {
        url_kind(environ.get(declared.variable, declared.default).strip())
        for declared in declarations()
        if declared.name in URL_SETTINGS
    }
    return sorted(kinds & OPTIONAL)


if __name__ == "__main__":
    print(" ".join(needed(os.environ)))
