"""The numbers behind ``/metrics`` (served by health.py), in Prometheus' text format.

Rationale:

1. Nothing on the fan-out path touches a metric. Per-stream numbers (open streams
   by channel and format, events written, slow streams dropped) are read from the
   hub when Prometheus scrapes (``Hub.stats``); only once-per-event or
   once-per-request places (the relay, a replay, a write) update counters.
2. Each app has its own registry, not prometheus_client's global one, so tests
   and several apps in one process do not share numbers.
3. With ``FEED_WORKERS`` above 1 the workers share a port, so one scrape reaches one
   worker. Every sample carries no worker label; run one process per port (or a
   sidecar per worker) to scrape them all. Presence, which users see, is summed
   across workers through the broker instead (presence.py).
4. ``/metrics`` needs no credential, so private channels are not named in it: their
   streams are counted under the channel label ``(private)``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from feed.brokers import BrokerStatus
from feed.events import HubStats

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
PRIVATE_LABEL = "(private)"
REPLAY_BUCKETS = (0, 1, 5, 10, 50, 100, 250, 500, 1000)
SECONDS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)


class _State(Collector):
    """Reads the hub and the broker at scrape time."""

    def __init__(
        self,
        hub: Callable[[], HubStats],
        broker: Callable[[], BrokerStatus],
        private: Callable[[], frozenset[str]],
    ) -> None:
        self._hub = hub
        self._broker = broker
        self._private = private

    def collect(self) -> Iterator[Metric]:
        stats = self._hub()
        subscribers = GaugeMetricFamily(
            "feed_subscribers",
            "Open streams by channel (* for every channel) and format",
            labels=["channel", "format"],
        )
        hidden = self._private()
        counts: dict[tuple[str, str], int] = {}
        for (channel, fmt), count in stats.by_channel_format.items():
            key = (PRIVATE_LABEL if channel in hidden else channel, fmt)
            counts[key] = counts.get(key, 0) + count
        for (channel, fmt), count in sorted(counts.items()):
            subscribers.add_metric([channel, fmt], count)
        yield subscribers
        yield GaugeMetricFamily("feed_streams", "Open streams", value=stats.subscribers)
        yield CounterMetricFamily(
            "feed_events_delivered", "Events written to streams", value=stats.events_sent
        )
        yield CounterMetricFamily(
            "feed_slow_subscribers_dropped",
            "Streams disconnected because their backlog overflowed",
            value=stats.dropped,
        )
        oldest = 0.0 if stats.oldest_opened_at is None else time.time() - stats.oldest_opened_at
        yield GaugeMetricFamily(
            "feed_stream_oldest_age_seconds", "Age of the oldest open stream", value=oldest
        )
        yield GaugeMetricFamily(
            "feed_stream_largest_backlog_bytes",
            "Bytes waiting for the slowest open stream",
            value=stats.largest_backlog_bytes,
        )
        broker = self._broker()
        yield GaugeMetricFamily(
            "feed_broker_connected", "1 if the broker is connected", value=int(broker.connected)
        )
        yield CounterMetricFamily(
            "feed_broker_reconnects",
            "Times the broker connection came back",
            value=broker.reconnects,
        )


class Metrics:
    def __init__(
        self,
        hub: Callable[[], HubStats],
        broker: Callable[[], BrokerStatus],
        private: Callable[[], frozenset[str]] = frozenset,
    ) -> None:
        """``private`` names the private channels now (kept by watch.Watch)."""
        self.registry = CollectorRegistry()
        self.registry.register(_State(hub, broker, private))
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
        self.publish_seconds = Histogram(
            "feed_publish_seconds",
            "From a write request's arrival to its commit being hinted to every process",
            buckets=SECONDS_BUCKETS,
            registry=self.registry,
        )
        self.lag_seconds = Histogram(
            "feed_delivery_lag_seconds",
            "From an event's commit to this process handing it to its streams",
            buckets=SECONDS_BUCKETS,
            registry=self.registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
