"""Shared fixtures: real feed servers in processes of their own (forked from one that
has imported the server once: tests/zygote.py), real PostgreSQL and Valkey servers,
and an in-process app.

Tests that take ``database_url`` run on SQLite; a module that overrides it with
``each_database_url`` runs every test on SQLite and on PostgreSQL.

Screenshots go to each test's temporary directory, so a run leaves the checkout as
it was; ``make screenshots`` runs the tests that take them with ``--screenshots
docs/screenshots`` to renew the README's.

The suite starts hundreds of Python processes (servers, their workers, the CLI), each
importing feed. Where the environment says not to write bytecode
(``PYTHONDONTWRITEBYTECODE``), every one of them would compile feed's modules again:
the session gives them a bytecode cache of its own instead, outside the checkout, in
place from before the pytest-xdist workers start until the session ends.

Servers beat at feed's default interval (15 s) unless a test sets ``heartbeat``. A test
that holds a stream open on a loaded machine can outlive that, so tests that read
events read past heartbeats (tests/sse.py). ``FEED_TEST_HEARTBEAT=0.2`` in the
environment of pytest makes every server that sets no interval of its own beat that
often instead, to show that those tests do: a check to run by hand, never the default.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from feed.app import create_app
from feed.settings import Settings
from feed.store import Store
from tests import zygote
from tests.auth import ADMIN, bearer, ensure_admin, make_token
from tests.services import Postgres, Valkey
from tests.waiting import until

pytest_plugins = ["tests.tiers", "tests.grouping"]

# The heartbeat interval for servers whose test sets none (the module docstring).
TEST_HEARTBEAT = "FEED_TEST_HEARTBEAT"
# A feed server, after the Python executable.
SERVE = ("-m", "feed", "serve")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--screenshots",
        metavar="DIR",
        type=Path,
        help="write screenshots to DIR instead of each test's temporary directory",
    )


_bytecode = pytest.StashKey[Path]()


def pytest_configure(config: pytest.Config) -> None:
    # Once per run, in the process that starts every other (a worker inherits it).
    if hasattr(config, "workerinput") or "PYTHONPYCACHEPREFIX" in os.environ:
        return
    if os.environ.pop("PYTHONDONTWRITEBYTECODE", None) is not None:
        cache = Path(tempfile.mkdtemp(prefix="feed-test-bytecode-"))
        os.environ["PYTHONPYCACHEPREFIX"] = str(cache)
        config.stash[_bytecode] = cache


def pytest_unconfigure(config: pytest.Config) -> None:
    if _bytecode in config.stash:
        shutil.rmtree(config.stash[_bytecode], ignore_errors=True)


# Before any other hook reads the marks (tests/grouping.py sends the groups on).
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        # `make screenshots` selects these with -m screenshots.
        if "screenshots" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.screenshots)
        # A module that shares something across its tests (Chromium, mostly) keeps them on
        # one worker under `--dist loadgroup`, so it is started once, not once per worker.
        if _uses_module_scope(item):
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::")[0]))


def _uses_module_scope(item: pytest.Item) -> bool:
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return False
    return any(
        definition.scope in ("module", "class", "package")
        for definitions in info.name2fixturedefs.values()
        for definition in definitions
    )


@pytest.fixture
def screenshots(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """Where a test writes its screenshots."""
    chosen: Path | None = request.config.getoption("screenshots")
    where = tmp_path / "screenshots" if chosen is None else chosen
    where.mkdir(parents=True, exist_ok=True)
    return where


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    """A ``feed serve`` process on a loopback port."""

    port: int
    database: str
    env: dict[str, str]
    # Forked from a process that has imported the server already (tests/zygote.py).
    proc: subprocess.Popen[bytes] | zygote.Forked | None = None
    log: Path | None = None
    # Run in the server's process before it starts, e.g. to lower a resource limit.
    preexec: Callable[[], None] | None = None
    # What to run instead of `feed serve` (after the Python executable).
    command: Sequence[str] = SERVE
    client: httpx.Client = field(init=False)
    tokens: dict[tuple[str, str], str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20) -> Server:
        assert self.log is not None
        if zygote.forking(self.env) and self.preexec is None and self.command == SERVE:
            self.proc = zygote.start(["serve"], self.env, str(self.log))
        else:
            with self.log.open("ab") as out:
                self.proc = subprocess.Popen(
                    [sys.executable, *self.command],
                    env=self.env,
                    stdout=out,
                    stderr=out,
                    preexec_fn=self.preexec,
                )
        self.client = httpx.Client(base_url=self.url, timeout=10, headers=ADMIN)
        until(
            self._ready,
            timeout=timeout,
            failure=lambda _: TimeoutError(f"feed did not start:\n{self.logs()}"),
        )
        return self

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"feed exited with {self.proc.returncode}:\n{self.logs()}")
        try:
            return self.client.get("/api/channels").status_code == 200
        except httpx.TransportError:
            return False

    def logs(self) -> str:
        return self.log.read_text(errors="replace") if self.log else ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> float:
        """Signal the server and wait for it to exit; returns how long that took."""
        assert self.proc is not None
        started = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise
        self.client.close()
        return time.monotonic() - started

    def token(self, name: str, role: str = "writer") -> str:
        """A token for ``name`` in this server's database, made once per server."""
        if (name, role) not in self.tokens:
            self.tokens[name, role] = make_token(self.database, name, role)[0]
        return self.tokens[name, role]

    def post(
        self, body: str, channel: str = "general", author: str | None = None
    ) -> dict[str, Any]:
        """Post as ``author`` (a writer), or as the tests' admin (``tests.auth``)."""
        headers = None if author is None else bearer(self.token(author))
        response = self.client.post(
            f"/api/channels/{channel}/posts", json={"body": body}, headers=headers
        )
        assert response.status_code == 201, response.text
        result: dict[str, Any] = response.json()
        return result


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """One PostgreSQL cluster for the session; tests take a fresh database in it."""
    server = Postgres(free_port()).start()
    yield server
    server.remove()


