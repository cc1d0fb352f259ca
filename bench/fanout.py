"""One measurement: start a server, connect the load clients, post, collect.

The scenarios (``throughput``, ``storm``, ``slow``) reuse the pieces here: starting
and stopping servers, the load clients, posting, and reading a process's RSS and CPU.

Rationale:

1. Each server gets a fresh temporary directory (feed's SQLite database, the logs)
   and a fresh loopback port; only 127.0.0.1 is ever contacted. The PostgreSQL
   targets get a fresh database in one cluster the run starts on loopback.
2. Every wait has a deadline, and every process started here is stopped on the way
   out, errors and Ctrl-C included. Children also get ``PR_SET_PDEATHSIG``, so if
   the benchmark itself is killed its servers and clients die with it.
3. One warm-up post goes through before the "before" RSS is read: the first post
   loads code paths (templates, SQL compilation) that are not a per-subscriber cost.
4. The "after" RSS is read while every subscriber is still connected and every post
   has been delivered; only then are the clients told to hang up.
5. CPU time (every thread's, from ``/proc/PID/task/*/schedstat``) is read just before
   the first post and after the last delivery: the fan-out and the POSTs, not the
   connects. For Nchan both RSS and CPU are its worker's: the master only supervises.
6. Above 10,000 subscribers one client process would run out of file descriptors, so
   the subscribers are shared among several, each from its own loopback address
   (127.0.0.1, 127.0.0.2, ...), which also gives each its own ephemeral ports.
7. With ``--profile DIR``, py-spy samples feed's (first) server, or each worker, from
   the first post until every subscriber has every post: the fan-out, not the
   connects. It costs CPU of its own on the same two cores, so a profiled run's
   figures are not the ones to report. Of a target's rounds (scaling.py, on rounds)
   only the first is sampled.
8. feed's own ``/metrics`` is read before the first post and after the last
   delivery, for how many of its commits took over ``SLOW_COMMIT`` seconds (the
   ``feed_commit_seconds`` histogram): a post whose first delivery stalls for tens of
   milliseconds is then seen to be the disk's sync, or not.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import dataclasses
import functools
import json
import os
import signal
import socket
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import nchan
from bench.client import marker
from bench.profile import sampling

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
# feed on SQLite; Nchan (C, the reference); the naive baseline; feed on PostgreSQL with
# its LISTEN/NOTIFY broker, as one worker and as two (subscribers split across both,
# posts into the first).
TARGETS = ("feed", "nchan", "baseline", "feed-pg", "feed-pg-2w")
TOKEN_TIMEOUT = 60.0
WORKERS = {"feed-pg-2w": 2}
READY = {"nchan": nchan.READY}  # what a subscribed stream opens with; others send retry:
SUBSCRIBERS_PER_CLIENT = 10_000  # a client process's file descriptors, with room to spare
CREATED = (201, 202)  # Nchan answers 202 when nobody is subscribed (the warm-up post)
START_TIMEOUT = 30.0
POST_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0
MARGIN = 15.0  # on top of a client's own deadline, before we give up on it
LINE_LIMIT = 64 * 1024 * 1024  # a client's results arrive as one JSON line
# A commit slower than this, in seconds, is counted (8); a bound of feed's histogram.
SLOW_COMMIT = "0.01"
PR_SET_PDEATHSIG = 1


class BenchError(RuntimeError):
    """The benchmark could not run to the end; the message says which step failed."""


@dataclass(frozen=True, slots=True)
class Plan:
    subscribers: int
    posts: int
    interval: float
    clients: int  # 0: one per SUBSCRIBERS_PER_CLIENT
    connect_timeout: float
    drain: float
    slow: int = 0  # subscribers that never read (the slow-reader scenario)
    pad: int = 0  # filler characters in each post's body
    env: tuple[tuple[str, str], ...] = ()  # FEED_* settings for this scenario
    profile: str = ""  # a directory: py-spy feed's server while it fans out (7)

    @property
    def client_count(self) -> int:
        return self.clients or -(-self.subscribers // SUBSCRIBERS_PER_CLIENT)


@dataclass(slots=True)
class Measurement:
    """What one target did; ``report`` turns it into numbers."""

    target: str
    subscribers: int
    posts: int
    connected: int = 0
    delivered: int = 0
    lost: int = 0
    connect_s: float = 0.0
    post_ms: list[float] = field(default_factory=list)
    rss_kb: dict[str, int] = field(default_factory=dict)
    cpu_s: float = 0.0
    client_cpu_s: float = 0.0  # the load clients' own: reading is inside every latency
    latencies_us: list[list[int]] = field(default_factory=list)
    slow: int = 0
    dropped_slow: int = 0
    commits: int | None = None  # feed's commits while it posted and delivered (8)
    slow_commits: int | None = None  # of them, those over SLOW_COMMIT seconds


def pooled(rounds: list[Measurement]) -> Measurement:
    """One target's rounds at one size as one measurement (scaling.py, on rounds): every
    round's posts and deliveries, its CPU summed, its RSS averaged."""
    first = rounds[0]
    if len(rounds) == 1:
        return first
    keys = set.intersection(*(set(m.rss_kb) for m in rounds))
    return Measurement(
        first.target,
        first.subscribers,
        sum(m.posts for m in rounds),
        connected=min(m.connected for m in rounds),
        delivered=sum(m.delivered for m in rounds),
        lost=sum(m.lost for m in rounds),
        connect_s=sum(m.connect_s for m in rounds) / len(rounds),
        post_ms=[ms for m in rounds for ms in m.post_ms],
        rss_kb={k: round(sum(m.rss_kb[k] for m in rounds) / len(rounds)) for k in keys},
        cpu_s=sum(m.cpu_s for m in rounds),
        commits=_total(m.commits for m in rounds),
        slow_commits=_total(m.slow_commits for m in rounds),
        client_cpu_s=sum(m.client_cpu_s for m in rounds),
        latencies_us=[post for m in rounds for post in m.latencies_us],
        slow=first.slow,
        dropped_slow=sum(m.dropped_slow for m in rounds),
    )


