"""Prometheus metrics of the web tier, correct across gunicorn workers.

Under gunicorn every worker writes its values to PROMETHEUS_MULTIPROC_DIR (conf/gunicorn.conf.py
sets it up and marks dead workers), and ``GET /metrics`` merges all workers' files, whichever worker
answers. Without that directory (a single process) the app's own registry is used.

Freshness is two histograms: window end -> summary snapshot stored in JetStream (each worker observes every
summary it receives, so counts are x workers while quantiles hold), and stored -> written to a client (one count
per client). The fan-out tallies them without Prometheus calls (fanout.delays); ``flush`` hands the tallies over,
at most every FLUSH_SECONDS and at each scrape.

The message bus's figures are read from JetStream when scraped (web.bus_metrics). conf/prometheus/alerts.yml
turns the figures of both into alerts; docs/operations.md explains them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import gevent
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from flexgate_stream.fanout.channel import Channel, Frame
from flexgate_stream.fanout.delays import BUCKETS, WINDOW_SECONDS, DelayTally, last_minute
from flexgate_stream.fanout.feeds import ALERTS, SUMMARY
from flexgate_stream.fanout.hub import StreamHub
from flexgate_stream.liveness import snapshot_age, snapshot_time
from flexgate_stream.settings import Settings

CLIENTS = "flexgate_stream_clients_connected"
SNAPSHOT_LABELS = (SUMMARY.label, "route", "upstream")  # Feed.label: per-route feeds count as "route", etc.
FEED_LABELS = (*SNAPSHOT_LABELS, ALERTS.label)
FLUSH_SECONDS = 0.5  # tallies reach the histograms this late at most (a scrape of the worker flushes at once)


class WebMetrics:
    """The counters and gauges the stream views and the bridge update."""

    def __init__(self, settings: Settings) -> None:
        self.directory = settings.prometheus_multiproc_dir
        self.registry = CollectorRegistry()
        own = None if self.directory else self.registry  # multiprocess values live in files, not a registry
        self.clients = Gauge(CLIENTS, "Open SSE streams.", ["stream"], multiprocess_mode="livesum", registry=own)
        self.events_sent = Counter("flexgate_stream_events_sent", "Messages written to SSE clients.", ["stream"],
                                   registry=own)
        self.snapshots_skipped = Counter("flexgate_stream_snapshots_skipped", "Snapshots slow clients skipped.",
                                         registry=own)
        self.resets = Counter("flexgate_stream_resets", "event: reset frames sent.", ["stream"], registry=own)
        self.reconnects = Counter("flexgate_stream_nats_reconnects", "NATS connections re-established after a loss.",
                                  registry=own)
        self.clients_limit = Gauge("flexgate_stream_clients_limit", "FLEXGATE_MAX_CLIENTS summed over live workers.",
                                   multiprocess_mode="livesum", registry=own)
        self.window_to_stored = Histogram(
            "flexgate_stream_window_to_stored_seconds", "Window end to its summary snapshot stored in JetStream "
            "(observed by every worker for every summary it receives).", buckets=BUCKETS, registry=own)
        self.stored_to_written = Histogram(
            "flexgate_stream_stored_to_written_seconds", "Message stored in JetStream to written to a client "
            "(one count per client).", ["stream"], buckets=BUCKETS, registry=own)
        for label in FEED_LABELS:  # every series exists from the start, so dashboards show 0 rather than nothing
            for family in (self.clients, self.events_sent, self.resets, self.stored_to_written):
                family.labels(label)
        # Each stream's opening updates these: the series looked up once, not on every call (a lock and a tuple).
        self._clients_of = {label: self.clients.labels(label) for label in FEED_LABELS}
        self._sent_of = {label: self.events_sent.labels(label) for label in FEED_LABELS}
        self.stored_tally = DelayTally()
        self.written = {label: DelayTally() for label in FEED_LABELS}
        for tally in (self.stored_tally, *self.written.values()):
            tally.on_pending = self._flush_soon
        self._flush_due = False
        self.max_clients = settings.max_clients
        self._live: Collector | None = None

    def opened(self, label: str) -> None:
        """One more client streams feed ``label``."""
        self._clients_of[label].inc()

    def closed(self, label: str) -> None:
        """One client of feed ``label`` went away."""
        self._clients_of[label].dec()

    def sent(self, label: str, count: int = 1) -> None:
        """``count`` messages written to one client of feed ``label``."""
        self._sent_of[label].inc(count)

    def reset(self, label: str) -> None:
        """One ``event: reset`` sent to a client of feed ``label``."""
        self.resets.labels(label).inc()

    def skipped(self, count: int) -> None:
        """``count`` snapshots a slow client skipped."""
        self.snapshots_skipped.inc(count)

    def delivered(self, label: str, summary: bool, frame: Frame, count: int) -> None:
        """A frame of feed ``label`` arrived and went to ``count`` clients in one pass; for a summary snapshot,
        tally how long after its window ended JetStream stored it."""
        if count:
            self.sent(label, count)
        if summary and frame.stored:
            end = snapshot_time(frame.data)
            if end is not None:
                self.stored_tally.add(frame.stored - end.timestamp(), 1, time.time())

    def freshness(self) -> dict[str, Any]:
        """p50 and p99 over the last minute in this worker: window end -> stored, stored -> written (snapshots)."""
        now = time.time()
        return {"windowToStored": last_minute([self.stored_tally], now),
                "storedToWritten": last_minute([self.written[label] for label in SNAPSHOT_LABELS], now),
                "windowSeconds": WINDOW_SECONDS}

    def flush(self) -> None:
        """Hand what the tallies counted since the last flush to the Prometheus histograms."""
        self._flush_due = False
        add_counts(self.window_to_stored, self.stored_tally.take())
        for label, tally in self.written.items():
            add_counts(self.stored_to_written.labels(label), tally.take())

    def _flush_soon(self) -> None:
        if not self._flush_due:
            self._flush_due = True
            gevent.spawn_later(FLUSH_SECONDS, self.flush)

    def watch(self, hub: StreamHub, summary: Callable[[], Channel | None]) -> None:
        """Report this worker's live figures (snapshot age, NATS state) at scrape time."""
        self._live = _LiveCollector(hub, summary)
        if not self.directory:
            self.registry.register(self._live)
        self.clients_limit.set(self.max_clients)

    def render(self, bus: Collector | None = None) -> bytes:
        """The exposition text of every worker, and ``bus`` (figures asked of JetStream once per scrape)."""
        self.flush()
        extra = CollectorRegistry()
        if bus is not None:
            extra.register(bus)
        if not self.directory:
            return generate_latest(self.registry) + generate_latest(extra)
        from prometheus_client.multiprocess import MultiProcessCollector

        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=self.directory)
        if self._live is not None:
            registry.register(self._live)
        return generate_latest(registry) + generate_latest(extra)

    def total_clients(self) -> int | None:
        """Open streams across all workers, or None when only this process is known."""
        if not self.directory:
            return None
        from prometheus_client.multiprocess import MultiProcessCollector

        for family in MultiProcessCollector(None, path=self.directory).collect():
            if family.name == CLIENTS:
                return int(sum(sample.value for sample in family.samples))
        return 0


def add_counts(histogram: Histogram, taken: tuple[list[int], float] | None) -> None:
    """What ``observe`` does once per event, in one call per bucket: ``taken`` holds a count per bucket (as
    prometheus_client keeps them, not cumulative) and their sum."""
    if taken is None:
        return
    counts, total = taken
    histogram._sum.inc(total)
    for value, count in zip(histogram._buckets, counts, strict=True):
        if count:
            value.inc(count)


class _LiveCollector(Collector):
    """Figures read from this worker's hub when scraped."""

    def __init__(self, hub: StreamHub, summary: Callable[[], Channel | None]) -> None:
        self.hub = hub
        self.summary = summary

    def collect(self) -> Iterator[GaugeMetricFamily]:
        channel = self.summary()
        newest = channel.latest if channel is not None else None
        age = snapshot_age(newest.data) if newest is not None else None
        yield GaugeMetricFamily("flexgate_stream_newest_snapshot_age_seconds",
                                "Age of the newest summary snapshot this worker received (NaN when none).",
                                value=float("nan") if age is None else age)
        yield GaugeMetricFamily("flexgate_stream_nats_connected",
                                "1 when the answering worker's NATS connection is up.",
                                value=1.0 if self.hub.connected else 0.0)
