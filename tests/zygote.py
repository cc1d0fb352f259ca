"""``feed serve`` processes forked from one that has already imported the server.

The suite starts some five hundred servers, and a fresh interpreter took about a
second to import what ``feed serve`` needs before it listened: on two cores, minutes
of every run. Each pytest worker keeps one process (multiprocessing's fork server)
that has imported the server's libraries and most of feed once; a test's server is
forked from it and starts in about a quarter of that. It is still a server process of
its own, on its own port, with its own environment, output and signals, so the tests
read its sockets and signal it as before.

What is imported ahead stays out of the way of a server's own settings: nothing in
``PRELOAD`` reads the environment when it is imported. prometheus_client does (it
picks its multiprocess mode then), so it is left for each server to import, and a
server refuses to start if it finds it already imported. Whatever a server runs on
start (settings, migrations, the app) runs in the server, after its environment is
in place.

What the interpreter reads only when it starts (the ``PYTHON*`` variables, the
locale, the time zone) is the fork server's: a test that gives a server other values
of those gets a fresh ``python -m feed serve``, as does every server with
``TEST_EXEC_SERVERS=1`` in pytest's environment. A forked server ends as a fresh one
does: by its signal, when one ended it (SIGINT included, which multiprocessing would
otherwise report as an exception), else with its exit status.
"""

from __future__ import annotations

import atexit
import multiprocessing
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from multiprocessing.context import ForkServerContext
from multiprocessing.process import BaseProcess

EXEC_SERVERS = "TEST_EXEC_SERVERS"

# Imported once by the fork server: the server's libraries and the parts of feed
# that read nothing from the environment when imported.
PRELOAD = [
    "sqlalchemy",
    "sqlalchemy.orm",
    "sqlmodel",
    "alembic.runtime.migration",
    "alembic.operations",
    "jinja2",
    "markdown_it",
    "starlette.applications",
    "uvicorn",
    "uvicorn.main",
    "httpx",
    "feed.settings",
    "feed.store",
    "feed.schema",
    "feed.render",
    "feed.search",
]
# Read from the environment when imported, so imported by each server itself.
NOT_PRELOADED = "prometheus_client"

_context: ForkServerContext | None = None


def _read_at_start(env: Mapping[str, str]) -> dict[str, str]:
    """What an interpreter takes from ``env`` only when it starts."""
    return {k: v for k, v in env.items() if k.startswith(("PYTHON", "LC_")) or k in ("LANG", "TZ")}


def forking(env: Mapping[str, str]) -> bool:
    """Whether a server with ``env`` may be forked, rather than started afresh."""
    if os.environ.get(EXEC_SERVERS, "") not in ("", "0"):
        return False
    return _read_at_start(env) == _read_at_start(os.environ)


def _fork_server() -> ForkServerContext:
    global _context
    if _context is None:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(PRELOAD)
        _context = context
    return _context


class Forked:
    """A forked server, answering as much of ``subprocess.Popen`` as the tests use."""

    def __init__(self, process: BaseProcess) -> None:
        self._process = process
        assert process.pid is not None
        self.pid: int = process.pid

    @property
    def returncode(self) -> int | None:
        return self._process.exitcode

    def poll(self) -> int | None:
        return self._process.exitcode

    def wait(self, timeout: float | None = None) -> int:
        self._process.join(timeout)
        code = self._process.exitcode
        if code is None:
            raise subprocess.TimeoutExpired(f"feed serve ({self.pid})", timeout or 0)
        return code

    def send_signal(self, sig: int) -> None:
        if self._process.exitcode is None:
            os.kill(self.pid, sig)

    def kill(self) -> None:
        self._process.kill()


_started: list[BaseProcess] = []


def start(argv: list[str], env: Mapping[str, str], log: str) -> Forked:
    """``feed <argv>`` in a process forked from the fork server, its output in ``log``."""
    # The event a subprocess raises, so that tests/tiers.py sees a process started.
    sys.audit("subprocess.Popen", sys.executable, ["feed", *argv], None, env)
    process = _fork_server().Process(target=_serve, args=(argv, dict(env), log), name="feed")
    process.start()
    _started.append(process)
    return Forked(process)


@atexit.register
def _stop_left_over() -> None:
    """multiprocessing waits for its children when the test process exits: a server a
    test left running would hold the worker up for ever, where a subprocess would not."""
    for process in _started:
        if process.exitcode is None:
            process.kill()


def _serve(argv: list[str], env: dict[str, str], log: str) -> None:
    out = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.dup2(out, 1)
    os.dup2(out, 2)
    os.close(out)
    if NOT_PRELOADED in sys.modules:
        raise RuntimeError(f"{NOT_PRELOADED} was imported before the server's environment")
    os.environ.clear()
    os.environ.update(env)
    # The fork server's temporary directory, if it asked for one, is not the test's.
    tempfile.tempdir = None
    # A pytest-xdist worker ignores SIGINT, and the fork server it starts passes that
    # on: a server started from a terminal takes Ctrl-C as Python's KeyboardInterrupt.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    from feed.cli import main

    try:
        code = main(argv)
    except KeyboardInterrupt:
        # Ended by SIGINT, as a fresh interpreter would report it.
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
        raise
    sys.exit(code)
