"""/api/stream/stats, /healthz, /readyz and /metrics through real gunicorn and NATS."""

from __future__ import annotations

import re

import pytest
import requests

from tests.e2e.support import SSEClient, open_spread

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]


def test_stats_is_200_with_the_original_shape_when_fresh(web_server, nats_client):
    seq = nats_client.publish_snapshot()
    streams = [SSEClient(web_server.url + "/api/stream/metrics") for _ in range(4)]
    try:
        for stream in streams:
            stream.next()
        response = requests.get(web_server.url + "/api/stream/stats", timeout=5)
        assert response.status_code == 200
        body = response.json()
        assert body["success"] is True
        data = body["data"]
        assert data["connected"] is True and data["stale"] is False
        assert set(data["metrics"]) == {"name", "subjects", "messages", "bytes", "firstSeq", "lastSeq",
                                        "consumerCount"}
        assert data["metrics"]["name"] == "METRICS" and data["metrics"]["lastSeq"] >= seq
        assert data["alerts"]["name"] == "ALERTS"
        assert 0 <= data["newestSnapshotAge"] < 3
        assert data["clients"]["total"] >= 4  # both workers' streams, from the shared metrics files
    finally:
        for stream in streams:
            stream.close()


def test_stats_is_503_with_the_reason_when_the_newest_snapshot_is_stale(web_server, nats_client):
    nats_client.publish_snapshot(age=10)  # three ticks of 1 s have long passed
    response = requests.get(web_server.url + "/api/stream/stats", timeout=5)
    assert response.status_code == 503
    body = response.json()
    assert body["success"] is False and body["data"]["stale"] is True
    assert "old" in body["error"] and body["data"]["reason"] == body["error"]
    assert body["data"]["metrics"]["name"] == "METRICS"  # the same JSON as when healthy
    nats_client.publish_snapshot()
    assert requests.get(web_server.url + "/api/stream/stats", timeout=5).status_code == 200


def test_healthz_and_readyz(web_server):
    assert requests.get(web_server.url + "/healthz", timeout=5).json() == {"status": "ok"}
    ready = requests.get(web_server.url + "/readyz", timeout=5)
    assert ready.status_code == 200
    body = ready.json()
    assert body["ready"] is True and body["nats"] is True and body["missingStreams"] == []
    assert body["server"] == web_server.pid and body["worker"] in web_server.worker_pids()


def test_metrics_adds_up_both_workers(web_server, nats_client):
    nats_client.publish_snapshot()
    streams = open_spread(web_server.url + "/api/stream/metrics", 10)
    try:
        for stream in streams:
            stream.data_events(1)
        assert len({s.worker for s in streams}) == 2
        text = requests.get(web_server.url + "/metrics", timeout=5).text
        clients = sum(float(v) for v in re.findall(r'^flexgate_stream_clients_connected\{stream="metrics"\} (\S+)$',
                                                   text, re.M))
        assert clients >= 10
        for name in ("flexgate_stream_events_sent_total", "flexgate_stream_snapshots_skipped_total",
                     "flexgate_stream_nats_reconnects_total", "flexgate_stream_newest_snapshot_age_seconds",
                     "flexgate_stream_nats_connected"):
            assert name in text, name
        assert float(re.search(r"^flexgate_stream_nats_connected (\S+)$", text, re.M)[1]) == 1.0
    finally:
        for stream in streams:
            stream.close()
