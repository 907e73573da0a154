"""Monitoring: the Prometheus figures of a real gunicorn on real NATS, and conf/prometheus/alerts.yml
checked and unit-tested by promtool."""

from __future__ import annotations

import re
import shutil
import subprocess
from datetime import UTC, datetime, timedelta

import pytest
import requests

from flexgate_stream.devstack.servers import NatsServer
from flexgate_stream.tick.stream_setup import MIB
from flexgate_stream.timestamps import iso
from tests.contract import checked
from tests.e2e.support import ROOT, NatsClient, SSEClient, WebServer, open_spread
from tests.waiting import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

RULES = ROOT / "conf" / "prometheus" / "alerts.yml"
RULE_TESTS = ROOT / "conf" / "prometheus" / "alerts.test.yml"
CLIENTS = "flexgate_stream_clients_connected{"
WRITTEN = 'flexgate_stream_stored_to_written_seconds_count{stream="metrics"}'
STORED = "flexgate_stream_window_to_stored_seconds_count"


def samples(url: str) -> dict[str, float]:
    """Every sample of a scrape, by its name and labels as written."""
    text = requests.get(url + "/metrics", timeout=10).text
    found = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            found[name] = float(value)
    return found


def test_scrape_reports_store_usage_against_limits_pending_publishers_and_client_limit(web_server, nats_client):
    nats_client.publish_snapshot()
    stream = SSEClient(web_server.url + "/api/stream/metrics")
    try:
        stream.data_events(1)
        # Both workers count once each has started (the second may still be starting when the first answers).
        found = wait_until(lambda: (s := samples(web_server.url)).get(
            'flexgate_stream_consumer_pending{channel="metrics"}') is not None
            and s.get("flexgate_stream_clients_limit") == 2 * 10000 and s, 15,
            "the consumers' lag and both workers' client limits in a scrape")
        assert found["flexgate_stream_jetstream_up"] == 1
        assert found['flexgate_stream_jetstream_stream_bytes{stream="METRICS"}'] > 0
        assert found['flexgate_stream_jetstream_stream_max_bytes{stream="METRICS"}'] == 1024 * MIB
        assert found['flexgate_stream_jetstream_stream_max_bytes{stream="ALERTS"}'] == 100 * MIB
        assert found['flexgate_stream_consumer_pending{channel="metrics"}'] == 0  # each worker is current
        assert found["flexgate_stream_clients_limit"] == 2 * 10000  # two workers, FLEXGATE_MAX_CLIENTS each
        assert found["flexgate_stream_publishers_live"] == 0  # the test publishes without a publisher process
        assert 0 <= found["flexgate_stream_stored_snapshot_age_seconds"] < 60
    finally:
        stream.close()


def test_every_metric_the_alert_rules_use_is_served(web_server, nats_client):
    nats_client.publish_snapshot()
    stream = SSEClient(web_server.url + "/api/stream/metrics")
    try:
        stream.data_events(1)
        used = set(re.findall(r"flexgate_stream_\w+", RULES.read_text()))
        assert len(used) >= 8

        def missing() -> set[str]:
            served = {name.split("{")[0] for name in samples(web_server.url)}
            return used - served

        wait_until(lambda: not missing(), 15, "every metric of alerts.yml in a scrape")
    finally:
        stream.close()


def beat(publisher: str, seen_ago: float, cardinality: dict | None) -> dict:
    """A publisher heartbeat ``seen_ago`` seconds old; without ``cardinality`` as publishers before it wrote it."""
    seen = iso(datetime.now(UTC) - timedelta(seconds=seen_ago))
    found = {"publisher": publisher, "host": "h", "pid": 1, "startedAt": seen, "seenAt": seen, "lastTickAt": seen,
             "lastWindowEnd": seen, "tickMs": 3.0, "tickSeconds": 5.0, "database": "ok"}
    if cardinality is None:
        return found
    return checked("PublisherBeat", {**found, "cardinality": cardinality})[0]


