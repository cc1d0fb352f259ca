"""The deployment: docker-compose.yml, the Dockerfile and deploy/Caddyfile.

Docker does not run everywhere the tests do, so the files are checked in two ways:
parsed (the compose file with PyYAML, the Caddyfile by Caddy itself), and run as the
same topology without Docker: Debian's Caddy on loopback, running deploy/Caddyfile
itself with its ``{$NAME}`` variables set to local ports, in front of two feed server
processes on one database. Streams are read through the proxy exactly as a browser
would get them, so buffering, compression or a lost header shows up here.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import httpx
import pytest
import yaml

from feed.settings import Settings
from tests.auth import ADMIN
from tests.conftest import Server, free_port
from tests.services import Postgres
from tests.waiting import until

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
CADDYFILE = ROOT / "deploy" / "Caddyfile"

FEED_SERVICES = ("feed1", "feed2")
FEED_PORT = 8000  # the Dockerfile's FEED_PORT, which the Caddyfile's upstreams name
POSTGRES_URL = "postgresql://feed:feed@postgres:5432/feed"

# Short, so that heartbeats through the proxy are seen within a fraction of a second.
HEARTBEAT = 0.25
POSTS = 12  # through the proxy; round robin puts half on each server
LATENCY_BOUND = 0.1  # seconds from just before a POST to its event leaving the proxy


# -- the files, parsed ----------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def caddy_binary() -> str:
    found = shutil.which("caddy")
    # Not a skip: without the proxy the deployment is untested.
    assert found, "Caddy is missing; `make test` installs Debian's caddy package"
    return found


@pytest.fixture(scope="module")
def caddy_config() -> dict[str, Any]:
    """deploy/Caddyfile as Caddy parses it, with the defaults docker-compose.yml runs."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    result = subprocess.run(
        [caddy_binary(), "adapt", "--config", str(CADDYFILE), "--adapter", "caddyfile"],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    config: dict[str, Any] = json.loads(result.stdout)
    return config


def handlers(node: Any) -> Iterator[dict[str, Any]]:
    """Every HTTP handler in an adapted Caddy config, however deeply nested."""
    if isinstance(node, dict):
        if "handler" in node:
            yield node
        for value in node.values():
            yield from handlers(value)
    elif isinstance(node, list):
        for item in node:
            yield from handlers(item)


def the_handler(config: dict[str, Any], name: str) -> dict[str, Any]:
    [found] = [h for h in handlers(config["apps"]["http"]) if h["handler"] == name]
    return found


def dockerfile(instruction: str) -> list[str]:
    """The arguments of each use of a Dockerfile instruction, continuations joined."""
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    found = []
    for line in text.splitlines():
        word, _, rest = line.strip().partition(" ")
        if word.upper() == instruction:
            found.append(" ".join(rest.split()))
    return found


def test_compose_runs_postgres_two_feed_servers_and_a_proxy(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"postgres", *FEED_SERVICES, "proxy"}
    postgres = services["postgres"]
    assert postgres["image"].startswith("postgres:")
    assert [v.split(":")[0] for v in postgres["volumes"]] == ["postgres-data"]
    assert "postgres-data" in compose["volumes"]
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])


def test_both_feed_servers_build_from_the_one_dockerfile(compose: dict[str, Any]) -> None:
    builds = [compose["services"][name]["build"] for name in FEED_SERVICES]
    assert builds[0] == builds[1] == {"context": ".", "dockerfile": "Dockerfile"}
    assert (COMPOSE.parent / builds[0]["context"] / builds[0]["dockerfile"]) == DOCKERFILE
    assert DOCKERFILE.is_file()


def test_feed_servers_use_postgresql_as_store_and_broker_once_it_is_healthy(
    compose: dict[str, Any],
) -> None:
    postgres_env = compose["services"]["postgres"]["environment"]
    for name in FEED_SERVICES:
        service = compose["services"][name]
        env = service["environment"]
        assert env["FEED_DATABASE_URL"] == POSTGRES_URL
        assert env["FEED_BROKER_URL"] == POSTGRES_URL
        assert service["depends_on"]["postgres"] == {"condition": "service_healthy"}
        # Settings feed would accept at start-up, on the LISTEN/NOTIFY broker.
        settings = Settings.from_env(env)
        assert settings.broker_kind == "postgresql"
        # Behind the proxy, per-address limits must see clients, not the proxy.
        assert settings.forwarded_allow_ips == "*"
    url = urlsplit(POSTGRES_URL)
    assert (url.username, url.password, url.path) == (
        postgres_env["POSTGRES_USER"],
        postgres_env["POSTGRES_PASSWORD"],
        "/" + postgres_env["POSTGRES_DB"],
    )


