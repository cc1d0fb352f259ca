"""The numbers behind ``/metrics`` (served by health.py), in Prometheus' text format.

Rationale:

1. On the fan-out path. Nothing on the fan-out path touches a metric. Per-stream numbers
   (open streams by channel and format, events written, slow streams dropped) are read
   from the hub when Prometheus scrapes (``Hub.stats``: counts kept as streams come
   and go, and a walk over the streams at most once a second, so anonymous scrapes
   cannot slow delivery); only once-per-event or once-per-request places (the relay, a
   replay, a write) update counters. The relay's lag is one observation per event,
   taken once for all the events of one commit (``Lags``): they were committed at the
   same moment and are handed out at the same moment, so each has the same lag, and
   a batch's thousand of them cost a thousand observations, each with its lock.
2. On registries. Each app has its own registry, not prometheus_client's global one, so
   tests and several apps in one process do not share numbers.
3. On sharing. With ``FEED_WORKERS`` above 1 the workers share a port, so one scrape
   reaches one worker, and it answers for all of them, through prometheus_client's
   multiprocess mode. The supervisor (server.py, on the workers' metrics) makes a
   fresh directory for each run and names it in ``PROMETHEUS_MULTIPROC_DIR`` for its
   workers only; one inherited from the environment is never used (cli.py drops it),
   since its files could hold another program's numbers, which a scrape would add in.
   Each worker keeps its counters and histograms in files there, and a scrape adds up
   every worker's files, those of dead workers too, so totals never go back. The hub's
   numbers (1) only the worker itself knows, so every ``SHARE_INTERVAL`` seconds, and
   once more when it answers a scrape, each worker copies its share into gauges there:
   open streams are summed over the workers, the oldest stream's age and the largest
   backlog are the largest any worker has, and ``feed_broker_connected`` is 1 only if
   every worker is connected. The supervisor removes a dead worker's share before
   starting its replacement, so its streams stop counting. Events delivered, slow
   streams dropped and broker reconnects stay counters: each copy adds what grew since
   the last one, so what a killed worker did after its last copy is missing from the
   totals. A kind of stream (channel and format) that no worker holds any more is left
   out, as in one process. Presence, which users see, is summed across workers through
   the broker instead (presence.py).
4. On private channels. ``/metrics`` needs no credential, so private channels are not
   named in it: their streams are counted under the channel label ``(private)``. Which
   channels are private comes from the channel map, which learns it from the log
   before the hub sees the change (access.py, on privacy learnt from the log).
5. On the process's own numbers. The process's own numbers (process.py) are shared by
   each worker with its share (3): files, limits and memory are summed over the live
   workers, CPU time and collections are counters (a dead worker's stay in the
   totals), and ``feed_workers`` says how many were summed. A sum of files over a sum
   of limits hides one worker at its limit beside an idle one, so
   ``feed_open_files_ratio`` is the ratio of the worker nearest its own limit: that is
   the number to alert on.
6. On ``_created`` series. No ``*_created`` series: prometheus_client adds one to every
   counter and histogram (when it was made), doubling their series for a time
   Prometheus reads from counter resets anyway. Its switch is for the whole process,
   which feed's metrics are alone in; the workers' merged files (3) never had them.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import logging
import os
import shutil
import struct
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    values,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

from feed import logs, tasks
from feed.brokers import BrokerStatus
from feed.census import HubStats
from feed.process import COLLECTIONS, PROCESS_FIGURES, ProcessNumbers
from feed.values import Commit

logger = logging.getLogger("feed.metrics")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
PRIVATE_LABEL = "(private)"
REPLAY_BUCKETS = (0, 1, 5, 10, 50, 100, 250, 500, 1000)
SECONDS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)

# prometheus_client's switch to multiprocess mode (3), read when it is first imported.
SHARED_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"

# Seconds between copies of a worker's share (3): how old the other workers' part of
# a scrape may be, against scrapes every 15 s or more. A copy may walk every open
# stream (Hub.stats, at most once a second however often it is asked), a small part of
# a worker's time at the most streams it should hold (docs/deployment.md).
SHARE_INTERVAL = 1.0

# Reads of the workers' files before a scrape gives up (3).
READ_ATTEMPTS = 3

SUBSCRIBERS = "feed_subscribers"
SUBSCRIBERS_HELP = "Open streams by channel (* for every channel) and format"

# How the workers' values of a number add up (3): summed, the largest, 1 only if every
# worker's is 1, or a counter.
Kind = Literal["sum", "max", "all", "counter"]  # process.py's are the same
# The hub's and the broker's other numbers, in the order /metrics shows them.
FIGURES: dict[str, tuple[str, Kind]] = {
    "feed_streams": ("Open streams", "sum"),
    "feed_events_delivered": ("Events written to streams", "counter"),
    "feed_slow_subscribers_dropped": (
        "Streams disconnected because their backlog overflowed",
        "counter",
    ),
    "feed_stream_oldest_age_seconds": ("Age of the oldest open stream", "max"),
    "feed_stream_largest_backlog_bytes": ("Bytes waiting for the slowest open stream", "max"),
    "feed_broker_connected": ("1 if the broker is connected", "all"),
    "feed_broker_reconnects": ("Times the broker connection came back", "counter"),
    # The process's own (5).
    **PROCESS_FIGURES,
}
# An "all" number is kept in the files upside down, as "not_<name>" = 1 - value, and
# the largest of those taken: prometheus_client writes a gauge into its file as 0 the
# moment it is made, and taken as the smallest, that 0 would say "broker lost" while a
# worker is still starting.
NOT = "not_"


@dataclass(frozen=True, slots=True)
class _Reading:
    """What the hub and the broker say now, private channels hidden (4)."""

    subscribers: dict[tuple[str, str], int]  # (channel, format) -> open streams
    figures: dict[str, float]  # by the names in FIGURES
    collections: dict[str, list[float]]  # by the names in COLLECTIONS, then generation


Source = Callable[[], _Reading]


def _read(
    stats: HubStats, broker: BrokerStatus, hidden: frozenset[str], own: ProcessNumbers
) -> _Reading:
    counts: dict[tuple[str, str], int] = {}
    for (channel, fmt), count in stats.by_channel_format.items():
        key = (PRIVATE_LABEL if channel in hidden else channel, fmt)
        counts[key] = counts.get(key, 0) + count
    oldest = 0.0 if stats.oldest_opened_at is None else time.time() - stats.oldest_opened_at
    figures = {
        "feed_streams": stats.subscribers,
        "feed_events_delivered": stats.events_sent,
        "feed_slow_subscribers_dropped": stats.dropped,
        "feed_stream_oldest_age_seconds": oldest,
        "feed_stream_largest_backlog_bytes": stats.largest_backlog_bytes,
        "feed_broker_connected": int(broker.connected),
        "feed_broker_reconnects": broker.reconnects,
        **own.figures(),
    }
    return _Reading(dict(sorted(counts.items())), figures, own.collections())


class _State(Collector):
    """Reads the hub and the broker at scrape time, for a process on its own."""

    def __init__(self, source: Source) -> None:
        self._source = source

    def collect(self) -> Iterator[Metric]:
        now = self._source()
        subscribers = GaugeMetricFamily(SUBSCRIBERS, SUBSCRIBERS_HELP, labels=["channel", "format"])
        for (channel, fmt), count in now.subscribers.items():
            subscribers.add_metric([channel, fmt], count)
        yield subscribers
        for name, (text, kind) in FIGURES.items():
            family = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
            yield family(name, text, value=now.figures[name])
        for name, text in COLLECTIONS.items():
            collected = CounterMetricFamily(name, text, labels=["generation"])
            for generation, value in enumerate(now.collections[name]):
                collected.add_metric([str(generation)], value)
            yield collected


class _WorkerShare:
    """This worker's part of the hub's and the broker's numbers, written where every
    worker's scrape adds it up (3). Its metrics are in no registry: scrapes read the
    files."""

    def __init__(self, source: Source) -> None:
        self._source = source
        self._subscribers = Gauge(
            SUBSCRIBERS,
            SUBSCRIBERS_HELP,
            ["channel", "format"],
            registry=None,
            multiprocess_mode="livesum",
        )
        self._shown: set[tuple[str, str]] = set()
        self._figures = {name: _shared_metric(name, *entry) for name, entry in FIGURES.items()}
        self._collections = {
            name: Counter(name, text, ["generation"], registry=None)
            for name, text in COLLECTIONS.items()
        }
        # What the counters hold already, of this process's totals since start, by
        # name and generation ("" for none).
        self._counted: dict[tuple[str, str], float] = {}

    def copy(self) -> None:
        now = self._source()
        for key, count in now.subscribers.items():
            self._subscribers.labels(*key).set(count)
        # Set to 0, as a label set once written stays in the file; the scrape leaves
        # zeros out (_AllWorkers).
        for key in self._shown - now.subscribers.keys():
            self._subscribers.labels(*key).set(0)
        self._shown = set(now.subscribers)
        for name, metric in self._figures.items():
            value = now.figures[name]
            if isinstance(metric, Counter):
                self._count(metric, (name, ""), value)
            else:
                metric.set(1 - value if FIGURES[name][1] == "all" else value)
        for name, counts in now.collections.items():
            for generation, value in enumerate(counts):
                labelled = self._collections[name].labels(str(generation))
                self._count(labelled, (name, str(generation)), value)

    def _count(self, counter: Counter, key: tuple[str, str], total: float) -> None:
        """Add to ``counter`` what ``total``, counted since start, grew by."""
        counted = self._counted.get(key, 0.0)
        if total > counted:
            counter.inc(total - counted)
            self._counted[key] = total


def _shared_metric(name: str, text: str, kind: Kind) -> Counter | Gauge:
    if kind == "counter":
        return Counter(name, text, registry=None)
    if kind == "all":
        return Gauge(NOT + name, text, registry=None, multiprocess_mode="livemax")
    mode: Literal["livesum", "livemax"] = "livesum" if kind == "sum" else "livemax"
    return Gauge(name, text, registry=None, multiprocess_mode=mode)


class _AllWorkers(Collector):
    """Every worker's numbers, added up from the files in ``path`` (3)."""

    def __init__(self, path: str, refresh: Callable[[], None]) -> None:
        self._path = path
        self._refresh = refresh

    def _merged(self) -> list[Metric]:
        # A worker that is starting has made its file but not yet sized it, and the
        # supervisor may be removing a dead one's: read what is whole, and read again
        # if a file went away or changed under us.
        for attempt in range(READ_ATTEMPTS):
            files = [f for f in glob.glob(os.path.join(self._path, "*.db")) if _size(f) > 0]
            try:
                merged: list[Metric] = MultiProcessCollector.merge(files)  # type: ignore[no-untyped-call]
                return merged
            except (OSError, struct.error):
                if attempt == READ_ATTEMPTS - 1:
                    raise
        return []

    def collect(self) -> Iterator[Metric]:
        self._refresh()
        for metric in self._merged():
            if metric.name == SUBSCRIBERS:
                # Not the kinds of stream no worker holds now, as in one process.
                shown = [s for s in metric.samples if s.value]
                metric.samples = sorted(shown, key=lambda s: sorted(s.labels.items()))
            elif metric.name.startswith(NOT):
                name = metric.name.removeprefix(NOT)
                (sample,) = metric.samples
                metric = GaugeMetricFamily(name, FIGURES[name][0], value=1 - sample.value)
            yield metric


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def shared_dir() -> str | None:
    """The directory this process shares its numbers through, if a supervisor gave it
    one (3)."""
    path = os.environ.get(SHARED_DIR_VARIABLE)
    # Only if prometheus_client found it too: set after the import, it changes nothing.
    return path if path and values.ValueClass is not values.MutexValue else None