# -- processes ----------------------------------------------------------------------


def _total(counts: Iterable[int | None]) -> int | None:
    found = list(counts)
    return None if None in found else sum(n for n in found if n is not None)


def _die_with_parent() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


@contextlib.asynccontextmanager
async def spawn(cmd: list[str], **kwargs: Any) -> AsyncIterator[asyncio.subprocess.Process]:
    proc = await asyncio.create_subprocess_exec(
        *cmd, cwd=ROOT, preexec_fn=_die_with_parent, limit=LINE_LIMIT, **kwargs
    )
    try:
        yield proc
    finally:
        await stop(proc)


async def stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is not None:
        return
    proc.terminate()
    try:
        await asyncio.wait_for(proc.wait(), STOP_TIMEOUT)
    except TimeoutError:
        proc.kill()
        await proc.wait()
    except asyncio.CancelledError:
        proc.kill()  # we are being cancelled (Ctrl-C): still never leave it running
        raise


def server_command(
    target: str, port: int, workdir: Path, database: str | None, extra: Plan | None = None
) -> tuple[list[str], dict[str, str]]:
    # FEED_* variables from the caller's shell would change what is measured.
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEED_")}
    if target == "baseline":
        return [sys.executable, "-m", "bench.baseline", "--port", str(port)], env
    if target == "nchan":
        return nchan.command(port, workdir), env
    env |= {
        "FEED_DATABASE_URL": database or f"sqlite:///{workdir / 'feed.db'}",
        "FEED_HOST": HOST,
        "FEED_PORT": str(port),
        "FEED_LOG_LEVEL": "warning",
        # Every load client connects from 127.0.0.1: lift the per-address limits.
        "FEED_MAX_STREAMS_PER_CLIENT": "100000",
        "FEED_POST_RATE": "100000",
    }
    if database is not None:
        env["FEED_BROKER_URL"] = database
    if extra is not None:
        env |= dict(extra.env)
    return [sys.executable, "-m", "feed", "serve"], env


def client_command(
    target: str, port: int, subscribers: int, plan: Plan, n: int, *extra: str
) -> list[str]:
    """The ``n``-th load client: its own source address, and its share of slow readers."""
    return [
        *(sys.executable, "-m", "bench.client", "--port", str(port)),
        *("--subscribers", str(subscribers), "--posts", str(plan.posts)),
        *("--connect-timeout", str(plan.connect_timeout), "--drain", str(plan.drain)),
        *("--source", f"127.0.0.{1 + n}", "--ready", READY.get(target, "\\nretry:")),
        *("--slow", str(shares(plan.slow, plan.client_count)[n])),
        *extra,
    ]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise BenchError(f"no VmRSS for process {pid}")