def test_the_proxy_runs_the_caddyfile_in_deploy(compose: dict[str, Any]) -> None:
    proxy = compose["services"]["proxy"]
    assert proxy["image"].startswith("caddy:")
    mounts = {v.split(":")[1]: v.split(":")[0] for v in proxy["volumes"]}
    assert (COMPOSE.parent / mounts["/etc/caddy/Caddyfile"]).resolve() == CADDYFILE
    assert CADDYFILE.is_file()
    assert {"443:443", "443:443/udp"} <= set(proxy["ports"])
    assert set(proxy["depends_on"]) == set(FEED_SERVICES)


def test_servers_and_proxy_may_hold_thousands_of_streams(compose: dict[str, Any]) -> None:
    # Every open stream is an open file (two in the proxy); a soft limit of 1024, the
    # default in some Docker set-ups, would refuse streams long before memory runs out.
    for name in (*FEED_SERVICES, "proxy"):
        assert compose["services"][name]["ulimits"]["nofile"]["soft"] >= 20_000


@pytest.mark.slow
def test_the_proxy_passes_event_streams_straight_through(caddy_config: dict[str, Any]) -> None:
    proxy = the_handler(caddy_config, "reverse_proxy")
    assert proxy["flush_interval"] == -1
    assert [u["dial"] for u in proxy["upstreams"]] == [f"{s}:{FEED_PORT}" for s in FEED_SERVICES]
    # Any server resumes any stream: plain round robin, no sticky sessions.
    assert proxy["load_balancing"]["selection_policy"] == {"policy": "round_robin"}
    assert proxy["health_checks"]["active"]["uri"] == "/readyz"
    transport = proxy["transport"]
    assert transport["versions"] == ["1.1"]
    # Caddy's read_timeout is the longest silence from a server, in nanoseconds.
    assert transport["read_timeout"] / 1e9 >= 4 * Settings().heartbeat
    for server in caddy_config["apps"]["http"]["servers"].values():
        assert "write_timeout" not in server.get("timeouts", {}), "it would cut long streams"


@pytest.mark.slow
def test_the_proxy_never_compresses_event_streams(caddy_config: dict[str, Any]) -> None:
    encode = the_handler(caddy_config, "encode")
    compressed = encode["match"]["headers"]["Content-Type"]
    assert any(fnmatch("text/html; charset=utf-8", pattern) for pattern in compressed)
    assert not any(fnmatch("text/event-stream; charset=utf-8", p) for p in compressed)


@pytest.mark.slow
def test_the_proxy_terminates_tls_for_http2(caddy_config: dict[str, Any]) -> None:
    [policy] = caddy_config["apps"]["tls"]["automation"]["policies"]
    assert policy["issuers"] == [{"module": "internal"}]
    assert caddy_config["apps"]["http"]["servers"]["srv0"]["listen"] == ["0.0.0.0:443"]


def test_the_image_runs_feed_serve_unprivileged_on_every_address() -> None:
    assert dockerfile("FROM") == ["python:3.11-slim"]
    assert dockerfile("USER")[-1] not in ("root", "0")
    assert json.loads(dockerfile("CMD")[-1]) == ["feed", "serve"]
    env = " ".join(dockerfile("ENV")).split()
    assert "FEED_HOST=0.0.0.0" in env
    assert f"FEED_PORT={FEED_PORT}" in env
    assert dockerfile("EXPOSE") == [str(FEED_PORT)]
    assert any(run.endswith(" '.[postgresql,redis]'") for run in dockerfile("RUN"))
    [healthcheck] = dockerfile("HEALTHCHECK")
    assert "/readyz" in healthcheck