@contextlib.contextmanager
def sharing() -> Iterator[str]:
    """A fresh directory for the numbers of the processes started inside, named in the
    environment they inherit (3); removed on the way out."""
    before = os.environ.get(SHARED_DIR_VARIABLE)
    path = tempfile.mkdtemp(prefix="feed-metrics-")
    os.environ[SHARED_DIR_VARIABLE] = path
    try:
        yield path
    finally:
        if before is None:
            os.environ.pop(SHARED_DIR_VARIABLE, None)
        else:
            os.environ[SHARED_DIR_VARIABLE] = before
        shutil.rmtree(path, ignore_errors=True)


def forget(pid: int, path: str) -> None:
    """Stop counting what a dead process held (its open streams and the like); what it
    did stays in the totals."""
    mark_process_dead(pid, path)  # type: ignore[no-untyped-call]


class Lags(Histogram):
    """A histogram that also takes one amount for many events at once (1)."""

    def observe_times(self, amount: float, times: int) -> None:
        """``observe(amount)``, ``times`` times over, in one step."""
        self._raise_if_not_observable()  # type: ignore[no-untyped-call]
        self._sum.inc(amount * times)
        for bucket, bound in zip(self._buckets, self._upper_bounds, strict=True):
            if amount <= bound:
                bucket.inc(times)
                break