def cpu_s(pid: int) -> float:
    """CPU time ``pid``'s threads have run so far, in seconds.

    From each thread's ``schedstat`` (nanoseconds), not ``/proc/PID/stat``, whose
    10 ms ticks are too coarse for a fan-out to 1,000 subscribers."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError):  # a thread that just ended
            total += int((task / "schedstat").read_text().split()[0])
    return total / 1e9


def tail(log: Path) -> str:
    return log.read_text(errors="replace")[-4000:]


# -- talking to a server ----------------------------------------------------------------


async def wait_listening(server: asyncio.subprocess.Process, port: int, log: Path) -> None:
    """Both servers bind only after start-up is complete, so a connect means ready."""
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if server.returncode is not None:
            raise BenchError(f"server exited with {server.returncode}:\n{tail(log)}")
        with contextlib.suppress(OSError):
            _, writer = await asyncio.open_connection(HOST, port)
            writer.close()
            return
        if time.monotonic() > deadline:
            raise BenchError(f"server did not listen within {START_TIMEOUT} s:\n{tail(log)}")
        await asyncio.sleep(0.05)  # polling a port that has no way to notify us


async def post(port: int, body: Callable[[], str], token: str = "") -> float:
    """POST one post through the real API; returns how long the request took (ms).

    ``body`` is called just before the request is written, so a timestamp it embeds
    excludes the connect."""
    async with asyncio.timeout(POST_TIMEOUT):
        reader, writer = await asyncio.open_connection(HOST, port)
        try:
            started = time.monotonic()
            writer.write(request_bytes(port, {"author": "bench", "body": body()}, token))
            head = await reader.readuntil(b"\r\n\r\n")
            await reader.read()  # Connection: close, so the body ends at EOF
        finally:
            writer.close()
    status = int(head.split()[1])
    if status not in CREATED:
        raise BenchError(f"POST answered {status}, expected 201")
    return (time.monotonic() - started) * 1000


async def commit_counts(port: int) -> dict[str, int]:
    """feed's ``feed_commit_seconds`` histogram as its ``/metrics`` says it now: how many
    commits took at most each bound (``"+Inf"``: all of them) (8)."""
    async with asyncio.timeout(POST_TIMEOUT):
        reader, writer = await asyncio.open_connection(HOST, port)
        try:
            asked = f"GET /metrics HTTP/1.1\r\nHost: {HOST}:{port}\r\nConnection: close\r\n"
            writer.write(asked.encode() + b"\r\n")
            text = (await reader.read()).decode(errors="replace")
        finally:
            writer.close()
    counts: dict[str, int] = {}
    for line in text.splitlines():
        if line.startswith('feed_commit_seconds_bucket{le="'):
            bound, value = line.split('"')[1], line.rsplit(" ", 1)[1]
            counts[bound] = int(float(value))
    if "+Inf" not in counts or SLOW_COMMIT not in counts:
        raise BenchError(f"feed's /metrics has no feed_commit_seconds:\n{text[:2000]}")
    return counts


def auth_line(token: str) -> str:
    """The header that makes a POST a writer's; Nchan and the baseline need none."""
    return f"Authorization: Bearer {token}\r\n" if token else ""