@pytest.fixture(scope="session")
def valkey() -> Iterator[Valkey]:
    server = Valkey(free_port()).start()
    yield server
    server.stop()


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    return sqlite_url(tmp_path / "feed.db")


@pytest.fixture(params=["sqlite", "postgresql"])
def each_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh database on each store feed supports."""
    if request.param == "sqlite":
        return sqlite_url(tmp_path / "feed.db")
    postgres: Postgres = request.getfixturevalue("postgres")
    return postgres.new_database()


@pytest.fixture
def store(each_database_url: str) -> Iterator[Store]:
    """A store with its schema, on each database feed supports; a file that needs
    another kind of store defines its own."""
    store = Store.from_url(each_database_url)
    asyncio.run(store.create_schema())
    yield store
    store.close()


@pytest.fixture
def make_server(tmp_path: Path, database_url: str) -> Iterator[Callable[..., Server]]:
    """Start feed servers with extra ``FEED_*`` settings; all are stopped at the end.

    ``database`` is a URL or an SQLite file; it defaults to the ``database_url`` fixture.
    ``command`` runs something else than ``feed serve``, such as another ASGI server.
    """
    started: list[Server] = []

    def make(
        database: str | Path | None = None,
        port: int | None = None,
        preexec: Callable[[], None] | None = None,
        command: Sequence[str] = Server.command,
        **settings: Any,
    ) -> Server:
        url = sqlite_url(database) if isinstance(database, Path) else database or database_url
        port = port or free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("FEED_")}
        env.update(FEED_DATABASE_URL=url, FEED_PORT=str(port), FEED_LOG_LEVEL="warning")
        # Every test client is 127.0.0.1: per-address limits only where a test sets them.
        env.update(FEED_POST_RATE="100000", FEED_MAX_STREAMS_PER_CLIENT="100000")
        if TEST_HEARTBEAT in os.environ:
            settings.setdefault("heartbeat", os.environ[TEST_HEARTBEAT])
        env.update({f"FEED_{k.upper()}": str(v) for k, v in settings.items()})
        # What a server makes in the temporary directory (its workers' metrics) stays
        # with the test, also when the server is killed without a chance to remove it.
        env.update(TMPDIR=str(tmp_path))
        ensure_admin(url)
        log = tmp_path / f"server-{port}.log"
        server = Server(port, url, env, log=log, preexec=preexec, command=command)
        started.append(server)
        return server.start()

    yield make
    for server in started:
        if server.proc is not None and server.proc.poll() is None:
            server.stop(signal.SIGKILL)


@pytest.fixture
def server(make_server: Callable[..., Server]) -> Server:
    return make_server()


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(database_url=database_url, post_rate=100_000)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    """The app in-process, for endpoints that answer and end (not for streams)."""
    ensure_admin(settings.database_url)
    with TestClient(create_app(settings), headers=ADMIN) as test_client:
        yield test_client


@pytest.fixture
def stale_metrics(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A prometheus_client multiprocess directory that another program filled, named in
    the environment the servers started here inherit. feed must neither read nor
    write it."""
    path = tmp_path / "stale-metrics"
    path.mkdir()
    fill = (
        "from prometheus_client import Counter, Gauge\n"
        "Counter('feed_events_published', 'stale', registry=None).inc(1000)\n"
        "Gauge('feed_streams', 'stale', registry=None, multiprocess_mode='livesum').set(1000)\n"
    )
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(path)}
    subprocess.run([sys.executable, "-c", fill], env=env, check=True, timeout=30)
    assert any(path.iterdir()), "prometheus_client wrote nothing"
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(path))
    return path
