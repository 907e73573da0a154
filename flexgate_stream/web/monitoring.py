"""Prometheus figures about the message bus, read from JetStream when scraped: store usage of our streams
against their limits, live publishers, the stored snapshot's age, and how far the answering worker's
consumers trail their streams. conf/prometheus/alerts.yml turns them into alerts; docs/operations.md
explains them. (No background sampling: a worker asks NATS only while it is being scraped.)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from nats.aio.client import Client as NATS
from nats.js.errors import NotFoundError
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from flexgate_stream import liveness
from flexgate_stream.errors import FlexgateError
from flexgate_stream.fanout import jetstream_api
from flexgate_stream.fanout.feeds import ALERTS, SUMMARY
from flexgate_stream.fanout.hub import StreamHub
from flexgate_stream.messages import ALERTS_STREAM, METRICS_STREAM, ROUTES_STREAM

OUR_STREAMS = (METRICS_STREAM, ROUTES_STREAM, ALERTS_STREAM)
FOLLOWED = (SUMMARY, ALERTS)  # the channels every worker follows for its life

Call = Callable[..., Any]  # StreamService.call: run a JetStream coroutine on the bridge and wait


async def bus_usage(nc: NATS) -> dict[str, Any]:
    """Store figures of our streams and the publishers' liveness, in one trip through the bridge."""
    js = nc.jetstream(timeout=jetstream_api.TIMEOUT)
    streams = {}
    for name in OUR_STREAMS:
        try:
            info = await js.stream_info(name)
        except NotFoundError:
            continue
        streams[name] = {"bytes": info.state.bytes, "maxBytes": info.config.max_bytes,
                         "messages": info.state.messages, "maxMessages": info.config.max_msgs,
                         "replicas": info.config.num_replicas, "lastSeq": info.state.last_seq}
    live = await liveness.read_liveness(js)
    return {"streams": streams, "publishersLive": sum(1 for p in live["publishers"] if p["live"]),
            "storedSnapshotAge": live["snapshotAge"]}


class BusCollector(Collector):
    """Figures read from JetStream when scraped (the same for every worker, so asked once)."""

    def __init__(self, call: Call, hub: StreamHub) -> None:
        self.call = call
        self.hub = hub

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
        yield self._pending(usage["streams"])

    def _pending(self, streams: dict[str, Any]) -> GaugeMetricFamily:
        """Per followed channel: messages its stream holds that this worker's consumer has not delivered."""
        family = GaugeMetricFamily("flexgate_stream_consumer_pending",
                                   "Messages the stream holds that the answering worker's consumer has not delivered.",
                                   labels=["channel"])
        for feed in FOLLOWED:
            channel = self.hub.channels.get(feed.key)
            if channel is not None and feed.stream in streams:
                family.add_metric([feed.key], float(max(0, streams[feed.stream]["lastSeq"] - channel.last_seq)))
        return family
