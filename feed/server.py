"""Running feed under uvicorn, in one process or several.

Rationale:

1. uvicorn's graceful shutdown waits for every connection to finish, and an SSE
   stream never finishes by itself. So the moment shutdown starts we close the hub,
   which ends every stream with a final chunk (clients reconnect elsewhere and
   resume), and ``timeout_graceful_shutdown`` bounds whatever is left.
2. ``--workers N`` runs N such servers in child processes sharing one listening
   socket, which the parent binds once. uvicorn's own multi-process mode would
   start plain ``uvicorn.Server`` children, without point 1. The parent forwards
   SIGINT/SIGTERM, restarts a worker that dies after it has been up for a while,
   and stops everything if one dies straight after starting (a setting or the
   database is wrong, and restarting would only repeat the failure).
3. Workers share nothing but the database and the broker, so any worker can
   resume any client's stream; the settings refuse more than one worker with the
   memory broker.
4. For ``/metrics`` they do share one more thing: a directory where each worker
   keeps its numbers, so whichever worker is scraped adds up all of them (metrics.py,
   3). The parent makes a fresh one for each run before it starts the first worker
   (a spawned worker looks for it when it imports prometheus_client), drops a dead
   worker's open streams from it before starting the next, and removes it at exit.
"""

from __future__ import annotations

import ctypes
import gc
import logging
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
from multiprocessing.process import BaseProcess
from types import FrameType

import uvicorn

from feed import logs, metrics
from feed.app import FeedApp, create_app
from feed.settings import Settings

logger = logging.getLogger("feed.server")

INCOMPLETE = "ASGI callable returned without completing response."

# Collect the youngest generation after this many new objects instead of 700. Each
# open stream keeps a few dozen long-lived objects; with thousands of streams the
# default thresholds ran a full collection every couple of seconds under load, each
# one pausing delivery for 250 ms and freeing nothing (docs/benchmarks.md).
GC_THRESHOLD = (50_000, 20, 10)

# A worker that exits sooner than this after starting failed to start.
STARTUP_GRACE = 10.0
PR_SET_PDEATHSIG = 1


class _DroppedStreamFilter(logging.Filter):
    # The stream endpoint leaves a response incomplete on purpose when it drops a
    # slow subscriber (see stream.py); uvicorn reports that as an error.
    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != INCOMPLETE


LISTEN_BACKLOG = 65_535


class FeedServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, app: FeedApp) -> None:
        super().__init__(config)
        self._app = app

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        # Modules, templates and the like live as long as the process: keep them out
        # of every future collection.
        gc.freeze()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self._app.hub.close()
        await super().shutdown(sockets)


def build_server(settings: Settings, app: FeedApp | None = None) -> FeedServer:
    app = app or create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        timeout_graceful_shutdown=max(1, round(settings.shutdown_timeout)),
        lifespan="on",
        # feed.logs writes the access lines (with durations) and configures handlers.
        access_log=False,
        log_config=None,
        proxy_headers=True,
        forwarded_allow_ips=settings.forwarded_allow_ips,
        # After a restart every screen reconnects at once: let the kernel queue as many
        # as it allows (net.core.somaxconn caps it) instead of uvicorn's 2,048.
        backlog=LISTEN_BACKLOG,
    )
    logging.getLogger("uvicorn.error").addFilter(_DroppedStreamFilter())
    return FeedServer(config, app)


def _configure(settings: Settings) -> None:
    logs.configure(settings.log_level, settings.log_format)
    gc.set_threshold(*GC_THRESHOLD)


def serve(settings: Settings) -> int:
    """Serve until told to stop; returns the process exit code."""
    _configure(settings)
    if settings.workers == 1:
        server = build_server(settings)
        server.run()
        return 0 if server.started else 3
    return Supervisor(settings).run()


def _worker(settings: Settings, listener: socket.socket, parent: int) -> None:
    _die_with(parent)
    _configure(settings)
    server = build_server(settings)
    server.run(sockets=[listener])
    if not server.started:
        raise SystemExit(3)


def _die_with(parent: int) -> None:
    """End this worker when the supervisor dies, even by SIGKILL, instead of leaving
    an orphan that keeps serving on the shared socket."""
    if sys.platform == "linux":
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # it died before we asked
        raise SystemExit(1)


class Supervisor:
    """Keeps ``settings.workers`` servers running on one shared socket."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._stop = threading.Event()
        self._context = multiprocessing.get_context("spawn")
        self._workers: list[tuple[BaseProcess, float]] = []
        self._socket: socket.socket | None = None
        self._shared = ""  # the workers' metrics directory, while they run

    def run(self) -> int:
        self._socket = self._bind()
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self._on_signal)
        logger.info(
            "feed supervisor %d: %d workers on %s:%d",
            os.getpid(),
            self._settings.workers,
            self._settings.host,
            self._settings.port,
        )
        with metrics.sharing() as self._shared:
            self._workers = [self._start() for _ in range(self._settings.workers)]
            code = self._watch()
            self._stop_all()
        self._socket.close()
        return code

    def _bind(self) -> socket.socket:
        family = socket.AF_INET6 if ":" in self._settings.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self._settings.host, self._settings.port))
        sock.listen(LISTEN_BACKLOG)
        sock.set_inheritable(True)
        return sock

    def _start(self) -> tuple[BaseProcess, float]:
        process = self._context.Process(
            target=_worker, args=(self._settings, self._socket, os.getpid()), name="feed-worker"
        )
        process.start()
        return process, time.monotonic()

    def _on_signal(self, _signum: int, _frame: FrameType | None) -> None:
        self._stop.set()

    def _watch(self) -> int:
        while not self._stop.wait(0.5):
            for index, (process, started) in enumerate(self._workers):
                if process.is_alive():
                    continue
                code = process.exitcode
                if time.monotonic() - started < STARTUP_GRACE:
                    logger.error("worker %s failed to start (exit %s); stopping", process.pid, code)
                    return 3
                logger.warning("worker %s exited with %s; starting another", process.pid, code)
                if process.pid is not None:
                    metrics.forget(process.pid, self._shared)
                self._workers[index] = self._start()
        return 0

    def _stop_all(self) -> None:
        for process, _ in self._workers:
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + self._settings.shutdown_timeout + 5
        for process, _ in self._workers:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join()
