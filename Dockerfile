# One image for every feed server: docker-compose.yml runs two of it behind Caddy.
# Settings come from FEED_* variables (docs/configuration.md).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md constraints.txt ./
COPY feed ./feed
COPY templates ./templates
# The extras are the PostgreSQL (psycopg, with its own libpq) and Redis clients, so
# one image serves every store and broker without system packages. Every version,
# pip's and the build backend's included, is the one constraints.txt pins.
RUN pip install --constraint constraints.txt pip \
    && pip install --constraint constraints.txt --build-constraint constraints.txt \
        '.[postgresql,redis]'

# The server needs no privileges. Its home is where a default SQLite database
# (sqlite:///feed.db, relative) would live, for a single container without PostgreSQL:
# a volume, so the database outlives the container. Declared once the directory is the
# server's user's, since Docker gives a new volume the directory's owner.
RUN useradd --system --uid 10001 --user-group --create-home --home-dir /var/lib/feed feed
VOLUME /var/lib/feed
USER feed
WORKDIR /var/lib/feed

ENV FEED_HOST=0.0.0.0 \
    FEED_PORT=8000
EXPOSE 8000

# Ready means the database answers and the broker is connected; a 503 makes urlopen
# raise, so the check fails. The slim image has no curl.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:${FEED_PORT}/readyz', timeout=3)"

# SIGTERM ends open streams within FEED_SHUTDOWN_TIMEOUT; clients resume elsewhere.
CMD ["feed", "serve"]