def request_bytes(port: int, payload: dict[str, str], token: str = "") -> bytes:
    body = json.dumps(payload).encode()
    head = (
        "POST /api/channels/general/posts HTTP/1.1\r\n"
        f"Host: {HOST}:{port}\r\nContent-Type: application/json\r\n{auth_line(token)}"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


async def post_all(port: int, plan: Plan, token: str, first: int = 0) -> list[float]:
    """Posts ``first``..``first + plan.posts - 1``, ``plan.interval`` apart."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    timings = []
    for k in range(plan.posts):
        # Pacing, not synchronisation: spaced posts make each one a separate fan-out.
        await asyncio.sleep(max(0.0, start + k * plan.interval - loop.time()))
        body = functools.partial(marker, first + k, plan.pad)
        timings.append(await post(port, body, token))
    return timings


# -- talking to the clients -------------------------------------------------------------


async def read_all(clients: list[asyncio.subprocess.Process], within: float) -> list[Any]:
    """One JSON line from each client, or BenchError after ``within`` seconds."""
    try:
        async with asyncio.timeout(within), asyncio.TaskGroup() as group:
            reads = [group.create_task(_read_line(proc)) for proc in clients]
    except TimeoutError:
        raise BenchError(f"load clients did not answer within {within:.0f} s") from None
    lines = [read.result() for read in reads]
    if not all(lines):
        raise BenchError("a load client exited early (see its stderr)")
    return [json.loads(line) for line in lines]


async def _read_line(proc: asyncio.subprocess.Process) -> bytes:
    assert proc.stdout is not None
    return await proc.stdout.readline()


async def tell(clients: list[asyncio.subprocess.Process], word: str) -> None:
    """Send one command line (``posted K``, ``reconnect``, ``close``) to every client."""
    for proc in clients:
        assert proc.stdin is not None
        proc.stdin.write(word.encode() + b"\n")
        await proc.stdin.drain()


def shares(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


# -- one measurement --------------------------------------------------------------------


@dataclass(slots=True)
class Server:
    """A running target: the process started, and the one whose RSS and CPU count."""

    process: asyncio.subprocess.Process
    measured: int
    port: int
    log: Path
    token: str = ""  # a writer's API token, for feed: posting needs one


async def make_token(env: dict[str, str]) -> str:
    """A writer's API token in the database the server will use, made first if it is
    new (``feed token create`` never makes one; ``feed db upgrade`` does)."""
    await _feed(env, "db", "upgrade")
    lines = (await _feed(env, "token", "create", "bench", "--role", "writer")).split()
    if not lines:
        raise BenchError("feed token create printed no token")
    return lines[0]


async def _feed(env: dict[str, str], *args: str) -> str:
    """What ``feed ARGS`` printed, within ``TOKEN_TIMEOUT``; BenchError if it failed."""
    cmd = [sys.executable, "-m", "feed", *args]
    pipes = {"stdout": asyncio.subprocess.PIPE, "stderr": asyncio.subprocess.PIPE}
    said = f"feed {' '.join(args[:2])}"
    async with spawn(cmd, env=env, **pipes) as proc:
        try:
            out, err = await asyncio.wait_for(proc.communicate(), TOKEN_TIMEOUT)
        except TimeoutError:
            raise BenchError(f"{said} took over {TOKEN_TIMEOUT:.0f} s") from None
    if proc.returncode != 0:
        raise BenchError(f"{said} failed: {err.decode(errors='replace')[-2000:]}")
    return out.decode()


async def start_server(
    stack: contextlib.AsyncExitStack,
    target: str,
    port: int,
    workdir: Path,
    database: str | None = None,
    plan: Plan | None = None,
    n: int = 0,
) -> Server:
    """Start ``target`` on ``port``; it is stopped when ``stack`` closes."""
    try:
        cmd, env = server_command(target, port, workdir, database, plan)
    except nchan.NchanMissing as exc:
        raise BenchError(str(exc)) from None
    token = await make_token(env) if target.startswith("feed") else ""
    path = workdir / f"server-{n}.log"
    log = stack.enter_context(path.open("ab"))
    proc = await stack.enter_async_context(spawn(cmd, env=env, stdout=log, stderr=log))
    await wait_listening(proc, port, path)
    if target == "nchan":  # nginx writes its errors to its own log
        return Server(proc, nchan.worker(proc.pid), port, nchan.error_log(workdir))
    return Server(proc, proc.pid, port, path, token)


async def start_clients(
    stack: contextlib.AsyncExitStack, target: str, ports: list[int], plan: Plan, *extra: str
) -> list[asyncio.subprocess.Process]:
    """The load clients; at least one per server, each on one server."""
    pipes = {"stdin": asyncio.subprocess.PIPE, "stdout": asyncio.subprocess.PIPE}
    count = max(plan.client_count, len(ports))
    parts = shares(plan.subscribers, count)
    plan = dataclasses.replace(plan, clients=count)
    return [
        await stack.enter_async_context(
            spawn(client_command(target, ports[i % len(ports)], n, plan, i, *extra), **pipes)
        )
        for i, n in enumerate(parts)
    ]


async def measure(target: str, plan: Plan, database: str | None = None) -> Measurement:
    """``database`` is a PostgreSQL URL for the ``feed-pg`` targets."""
    with tempfile.TemporaryDirectory(prefix=f"feed-bench-{target}-") as tmp:
        workdir = Path(tmp)
        ports = [free_port() for _ in range(WORKERS.get(target, 1))]
        async with contextlib.AsyncExitStack() as stack:
            servers = [
                await start_server(stack, target, port, workdir, database, plan, n)
                for n, port in enumerate(ports)
            ]
            token = servers[0].token  # posts go into the first server
            await post(ports[0], lambda: "warm-up", token)
            try:
                pids = [s.measured for s in servers]
                return await _load(pids, ports, target, plan, token)
            except BenchError as exc:
                raise BenchError(f"{exc}\nserver log:\n{tail(servers[0].log)}") from None


async def sample_rss(pids: list[int], peak: dict[str, int]) -> None:
    """Keep ``peak["peak"]`` at the highest RSS seen, until cancelled."""
    while True:
        peak["peak"] = max(peak.get("peak", 0), sum(rss_kb(pid) for pid in pids))
        await asyncio.sleep(0.05)  # sampling, not waiting for anything


async def _load(
    pids: list[int],
    ports: list[int],
    target: str,
    plan: Plan,
    token: str,
    spied: list[int] | None = None,
) -> Measurement:
    """``spied``: the processes ``plan.profile`` samples, if not the first (7)."""
    m = Measurement(target, plan.subscribers, plan.posts, slow=plan.slow)
    m.rss_kb["before"] = sum(rss_kb(pid) for pid in pids)
    async with contextlib.AsyncExitStack() as stack:
        clients = await start_clients(stack, target, ports, plan)
        started = time.monotonic()
        ready = await read_all(clients, plan.connect_timeout + MARGIN)
        m.connect_s = time.monotonic() - started
        m.connected = sum(r["ready"] for r in ready)
        if m.connected < plan.subscribers:
            failed = ", ".join(f"{r['failed']} ({r.get('why', {})})" for r in ready)
            raise BenchError(
                f"{target}: only {m.connected} of {plan.subscribers} subscribers connected; "
                f"failed per client: {failed}"
            )
        m.rss_kb["connected"] = sum(rss_kb(pid) for pid in pids)
        feed = target.startswith("feed")
        commits_before = await commit_counts(ports[0]) if feed else None
        cpu_before = sum(cpu_s(pid) for pid in pids)
        client_before = sum(cpu_s(proc.pid) for proc in clients)
        sampler = asyncio.ensure_future(sample_rss(pids, m.rss_kb))
        try:
            with contextlib.ExitStack() as spying:
                for n, pid in enumerate(spied or pids[:1]) if plan.profile else ():
                    if target.startswith("feed"):  # rationale 7
                        path = Path(plan.profile) / f"{target}-{plan.subscribers}-{n}.txt"
                        spying.enter_context(sampling(pid, path))
                m.post_ms = await post_all(ports[0], plan, token)
                await tell(clients, "posted")
                results = await read_all(clients, plan.drain + MARGIN)
        finally:
            sampler.cancel()
        m.cpu_s = sum(cpu_s(pid) for pid in pids) - cpu_before
        m.client_cpu_s = sum(cpu_s(proc.pid) for proc in clients) - client_before
        m.rss_kb["after"] = sum(rss_kb(pid) for pid in pids)
        if commits_before is not None:
            after = await commit_counts(ports[0])
            m.commits = after["+Inf"] - commits_before["+Inf"]
            fast = after[SLOW_COMMIT] - commits_before[SLOW_COMMIT]
            m.slow_commits = m.commits - fast
        await tell(clients, "close")
    m.delivered = sum(r["delivered"] for r in results)
    m.lost = sum(r["lost"] for r in results)
    m.dropped_slow = sum(r["dropped_slow"] for r in results)
    m.latencies_us = [
        [us for r in results for us in r["latencies_us"][k]] for k in range(plan.posts)
    ]
    return m