def test_the_image_keeps_its_default_sqlite_database_in_a_volume() -> None:
    # sqlite:///feed.db is relative: the database is made in the working directory.
    assert Settings().database_url == "sqlite:///feed.db"
    workdir = dockerfile("WORKDIR")[-1]
    volumes = [v for given in dockerfile("VOLUME") for v in volume_paths(given)]
    assert volumes == [workdir], "the database would go when the container does"
    # Docker fills a new volume from the image's directory, owner included, and drops
    # what later steps write there: the directory is the server's user's before.
    [made] = [run for run in dockerfile("RUN") if run.startswith("useradd ")]
    assert f"--home-dir {workdir}" in made and "--create-home" in made
    lines = DOCKERFILE.read_text().splitlines()

    def first(start: str) -> int:
        return next(i for i, line in enumerate(lines) if line.startswith(start))

    assert first("RUN useradd ") < first("VOLUME ")


def volume_paths(given: str) -> list[str]:
    """The paths of one VOLUME instruction, in either of its forms."""
    return list(json.loads(given)) if given.startswith("[") else given.split()


def test_the_build_context_holds_what_the_image_copies() -> None:
    rules = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert rules[0] == "*", "the context is an allow-list"
    allowed = {rule[1:].rstrip("/") for rule in rules if rule.startswith("!")}
    copied = [source for copy in dockerfile("COPY") for source in copy.split()[:-1]]
    assert set(copied) == allowed
    assert all((ROOT / source).exists() for source in copied)


def test_the_image_healthcheck_passes_only_on_a_ready_server(server: Server) -> None:
    [healthcheck] = dockerfile("HEALTHCHECK")
    command = healthcheck.split(" CMD ", 1)[1]
    # The image's `python` is the one feed is installed in; here it is this one's.
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"

    def check(port: int) -> int:
        env = {**os.environ, "PATH": path, "FEED_PORT": str(port)}
        return subprocess.run(
            ["sh", "-c", command], env=env, capture_output=True, timeout=20
        ).returncode

    assert check(server.port) == 0
    assert check(free_port()) != 0


# -- the same topology, without Docker ------------------------------------------------


class TopologySettings(NamedTuple):
    """The database both feed servers share and the ``FEED_*`` settings they run with."""

    database: str | Path
    settings: dict[str, Any]


@pytest.fixture
def topology_settings(postgres: Postgres) -> TopologySettings:
    """As docker-compose.yml runs them: PostgreSQL, and its LISTEN/NOTIFY broker
    (polling left at its default, so events cross servers through the broker)."""
    url = postgres.new_database()
    return TopologySettings(url, {"broker_url": url})


@dataclass
class Arrival:
    id: int
    event: str
    data: str
    at: float  # time.monotonic() when the blank line ending it was read


class ProxiedStream:
    """One ``GET /events`` read on its own thread, every event stamped as it arrives.

    The thread lets a test post while the stream is being read, so an event's time is
    when its bytes came out of the proxy, not when the test got round to looking.
    """

    def __init__(
        self, client: httpx.Client, params: dict[str, str], headers: dict[str, str]
    ) -> None:
        request = client.build_request("GET", "/events", params=params, headers=headers)
        self.response = client.send(request, stream=True)
        self.served_by = self.response.headers.get("x-served-by", "")
        self.events: list[Arrival] = []
        self.comments: list[str] = []
        self.opened = False  # the retry hint came: the stream has joined the fan-out
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        fields: dict[str, str] = {}
        # The stream ends when the proxy stops, which is how every test ends it.
        with contextlib.suppress(httpx.HTTPError, OSError):
            for line in self.response.iter_lines():
                with self._changed:
                    self._take(line, fields)
                    self._changed.notify_all()

    def _take(self, line: str, fields: dict[str, str]) -> None:
        if line.startswith(":"):
            self.comments.append(line[1:].strip())
        elif line:
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")
            self.opened = self.opened or name == "retry"
        else:
            # An id alone is the stream's position (EventSource dispatches nothing).
            if "id" in fields and "data" in fields:
                at = time.monotonic()
                self.events.append(
                    Arrival(int(fields["id"]), fields.get("event", ""), fields.get("data", ""), at)
                )
            fields.clear()

    def wait(self, check: Callable[[], bool], what: str, timeout: float = 10) -> None:
        with self._changed:
            if not self._changed.wait_for(check, timeout):
                raise AssertionError(f"stream on {self.served_by}: no {what} within {timeout} s")

    def arrival(self, event_id: int, timeout: float = 5) -> float:
        self.wait(lambda: any(e.id == event_id for e in self.events), f"event {event_id}", timeout)
        return next(e.at for e in self.events if e.id == event_id)

    def wait_opened(self) -> None:
        self.wait(lambda: self.opened, "retry hint")

    def wait_events(self, count: int) -> None:
        self.wait(lambda: len(self.events) >= count, f"{count} events")

    def ids(self) -> list[int]:
        return [e.id for e in self.events]

    def close(self, timeout: float = 5) -> None:
        self._thread.join(timeout)
        self.response.close()


