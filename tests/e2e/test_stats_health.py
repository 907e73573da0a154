"""/api/stream/stats, /healthz, /readyz and /metrics through real gunicorn and NATS."""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime

import pytest
import requests

from flexgate_stream.devstack.servers import NatsServer
from flexgate_stream.timestamps import iso
from tests.contract import checked
from tests.e2e.support import NatsClient, SSEClient, open_spread

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


@pytest.fixture(scope="module")
def own_nats(tmp_path_factory):
    """A nats-server of this module's own: the heartbeats written here must not reach other tests' servers."""
    server = NatsServer(tmp_path_factory.mktemp("nats"), log_file=None).start()
    yield server
    server.stop()


def beat(tick_seconds: float) -> dict:
    """A live publisher's heartbeat, written now, saying it ticks every ``tick_seconds``."""
    now = iso(datetime.now(UTC))
    return checked("PublisherBeat", {
        "publisher": f"p-{os.getpid()}", "host": "h", "pid": os.getpid(), "startedAt": now, "seenAt": now,
        "lastTickAt": now, "lastWindowEnd": now, "tickMs": 3.0, "tickSeconds": tick_seconds, "database": "ok",
        "cardinality": {}})[0]


@pytest.mark.parametrize(("own", "beaten", "stale"), [(5, 1, True), (1, 5, False)])
def test_staleness_follows_the_tick_period_the_publishers_beat_not_the_web_tiers_own(own_nats, start_web, own,
                                                                                    beaten, stale):
    client = NatsClient(own_nats.url)
    try:
        web = start_web({"FLEXGATE_TICK_SECONDS": str(own)}, nats_url=own_nats.url, workers=1)
        client.publish_snapshot(age=4)  # stale after three ticks of 1 s, fresh within three of 5 s
        client.put_beat(beat(beaten))  # live for three of its ticks: read at once
        response = requests.get(web.url + "/api/stream/stats", timeout=5)
        data = response.json()["data"]
        assert (data["tickSeconds"], data["stale"]) == (beaten, stale)
        assert response.status_code == (503 if stale else 200)
        client.put_beat(beat(beaten))
        scraped = requests.get(web.url + "/metrics", timeout=10).text  # what FlexgateSnapshotsStale judges by
        assert float(re.search(r"^flexgate_stream_tick_period_seconds (\S+)$", scraped, re.M)[1]) == beaten
    finally:
        client.close()