def test_scrape_reports_the_labels_tracked_their_limit_and_the_overflow(tmp_path):
    nats = NatsServer(tmp_path / "nats", log_file=tmp_path / "nats.log").start()
    client = NatsClient(nats.url)
    web = WebServer(nats.url, tmp_path / "web", workers=1).start()
    try:
        client.put_beat(beat("older", 2.0, {"routes": {"labels": 10, "limit": 1000, "overflowRequests": 0},
                                            "upstreams": {"labels": 3, "limit": 200, "overflowRequests": 0}}))
        client.put_beat(beat("newest", 0.5, {"routes": {"labels": 1000, "limit": 1000, "overflowRequests": 4321},
                                             "upstreams": {"labels": 57, "limit": 200, "overflowRequests": 0}}))
        client.put_beat(beat("before-cardinality", 0.0, None))  # the newest beat, but it counts nothing
        client.put_beat(beat("dead", 600.0, {"routes": {"labels": 5, "limit": 9, "overflowRequests": 9}}))
        found = samples(web.url)
        assert found["flexgate_stream_publishers_live"] == 3
        assert found['flexgate_stream_labels{kind="routes"}'] == 1000
        assert found['flexgate_stream_labels{kind="upstreams"}'] == 57
        assert found['flexgate_stream_label_limit{kind="routes"}'] == 1000
        assert found['flexgate_stream_label_limit{kind="upstreams"}'] == 200
        assert found['flexgate_stream_overflow_requests{kind="routes"}'] == 4321
        assert found['flexgate_stream_overflow_requests{kind="upstreams"}'] == 0
        assert found['flexgate_stream_jetstream_stream_max_bytes{stream="METRICS_INDEX"}'] == 256 * MIB
    finally:
        web.stop()
        client.close()
        nats.stop()


@pytest.mark.timeout(60)
def test_alert_rules_pass_promtool_check_and_unit_tests():
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (apt-get install prometheus), so the alert rules are not checked.")
    for args in (["check", "rules", str(RULES)], ["test", "rules", str(RULE_TESTS)]):
        done = subprocess.run([promtool, *args], capture_output=True, text=True, timeout=50)
        assert done.returncode == 0, done.stdout + done.stderr



def open_clients(url: str, count: int) -> list[SSEClient]:
    """``count`` streams on both workers, each past its opening (a heartbeat came), and no other stream open."""
    clients = open_spread(url + "/api/stream/metrics", count)
    # open_spread closes streams to spread them; the server ends those at their next heartbeat.
    wait_until(lambda: sum(v for k, v in samples(url).items() if k.startswith(CLIENTS)) == count, 10,
               f"{count} streams open")
    for client in clients:
        while client.next(include_comments=True).comment is None:
            pass
    return clients


@pytest.mark.timeout(90)
def test_freshness_is_counted_once_per_client_written_and_reported_as_last_minute_quantiles(start_web, tmp_path):
    # A NATS server of its own, empty: every write and every summary the histograms count is this test's.
    nats = NatsServer(tmp_path / "nats").start()
    publisher = NatsClient(nats.url)
    clients: list[SSEClient] = []
    try:
        server = start_web(nats_url=nats.url)
        clients = open_clients(server.url, 4)
        publisher.publish_snapshot()  # a fresh one: it reaches the clients once each worker's consumer follows
        for client in clients:
            client.data_events(1)
        for _ in range(3):
            publisher.publish_snapshot(age=3.0)  # its window ended 3 s before JetStream stored it
            for client in clients:
                client.data_events(1)
        # Every client written counts once (4 x 4); every worker counts each summary once (2 x 4).
        wait_until(lambda: (s := samples(server.url))[WRITTEN] == 16 and s[STORED] == 8, 10,
                   "both workers' histograms to take what they counted")
        found = samples(server.url)
        assert found['flexgate_stream_window_to_stored_seconds_bucket{le="2.5"}'] == 2
        assert found['flexgate_stream_window_to_stored_seconds_bucket{le="5.0"}'] == 8
        assert found['flexgate_stream_stored_to_written_seconds_bucket{le="1.0",stream="metrics"}'] == 16

        seen = {}
        for _attempt in range(50):  # each worker answers for itself
            body = requests.get(server.url + "/api/stream/stats", timeout=5).json()
            seen[body["data"]["clients"]["workerPid"]] = body["data"]["freshness"]
            if len(seen) == 2:
                break
        assert len(seen) == 2
        for freshness in seen.values():
            assert freshness["windowSeconds"] == 60
            window = freshness["windowToStored"]
            assert window["count"] == 4 and window["p50"] == pytest.approx(3.0, rel=0.1)
            assert window["p99"] == pytest.approx(3.0, rel=0.1)
            delivery = freshness["storedToWritten"]
            assert delivery["count"] >= 4 and 0 <= delivery["p50"] <= delivery["p99"] < 1.0
    finally:
        for client in clients:
            client.close()
        publisher.close()
        nats.stop()