def caddy_ca(directory: Path) -> Path:
    return directory / "data" / "caddy" / "pki" / "authorities" / "local" / "root.crt"


def alpn(port: int, ca: Path) -> str | None:
    """The protocol a TLS client offering HTTP/2 and HTTP/1.1 agrees on with the proxy."""
    context = ssl.create_default_context(cafile=str(ca))
    context.set_alpn_protocols(["h2", "http/1.1"])
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        return tls.selected_alpn_protocol()


@dataclass
class Proxy:
    """Caddy running deploy/Caddyfile on loopback, signing with its own CA."""

    directory: Path
    upstreams: list[int]
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def ca(self) -> Path:
        return caddy_ca(self.directory)

    def env(self) -> dict[str, str]:
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            # Caddy keeps its CA, certificates and autosaved config here, not in ~.
            "HOME": str(self.directory),
            "XDG_DATA_HOME": str(self.directory / "data"),
            "XDG_CONFIG_HOME": str(self.directory / "config"),
            "PROXY_ADMIN": "off",
            "PROXY_BIND": "127.0.0.1",
            "PROXY_HTTP_PORT": str(free_port()),
            "PROXY_HTTPS_PORT": str(self.port),
            "PROXY_SITE": f"https://127.0.0.1:{self.port}",
            "FEED_UPSTREAM_1": f"127.0.0.1:{self.upstreams[0]}",
            "FEED_UPSTREAM_2": f"127.0.0.1:{self.upstreams[1]}",
        }

    def start(self, timeout: float = 20) -> Proxy:
        log = (self.directory / "caddy.log").open("ab")
        command = [caddy_binary(), "run", "--config", str(CADDYFILE), "--adapter", "caddyfile"]
        self.process = subprocess.Popen(command, env=self.env(), stdout=log, stderr=log)
        until(
            self._ready,
            timeout=timeout,
            failure=lambda _: TimeoutError(f"caddy did not start:\n{self.logs()}"),
        )
        return self

    def _ready(self) -> bool:
        """Once it has made its CA and certificate and completes a handshake."""
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError(f"caddy exited with {self.process.returncode}:\n{self.logs()}")
        with contextlib.suppress(OSError):
            return self.ca.exists() and alpn(self.port, self.ca)
        return False

    def logs(self) -> str:
        return (self.directory / "caddy.log").read_text(errors="replace")

    def stop(self, timeout: float = 15) -> None:
        """SIGTERM; Caddy's grace_period cuts open streams, so it exits in bounded time."""
        assert self.process is not None
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise


@dataclass
class Topology:
    servers: dict[str, Server]  # by the address X-Served-By names them with
    proxy: Proxy
    client: httpx.Client  # through the proxy, trusting its CA
    streams: list[ProxiedStream] = field(default_factory=list)

    def stream(self, headers: dict[str, str] | None = None) -> ProxiedStream:
        stream = ProxiedStream(self.client, {"format": "json"}, headers or {})
        self.streams.append(stream)
        assert stream.response.status_code == 200
        return stream

    def post(self, body: str) -> httpx.Response:
        response = self.client.post("/api/channels/general/posts", json={"body": body})
        assert response.status_code == 201, response.text
        return response


