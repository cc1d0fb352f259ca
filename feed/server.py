"""Running feed under uvicorn, in one process or several.

Rationale:

1. uvicorn's graceful shutdown waits for every connection to finish, and an SSE
   stream never finishes by itself. So the moment shutdown starts we close the hub,
   which ends every stream with a final chunk (clients reconnect elsewhere and
   resume), and ``timeout_graceful_shutdown`` bounds whatever is left.
2. ``--workers N`` runs N such servers in child processes, each on a listening
   socket the parent binds for it (5). uvicorn's own multi-process mode would
   start plain ``uvicorn.Server`` children, without point 1. The parent forwards
   SIGINT/SIGTERM and replaces a worker that dies. Each worker tells the parent when
   it is serving (an Event it sets once its lifespan has started and it listens);
   one of the first workers that dies before that failed to start (a setting or the
   database is wrong, and restarting would only repeat the failure), so the parent
   stops everything and exits with ``EXIT_START_FAILED``. A replacement that dies
   before it serves does not stop the others, which serve on: it counts towards a
   crash loop like any death. The parent gives up, with the same code, on a
   crash loop: more than ``CRASH_LOOP_DEATHS`` deaths per worker within
   ``CRASH_LOOP_WINDOW`` seconds. A worker killed now and then (the OOM killer, an
   operator) is replaced however soon after its start; one that dies every few
   seconds after starting would only flood the logs and the database with starts.
3. Workers share nothing but the database and the broker, so any worker can
   resume any client's stream; the settings refuse more than one worker with the
   memory broker.
4. On the workers' metrics. For ``/metrics`` they do share one more thing: a directory
   where each worker keeps its numbers, so whichever worker is scraped adds up all of
   them (metrics.py, on sharing). The parent makes a fresh one for each run before it starts
   the first worker (a spawned worker looks for it when it imports prometheus_client),
   drops a dead worker's open streams from it before starting the next, and removes it
   at exit.
5. On the listening sockets. Workers sharing one listening socket take connections
   unevenly: whichever is idle in ``epoll_wait`` first accepts, so under a connect
   storm one worker took far more than its half, its accept queue overflowed and
   clients were cut before their headers (docs/benchmarks.md, two workers). So the
   parent binds one socket per worker, all on the port with ``SO_REUSEPORT``, and
   the kernel hands each new connection to one of them by a hash of its addresses:
   an even share, whatever each worker is doing. The parent keeps every socket open
   and gives a replacement its dead predecessor's, so the port never closes, and a
   connection the kernel queued on a dead worker's socket waits there for its
   replacement instead of being reset. A plain bind comes first and is closed at
   once: the kernel would let a second server that sets ``SO_REUSEPORT`` too (the
   same release started twice, by the same user) into the port, to take half the
   connections, even on an overlapping address (the wildcard and the loopback one);
   the plain bind fails while any socket listens on an address that overlaps its own,
   the wildcard and IPv6's included. That bind is closed before the shared ones are
   made, so two servers started in the same instant could both pass it: a claim on
   the port, a socket in Linux's abstract namespace named for the port as bound, is
   taken while the plain bind is held and kept until the shared sockets listen, and
   a second server's claim meanwhile is refused. It names the port alone, not the
   address, since which addresses overlap is the kernel's to say: once the first
   listens its plain bind says it, and two servers on addresses that do not overlap
   both run, unless they start in the very same instant. The kernel drops the claim
   with its holder, even a killed one. A worker's streams stay where they landed;
   ``FEED_MAX_STREAM_SECONDS`` (reconnects.py, on the maximum age) is how a replacement
   or a new worker gets its share back. Only Linux spreads this way; elsewhere the
   workers share one socket as before.
"""

from __future__ import annotations

import collections
import ctypes
import errno
import gc
import logging
import multiprocessing
import multiprocessing.connection
import os
import resource
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from multiprocessing.synchronize import Event
from types import FrameType

import uvicorn

from feed import connections, logs, metrics
from feed.app import FeedApp, create_app
from feed.settings import Settings

