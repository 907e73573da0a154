"""The freshness histograms: weighted counts as Prometheus would hold them, and what one frame adds to them."""

from __future__ import annotations

import json
import socket
import time
from datetime import UTC, datetime

import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from flexgate_stream.fanout import feeds
from flexgate_stream.fanout.delays import BUCKETS, DelayTally
from flexgate_stream.fanout.hub import StreamHub
from flexgate_stream.settings import Settings
from flexgate_stream.timestamps import iso
from flexgate_stream.web.prometheus import WebMetrics, add_counts

pytestmark = pytest.mark.timeout(10)


def exposition(registry: CollectorRegistry) -> str:
    return "\n".join(line for line in generate_latest(registry).decode().splitlines() if "_created" not in line)


def scraped(metrics: WebMetrics) -> dict[str, float]:
    found = {}
    for line in metrics.render().decode().splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            found[name] = float(value)
    return found


def test_counts_added_at_once_read_as_the_same_number_of_observations():
    delays = [0.003, 0.003, 0.04, 0.04, 0.04, 0.7, 7.0, 99.0]
    observed, added = CollectorRegistry(), CollectorRegistry()
    one = Histogram("d_seconds", "d", buckets=BUCKETS, registry=observed)
    for delay in delays:
        one.observe(delay)
    tally = DelayTally()
    for delay in delays:
        tally.add(delay, 1, time.time())
    add_counts(Histogram("d_seconds", "d", buckets=BUCKETS, registry=added), tally.take())
    assert exposition(added) == exposition(observed)


def test_one_pass_to_three_clients_counts_three_writes_and_a_summary_its_window_to_stored_delay():
    metrics = WebMetrics(Settings())
    hub = StreamHub(8, 10)
    channel, _ = hub.channel(feeds.SUMMARY.key, feeds.SUMMARY.policy)
    channel.on_delivered = lambda frame, count: metrics.delivered(feeds.SUMMARY.label, True, frame, count)
    channel.written = metrics.written[feeds.SUMMARY.label]
    pairs = [socket.socketpair() for _ in range(3)]
    for ours, _theirs in pairs:
        ours.setblocking(False)
        sub = hub.attach(channel, channel.next_index)
        sub.writer.own(ours)
        sub.rest(None, lambda: None)
    stored = time.time() - 0.4
    window_end = iso(datetime.fromtimestamp(stored - 2.0, UTC), timespec="microseconds")
    channel.publish(1, json.dumps({"windowEnd": window_end}).encode(), stored)
    assert all(theirs.recv(1000).endswith(b"\r\n") for _ours, theirs in pairs)  # written in the one pass
    found = scraped(metrics)
    assert found['flexgate_stream_stored_to_written_seconds_count{stream="metrics"}'] == 3
    assert found['flexgate_stream_stored_to_written_seconds_sum{stream="metrics"}'] == pytest.approx(1.2, abs=0.3)
    assert found['flexgate_stream_stored_to_written_seconds_bucket{le="0.5",stream="metrics"}'] == 3
    assert found['flexgate_stream_stored_to_written_seconds_bucket{le="0.25",stream="metrics"}'] == 0
    assert found["flexgate_stream_window_to_stored_seconds_count"] == 1
    assert found["flexgate_stream_window_to_stored_seconds_sum"] == pytest.approx(2.0, abs=0.01)
    assert found['flexgate_stream_events_sent_total{stream="metrics"}'] == 3
    freshness = metrics.freshness()
    assert freshness["storedToWritten"]["count"] == 3
    assert freshness["storedToWritten"]["p50"] == pytest.approx(0.4, rel=0.2)
    window = freshness["windowToStored"]
    assert window["count"] == 1 and window["p99"] == pytest.approx(2.0, rel=0.1)
    for ours, theirs in pairs:
        ours.close()
        theirs.close()


def test_every_feed_label_has_its_series_before_anything_happens():
    found = scraped(WebMetrics(Settings()))
    for label in ("metrics", "route", "alerts"):
        assert found[f'flexgate_stream_resets_total{{stream="{label}"}}'] == 0
        assert found[f'flexgate_stream_events_sent_total{{stream="{label}"}}'] == 0
        assert found[f'flexgate_stream_clients_connected{{stream="{label}"}}'] == 0
        assert found[f'flexgate_stream_stored_to_written_seconds_count{{stream="{label}"}}'] == 0
