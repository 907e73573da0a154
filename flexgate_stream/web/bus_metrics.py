"""The message bus's figures, read from JetStream when ``GET /metrics`` is scraped (``BusCollector``).

Store usage of our streams against their limits, live publishers and their last tick's duration, the stored
snapshot's age and the tick period it is judged by (the live publishers', liveness.tick_period), how far the
answering worker's consumers trail their streams, and the route and upstream labels the newest live publisher
tracks. No background sampling: a worker asks NATS only while it is scraped, and asks once per scrape.
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
from flexgate_stream.messages import ALERTS_STREAM, INDEX_STREAM, METRICS_STREAM, ROUTES_STREAM, Cardinality

OUR_STREAMS = (METRICS_STREAM, ROUTES_STREAM, INDEX_STREAM, ALERTS_STREAM)
FOLLOWED = (SUMMARY, ALERTS)  # the channels every worker follows for its life

Call = Callable[..., Any]  # StreamService.call: run a JetStream coroutine on the bridge and wait


async def bus_usage(nc: NATS, fallback_period: float) -> dict[str, Any]:
    """Store figures of our streams and the publishers' liveness, in one trip through the bridge
    (``fallback_period``: the tick period when no live publisher reports one)."""
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
    took = {str(p["beat"]["publisher"]): tick_ms / 1000 for p in live["publishers"]
            if p["live"] and (tick_ms := p["beat"].get("tickMs")) is not None}
    return {"streams": streams, "publishersLive": sum(1 for p in live["publishers"] if p["live"]),
            "storedSnapshotAge": live["snapshotAge"], "tickDurations": took,
            "tickPeriod": liveness.tick_period(live, fallback_period), "cardinality": newest_cardinality(live)}


def newest_cardinality(live: liveness.Liveness) -> dict[str, Cardinality]:
    """The labels counted by the live publisher that beat last (publishers too old to count them are skipped)."""
    counted = [p for p in live["publishers"] if p["live"] and isinstance(p["beat"].get("cardinality"), dict)]
    if not counted:
        return {}
    return min(counted, key=lambda p: p["age"])["beat"]["cardinality"]


class BusCollector(Collector):
    """Figures read from JetStream when scraped (the same for every worker, so asked once)."""

    def __init__(self, call: Call, hub: StreamHub, fallback_period: float) -> None:
        self.call = call
        self.hub = hub
        self.fallback_period = fallback_period  # FLEXGATE_TICK_SECONDS: the period while no live publisher says

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            usage = self.call(bus_usage, self.fallback_period)
        except FlexgateError:
            yield GaugeMetricFamily("flexgate_stream_jetstream_up", "1 when JetStream answered this scrape.", value=0)
            yield _period(self.fallback_period)
            return
        yield GaugeMetricFamily("flexgate_stream_jetstream_up", "1 when JetStream answered this scrape.", value=1)
        yield _period(usage["tickPeriod"])
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
        ticks = GaugeMetricFamily("flexgate_stream_publisher_tick_seconds", "How long each live publisher's last "
                                  "tick took (aggregation and publishing).", labels=["publisher"])
        for publisher, seconds in usage["tickDurations"].items():
            ticks.add_metric([publisher], seconds)
        yield ticks
        age = usage["storedSnapshotAge"]
        yield GaugeMetricFamily("flexgate_stream_stored_snapshot_age_seconds",
                                "Age of the newest summary snapshot stored in JetStream (NaN when none).",
                                value=float("nan") if age is None else age)
        yield self._pending(usage["streams"])
        yield from _cardinality(usage["cardinality"])

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


def _period(seconds: float) -> GaugeMetricFamily:
    """The tick period snapshot ages are judged by: three of them and a snapshot is stale."""
    return GaugeMetricFamily("flexgate_stream_tick_period_seconds", "The publishers' tick period (the longest a "
                             "live publisher reports; FLEXGATE_TICK_SECONDS while none does): snapshots older than "
                             "three are stale.", value=seconds)


CARDINALITY = (
    ("labels", "flexgate_stream_labels", "Distinct route or upstream labels tracked over the last 24 h (overflow not "
     "counted), as the newest live publisher counts them."),
    ("limit", "flexgate_stream_label_limit", "The most labels tracked per kind (FLEXGATE_MAX_ROUTES, "
     "FLEXGATE_MAX_UPSTREAMS)."),
    ("overflowRequests", "flexgate_stream_overflow_requests", "Requests of the last 24 h counted under the overflow "
     "label because their route or upstream came after the limit."),
)


def _cardinality(counts: dict[str, Cardinality]) -> Iterator[GaugeMetricFamily]:
    """One gauge per figure of the publisher's beat, labelled by kind ("routes", "upstreams")."""
    for key, name, text in CARDINALITY:
        family = GaugeMetricFamily(name, text, labels=["kind"])
        for kind, figures in sorted(counts.items()):
            value = figures.get(key) if isinstance(figures, dict) else None
            if isinstance(value, int | float):
                family.add_metric([kind], float(value))
        yield family