logger = logging.getLogger("feed.server")

INCOMPLETE = "ASGI callable returned without completing response."

# Collect the youngest generation after this many new objects instead of 700. Each
# open stream keeps a few dozen long-lived objects; with thousands of streams the
# default thresholds ran a full collection every couple of seconds under load, each
# one pausing delivery for 250 ms and freeing nothing (docs/benchmarks.md).
# The middle generation is collected after every second young collection, not every
# 21st: a collection walks all it holds, and after 19,500 streams opened it held
# 20 batches of their objects and paused delivery for 400 ms. Each object is walked
# there once either way; the full collection comes after 2 x 101 young ones, about
# as often as before.
GC_THRESHOLD = (50_000, 1, 100)

# Exit code of a server that could not start serving (2).
EXIT_START_FAILED = 3
# A crash loop (2): more than this many deaths per worker, within this many seconds.
CRASH_LOOP_DEATHS = 5
CRASH_LOOP_WINDOW = 60.0
# How often the supervisor looks at its workers when none has died.
WATCH_INTERVAL = 0.5
PR_SET_PDEATHSIG = 1


class _DroppedStreamFilter(logging.Filter):
    # The stream endpoint leaves a response incomplete on purpose when it drops a
    # slow subscriber (see stream.py); uvicorn reports that as an error.
    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != INCOMPLETE


LISTEN_BACKLOG = 65_535


class FeedServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, app: FeedApp, ready: Event | None = None) -> None:
        super().__init__(config)
        self._app = app
        self._ready = ready

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        # Modules, templates and the like live as long as the process: keep them out
        # of every future collection.
        gc.freeze()
        if self.started and self._ready is not None:
            self._ready.set()  # the supervisor's sign that this worker serves (2)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self._app.hub.close()
        await super().shutdown(sockets)


def build_server(
    settings: Settings, app: FeedApp | None = None, ready: Event | None = None
) -> FeedServer:
    app = app or create_app(settings)
    limits = connections.Limits(settings, _open_files())
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        # uvicorn's httptools protocol, with feed's limits on connections (connections.py).
        http=connections.protocol(limits),
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
    return FeedServer(config, app, ready)


def _open_files() -> int:
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def configure_process(settings: Settings) -> None:
    """What a feed process needs, whichever server runs the app: its logging, the
    garbage collector's thresholds and the open-files limit."""
    logs.configure(settings.log_level, settings.log_format)
    logging.getLogger("uvicorn.error").addFilter(_DroppedStreamFilter())
    gc.set_threshold(*GC_THRESHOLD)
    before, after = connections.raise_open_files_limit()
    if before != after:
        logger.info("raised the open-files limit from %d to %d", before, after)


def serve(settings: Settings) -> int:
    """Serve until told to stop; returns the process exit code."""
    configure_process(settings)
    if settings.workers == 1:
        server = build_server(settings)
        server.run()
        return 0 if server.started else EXIT_START_FAILED
    return Supervisor(settings).run()


def _worker(settings: Settings, listener: socket.socket, parent: int, ready: Event) -> None:
    _die_with(parent)
    configure_process(settings)
    server = build_server(settings, ready=ready)
    server.run(sockets=[listener])
    if not server.started:
        raise SystemExit(EXIT_START_FAILED)


def _die_with(parent: int) -> None:
    """End this worker when the supervisor dies, even by SIGKILL, instead of leaving
    an orphan that keeps serving on the port."""
    if sys.platform == "linux":
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # it died before we asked
        raise SystemExit(1)


@dataclass(frozen=True, slots=True)
class _Worker:
    process: BaseProcess
    ready: Event  # set by the worker once it serves (2)
    replacement: bool = False  # started in place of one that died (2)


# Linux spreads connections over sockets bound with SO_REUSEPORT (5); other kernels
# give them all to one socket, or to the last one bound.
SPREAD = sys.platform == "linux" and hasattr(socket, "SO_REUSEPORT")