class Metrics:
    def __init__(
        self,
        hub: Callable[[], HubStats],
        broker: Callable[[], BrokerStatus],
        private: Callable[[], frozenset[str]],
        shared: str | None = None,
    ) -> None:
        """``private`` names the private channels now, as the gate alone knows them
        (``Access.private_channels``); ``shared`` is the directory of the workers'
        numbers (3), None in a process on its own."""
        # For the whole process (6): idempotent, and nothing else here makes metrics.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry()
        self._own = ProcessNumbers()

        def source() -> _Reading:
            return _read(hub(), broker(), private(), self._own)

        self._share: _WorkerShare | None = None
        self._task: asyncio.Task[None] | None = None
        if shared is None:
            self.registry.register(_State(source))
            self._scraped = self.registry
        else:
            share = self._share = _WorkerShare(source)
            self._scraped = CollectorRegistry()
            self._scraped.register(_AllWorkers(shared, share.copy))
        self.published = Counter(
            "feed_events_published", "Events the relay handed to the hub", registry=self.registry
        )
        self.replayed = Histogram(
            "feed_replay_events",
            "Events replayed to a resuming stream",
            buckets=REPLAY_BUCKETS,
            registry=self.registry,
        )
        self.resyncs = Counter(
            "feed_resyncs", "Resuming streams told to resync instead", registry=self.registry
        )
        self.announce_seconds = Histogram(
            "feed_publish_seconds",
            "From a write request's arrival to its commit being announced to every process",
            buckets=SECONDS_BUCKETS,
            registry=self.registry,
        )
        self.commit_seconds = Histogram(
            "feed_commit_seconds",
            "How long each write's commit took, its sync to disk included",
            buckets=SECONDS_BUCKETS,
            registry=self.registry,
        )
        self.lag_seconds = Lags(
            "feed_delivery_lag_seconds",
            "From an event's commit to this process handing it to its streams",
            buckets=SECONDS_BUCKETS,
            registry=self.registry,
        )

    def committed(self, commit: Commit) -> None:
        """Time this process's commit, as the store announces it (storage/announcements.py)."""
        if commit.took > 0:
            self.commit_seconds.observe(commit.took)

    def announced(self, event_id: int | None) -> None:
        """Time a write that logged ``event_id``, from its request's arrival to now: its
        commit was announced before the store's answer came back."""
        started = logs.request_started.get()
        if event_id is not None and started is not None:
            self.announce_seconds.observe(time.perf_counter() - started)

    def start(self) -> None:
        """Begin timing collections (5), and copying this worker's share (3)."""
        self._own.start()
        if self._share is not None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="feed-metrics")

    async def close(self) -> None:
        self._own.stop()
        await tasks.stop(self._task)
        self._task = None

    async def _run(self) -> None:
        assert self._share is not None
        failing = False
        while True:
            try:
                self._share.copy()
            except Exception:
                # Once per outage, not once a second.
                if not failing:
                    logger.exception("cannot share this worker's metrics")
                failing = True
            else:
                failing = False
            await asyncio.sleep(SHARE_INTERVAL)

    def render(self) -> bytes:
        return generate_latest(self._scraped)
