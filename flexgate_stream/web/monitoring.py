"""Prometheus figures about the message bus: JetStream store usage of our streams, live publishers,
the stored snapshot's age (read at scrape time), and how far each worker's consumers trail their stream
(sampled in every worker). conf/prometheus/alerts.yml turns them into alerts; docs/operations.md explains them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

from nats.aio.client import Client as NATS
from nats.js.errors import NotFoundError
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from flexgate_stream import jetstream, liveness
from flexgate_stream.errors import FlexgateError
from flexgate_stream.feeds import ALERTS, SUMMARY
from flexgate_stream.hub import StreamHub
from flexgate_stream.messages import ALERTS_STREAM, METRICS_STREAM, ROUTES_STREAM

log = logging.getLogger(__name__)

OUR_STREAMS = (METRICS_STREAM, ROUTES_STREAM, ALERTS_STREAM)
PENDING_SECONDS = 5.0  # how often each worker samples its consumers' lag

Call = Callable[..., Any]  # StreamService.call: run a JetStream coroutine on the bridge and wait


async def bus_usage(nc: NATS) -> dict:
    """Store figures of our streams and the publishers' liveness, in one trip through the bridge."""
    js = nc.jetstream(timeout=jetstream.TIMEOUT)
    streams = {}
    for name in OUR_STREAMS:
        try:
            info = await js.stream_info(name)
        except NotFoundError:
            continue
        streams[name] = {"bytes": info.state.bytes, "maxBytes": info.config.max_bytes,
                         "messages": info.state.messages, "maxMessages": info.config.max_msgs,
                         "replicas": info.config.num_replicas}
    live = await liveness.read_liveness(js)
    return {"streams": streams, "publishersLive": sum(1 for p in live["publishers"] if p["live"]),
            "storedSnapshotAge": live["snapshotAge"]}


class BusCollector(Collector):
    """Figures read from JetStream when scraped (the same for every worker, so asked once)."""

    def __init__(self, call: Call) -> None:
        self.call = call

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            usage = self.call(bus_usage)
        except FlexgateError:
            yield GaugeMetricFamily("flexgate_stream_jetstream_up", "1 when JetStream answered this scrape.", value=0)
            return
        yield GaugeMetricFamily("flexgate_stream_jetstream_up", "1 when JetStream answered this scrape.", value=1)
        families = {
            "bytes": GaugeMetricFamily("flexgate_stream_jetstream_stream_bytes", "Bytes stored in the stream.",
                                       labels=["stream"]),
            "maxBytes": GaugeMetricFamily("flexgate_stream_jetstream_stream_max_bytes",
                                          "The stream's max_bytes limit (-1: none).", labels=["stream"]),
            "messages": GaugeMetricFamily("flexgate_stream_jetstream_stream_messages", "Messages in the stream.",
                                          labels=["stream"]),
            "maxMessages": GaugeMetricFamily("flexgate_stream_jetstream_stream_max_messages",
                                             "The stream's max_msgs limit (-1: none).", labels=["stream"]),
            "replicas": GaugeMetricFamily("flexgate_stream_jetstream_stream_replicas", "The stream's replicas.",
                                          labels=["stream"]),
        }
        for name, figures in usage["streams"].items():
            for key, family in families.items():
                family.add_metric([name], float(figures[key] if figures[key] is not None else -1))
        yield from families.values()
        yield GaugeMetricFamily("flexgate_stream_publishers_live",
                                "Publishers whose heartbeat is fresher than three ticks.",
                                value=usage["publishersLive"])
        age = usage["storedSnapshotAge"]
        yield GaugeMetricFamily("flexgate_stream_stored_snapshot_age_seconds",
                                "Age of the newest summary snapshot stored in JetStream (NaN when none).",
                                value=float("nan") if age is None else age)


def sample_pending(hub: StreamHub, call: Call, gauge: Any) -> None:
    """Set ``gauge`` per shared channel: messages the stream holds that this worker's consumer has not delivered."""
    for feed in (SUMMARY, ALERTS):
        channel = hub.channels.get(feed.key)
        if channel is None:
            continue
        try:
            kept = call(jetstream.bounds, feed.stream)
        except FlexgateError:
            return  # NATS is away: flexgate_stream_nats_connected says so
        gauge.labels(feed.key).set(max(0, kept.last - channel.last_seq))


def watch_pending(hub: StreamHub, call: Call, gauge: Any) -> None:
    """Sample the consumers' lag every PENDING_SECONDS in this (gevent) worker, for its life."""
    import gevent

    def loop() -> None:
        gevent.sleep(PENDING_SECONDS)  # not while the worker starts and its consumers are being made
        while not hub.closing:
            try:
                sample_pending(hub, call, gauge)
            except Exception:  # the sampling loop's boundary: a failed sample must not end it
                log.warning("metrics: sampling consumer lag failed", exc_info=True)
            gevent.sleep(PENDING_SECONDS)

    gevent.spawn(loop)