def _claim(port: int) -> socket.socket:
    """The claim on ``port`` while a server binds it (5); OSError ``EADDRINUSE`` if
    another server holds it."""
    claim = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        # The abstract namespace (a leading NUL) has no file to leave behind, and is
        # per network namespace, as ports are.
        claim.bind(f"\0feed-listen {port}")
    except OSError as exc:
        claim.close()
        raise OSError(
            errno.EADDRINUSE,
            f"address already in use: another feed server is starting on port {port}",
        ) from exc
    return claim


class Supervisor:
    """Keeps ``settings.workers`` servers running on one port, each on its own
    listening socket (5)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._stop = threading.Event()
        self._context = multiprocessing.get_context("spawn")
        self._workers: list[_Worker] = []
        self._deaths: collections.deque[float] = collections.deque()
        self._sockets: list[socket.socket] = []  # one per worker, by index (5)
        self._shared = ""  # the workers' metrics directory, while they run

    def run(self) -> int:
        self._sockets = self._bind()
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
            self._workers = [self._start(n) for n in range(self._settings.workers)]
            code = self._watch()
            self._stop_all()
        for sock in set(self._sockets):
            sock.close()
        return code

    def _bind(self) -> list[socket.socket]:
        """The workers' listening sockets, index by index (5)."""
        if not SPREAD:
            return [self._listen(self._settings.port, spread=False)] * self._settings.workers
        # A socket with SO_REUSEPORT would join another server's on the port and take
        # half its connections: a plain bind first, which is refused if one listens,
        # and the port claimed before it is let go, against one starting alongside,
        # until the shared sockets listen and refuse it themselves (5).
        with self._listen(self._settings.port, spread=False) as probe:
            port = probe.getsockname()[1]  # the kernel's choice, for port 0
            claim = _claim(port)
        with claim:
            return [self._listen(port, spread=True) for _ in range(self._settings.workers)]

    def _listen(self, port: int, *, spread: bool) -> socket.socket:
        family = socket.AF_INET6 if ":" in self._settings.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if spread:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((self._settings.host, port))
        sock.listen(LISTEN_BACKLOG)
        sock.set_inheritable(True)
        return sock

    def _start(self, index: int, *, replacement: bool = False) -> _Worker:
        ready = self._context.Event()
        process = self._context.Process(
            target=_worker,
            args=(self._settings, self._sockets[index], os.getpid(), ready),
            name="feed-worker",
        )
        process.start()
        return _Worker(process, ready, replacement)

    def _on_signal(self, _signum: int, _frame: FrameType | None) -> None:
        self._stop.set()

    def _watch(self) -> int:
        while not self._stop.is_set():
            sentinels = [w.process.sentinel for w in self._workers]
            multiprocessing.connection.wait(sentinels, WATCH_INTERVAL)
            for index, worker in enumerate(self._workers):
                if worker.process.is_alive() or self._stop.is_set():
                    continue
                if not self._replace(index, worker):
                    return EXIT_START_FAILED
        return 0

    def _replace(self, index: int, worker: _Worker) -> bool:
        """Start a worker in place of the dead ``worker``; False to give up (2)."""
        pid, code = worker.process.pid, worker.process.exitcode
        if not worker.ready.is_set() and not worker.replacement:
            logger.error("worker %s exited with %s before it was serving; stopping", pid, code)
            return False
        now = time.monotonic()
        self._deaths.append(now)
        while self._deaths[0] < now - CRASH_LOOP_WINDOW:
            self._deaths.popleft()
        if len(self._deaths) > CRASH_LOOP_DEATHS * self._settings.workers:
            logger.error(
                "%d workers died within %g s, the last %s with %s; stopping",
                len(self._deaths),
                CRASH_LOOP_WINDOW,
                pid,
                code,
            )
            return False
        logger.warning("worker %s exited with %s; starting another", pid, code)
        if pid is not None:
            metrics.forget(pid, self._shared)
        self._workers[index] = self._start(index, replacement=True)
        return True

    def _stop_all(self) -> None:
        for worker in self._workers:
            process = worker.process
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + self._settings.shutdown_timeout + 5
        for worker in self._workers:
            process = worker.process
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join()