@pytest.fixture
def topology(
    make_server: Callable[..., Server], topology_settings: TopologySettings, tmp_path: Path
) -> Iterator[Topology]:
    """Two feed servers on one database behind Caddy, as docker-compose.yml runs them."""
    settings = {**topology_settings.settings, "heartbeat": HEARTBEAT}
    servers = [make_server(database=topology_settings.database, **settings) for _ in range(2)]
    directory = tmp_path / "caddy"
    directory.mkdir()
    proxy = Proxy(directory, [s.port for s in servers]).start()
    verify = ssl.create_default_context(cafile=str(proxy.ca))
    url = f"https://127.0.0.1:{proxy.port}"
    client = httpx.Client(base_url=url, verify=verify, timeout=10, trust_env=False, headers=ADMIN)
    topology = Topology({f"127.0.0.1:{s.port}": s for s in servers}, proxy, client)
    try:
        yield topology
    finally:
        # Servers first: they end their streams, so Caddy has none to wait for.
        for server in servers:
            server.stop()
        proxy.stop()
        for stream in topology.streams:
            stream.close()
        client.close()


def test_posts_through_the_proxy_reach_streams_on_both_servers_within_100ms(
    topology: Topology,
) -> None:
    streams = [topology.stream() for _ in topology.servers]
    # Round robin sends consecutive requests to different servers.
    assert {s.served_by for s in streams} == set(topology.servers)
    for stream in streams:
        stream.wait_opened()
    sent: list[int] = []
    latency: dict[tuple[str, str], list[float]] = defaultdict(list)
    for n in range(POSTS):
        started = time.monotonic()
        response = topology.post(f"through the proxy {n}")
        sent.append(response.json()["event_id"])
        for stream in streams:
            pair = (response.headers["x-served-by"], stream.served_by)
            latency[pair].append(stream.arrival(sent[-1]) - started)
    # Posts written by each server reached the streams on each server.
    assert set(latency) == set(itertools.product(topology.servers, repeat=2))
    for stream in streams:
        assert stream.ids() == sent
        bodies = [json.loads(e.data)["post"]["body"] for e in stream.events]
        assert bodies == [f"through the proxy {n}" for n in range(POSTS)]
    medians = {pair: statistics.median(values) for pair, values in latency.items()}
    report = ", ".join(
        f"{post[-5:]}->{stream[-5:]}: median {m * 1000:.1f} ms, max "
        f"{max(latency[post, stream]) * 1000:.1f} ms"
        for (post, stream), m in sorted(medians.items())
    )
    print(f"post -> event through the proxy: {report}")
    assert all(m < LATENCY_BOUND for m in medians.values()), report


def test_streams_through_the_proxy_keep_their_headers_heartbeats_and_last_event_id(
    topology: Topology,
) -> None:
    # Long enough that a replay of two posts is over Caddy's 512-byte threshold for
    # compressing, so a stream the proxy would compress gets compressed here.
    sent = [topology.post(f"before the cut {n}: " + "x" * 400).json()["event_id"] for n in range(3)]
    # A reconnect lands on either server; each replays exactly what followed the id.
    headers = {"Last-Event-ID": str(sent[0]), "Accept-Encoding": "gzip"}
    resumed = [topology.stream(headers=headers) for _ in topology.servers]
    assert {s.served_by for s in resumed} == set(topology.servers)
    for stream in resumed:
        assert stream.response.headers["content-type"].startswith("text/event-stream")
        assert stream.response.headers["cache-control"] == "private, no-store"
        assert "content-encoding" not in stream.response.headers
        stream.wait_events(2)
        assert stream.ids() == sent[1:]
        # A heartbeat is a few bytes: one that arrives on its own was not held back.
        stream.wait(lambda s=stream: "heartbeat" in s.comments, "heartbeat", 20 * HEARTBEAT)
    # The proxy does compress pages, so leaving the stream alone is deliberate.
    page = topology.client.get("/", headers={"Accept-Encoding": "gzip"})
    assert page.headers["content-encoding"] == "gzip"


@pytest.mark.slow
def test_the_proxy_speaks_http2_to_browsers(tmp_path: Path) -> None:
    # Only the TLS handshake is at stake, so no server needs to run behind it.
    proxy = Proxy(tmp_path, [free_port(), free_port()]).start()
    try:
        assert alpn(proxy.port, proxy.ca) == "h2"
    finally:
        proxy.stop()
