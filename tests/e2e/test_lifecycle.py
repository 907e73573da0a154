"""Lifecycle through real gunicorn: NATS restarts, SIGTERM, a worker killed with SIGKILL."""

from __future__ import annotations

import os
import random
import re
import signal
import socket

import pytest
import requests

from flexgate_stream.devstack.servers import NatsServer
from tests.e2e.support import NatsClient, SSEClient, open_spread
from tests.waiting import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

STREAM = "/api/stream/metrics"


def read_resuming(client: SSEClient, url: str, count: int, **kwargs) -> tuple[list[int], SSEClient]:
    """``count`` snapshot ids, reconnecting with Last-Event-ID like EventSource when the stream drops."""
    ids: list[int] = []
    while len(ids) < count:
        try:
            ids.extend(int(e.id) for e in client.data_events(1))
        except (requests.RequestException, StopIteration):
            client.close()
            client = SSEClient(url, headers={"Last-Event-ID": client.last_id}, **kwargs)
            assert client.status == 200
            client.next()
    return ids, client


def next_named(client: SSEClient, name: str) -> dict:
    while True:
        event = client.next()
        if event.event == name:
            return event.json()


def quiet_port() -> int:
    """A free port below the ephemeral range, so retried connects can never connect the socket to itself."""
    for port in random.sample(range(20000, 32000), 200):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port between 20000 and 32000")


@pytest.fixture
def own_nats(tmp_path):
    """A nats-server of this test's own, on a port it keeps across restarts."""
    server = NatsServer(tmp_path / "store", port=quiet_port(), log_file=tmp_path / "nats.log").start()
    yield server
    server.stop()


def test_nats_restart_keeps_streams_open_without_a_gap(own_nats, start_web):
    publisher = NatsClient(own_nats.url)
    try:
        first = publisher.publish_snapshot()
        web = start_web(nats_url=own_nats.url)
        clients = open_spread(web.url + STREAM, 6)
        for client in clients:
            assert int(client.data_events(1)[0].id) == first
        before = [publisher.publish_snapshot() for _ in range(3)]
        for client in clients:
            assert [int(e.id) for e in client.data_events(3)] == before

        own_nats.stop()
        for client in clients:
            assert next_named(client, "status") == {"connected": False}
        down = requests.get(web.url + "/api/stream/stats", timeout=10)
        assert down.status_code == 503 and down.json()["data"]["connected"] is False
        assert requests.get(web.url + "/readyz", timeout=10).status_code == 503

        restarted = NatsServer(own_nats.store_dir, port=own_nats.port).start()
        own_nats.proc = restarted.proc  # so the fixture stops it
        wait_until(lambda: publisher.nc.is_connected, 15, "the test publisher to reconnect")
        after = [publisher.publish_snapshot() for _ in range(3)]
        for client in clients:
            assert next_named(client, "status") == {"connected": True}
            assert [int(e.id) for e in client.data_events(3)] == after
        assert after[0] == before[-1] + 1  # the stream itself kept its sequence: nothing in between was lost
        for client in clients:
            client.close()
    finally:
        publisher.close()


def test_sigterm_ends_every_stream_with_a_last_event_and_exits_within_5_seconds(start_web, nats_client):
    web = start_web()
    nats_client.publish_snapshot()
    clients = open_spread(web.url + STREAM, 8)
    alerts = SSEClient(web.url + "/api/stream/alerts")
    alerts.next()
    for client in clients:
        client.data_events(1)
    seconds = web.stop(signal.SIGTERM)
    assert seconds < 5.0
    retries = set()
    for client in [*clients, alerts]:
        last = next_named(client, "shutdown")
        assert "reason" in last
        with pytest.raises(StopIteration):
            client.next()  # the server ended the stream
    for client in clients:
        retries.add(client.last_retry)
    assert all(250 <= r <= 750 for r in retries)  # FLEXGATE_RETRY_MS=500, jittered by 0.5..1.5
    assert len(retries) > 1


def test_a_reload_ends_the_old_workers_streams_only_once_the_workers_replacing_them_serve(start_web, nats_client):
    web = start_web()
    nats_client.publish_snapshot()
    clients = open_spread(web.url + STREAM, 6)
    for client in clients:
        client.data_events(1)
    old = set(web.worker_pids())
    os.kill(web.pid, signal.SIGHUP)  # gunicorn starts new workers and sends SIGTERM to the old ones at once
    for client in clients:
        assert "reason" in next_named(client, "shutdown")
    # Each old worker waited for the new ones before it ended its streams, so their clients' reconnects are
    # answered at once instead of waiting in the accept queue while the new workers load the app.
    log = web.log_text()
    booted = {int(pid) for pid in re.findall(r"Booting worker with pid: (\d+)", log)} - old
    handed = re.findall(r"web\[(\d+)\]: SIGTERM; workers ([\d, ]+) replacing this one are ready", log)
    assert {int(pid) for pid, _ in handed} == old
    assert all({int(pid) for pid in replacing.split(", ")} == booted for _, replacing in handed)
    again = SSEClient(web.url + STREAM)
    assert again.status == 200 and int(again.worker) in booted
    again.close()
    for client in clients:
        client.close()


def test_killed_worker_clients_resume_with_last_event_id_and_miss_nothing(start_web, nats_client):
    web = start_web()
    nats_client.publish_snapshot()
    url = web.url + STREAM
    clients = open_spread(url, 10)
    for client in clients:
        client.data_events(1)
    victim, before = int(clients[0].worker), set(web.worker_pids())
    web.kill_worker(victim)
    published = [nats_client.publish_snapshot() for _ in range(5)]
    wait_until(lambda: len(web.worker_pids()) == 2 and victim not in web.worker_pids(), 15, "a new worker")
    published += [nats_client.publish_snapshot() for _ in range(5)]
    moved = 0
    for i, client in enumerate(clients):
        was = client.worker
        ids, clients[i] = read_resuming(client, url, len(published))
        assert ids == published
        moved += clients[i] is not client
        assert (clients[i] is not client) == (was == str(victim))
    assert moved >= 1
    for client in clients:
        client.close()
    # A stop while a worker boots makes the others wait for it (handover): let the replacement finish booting.
    (replacement,) = set(web.worker_pids()) - before
    wait_until(lambda: f"bridge[{replacement}]: NATS connected" in web.log_text(), 15, "the new worker to be up")


def test_route_consumer_exists_only_while_someone_reads_the_route(own_nats, start_web):
    publisher = NatsClient(own_nats.url)
    try:
        web = start_web(nats_url=own_nats.url, workers=1)

        def route_consumers() -> int:
            return publisher.run(publisher.js.stream_info("METRICS_ROUTES")).state.consumer_count

        assert route_consumers() == 0
        seq = publisher.publish_snapshot(route="/api/lazy")
        client = SSEClient(web.url + STREAM, params={"route": "/api/lazy"})
        client.next()
        assert int(client.data_events(1)[0].id) == seq  # served by a direct get, before the consumer may exist
        wait_until(lambda: route_consumers() == 1, 10, "one route consumer while the route is read")
        client.close()  # the worker notices at its next heartbeat write
        wait_until(lambda: route_consumers() == 0, 10, "the route consumer to be dropped")
    finally:
        publisher.close()


def test_web_started_before_nats_waits_then_streams(tmp_path, start_web):
    port = quiet_port()
    web = start_web(nats_url=f"nats://127.0.0.1:{port}", workers=1, ready=False)
    assert requests.get(web.url + "/readyz", timeout=5).status_code == 503
    assert requests.get(web.url + "/api/stream/stats", timeout=5).status_code == 503
    client = SSEClient(web.url + STREAM)
    try:
        client.next()
        assert next_named(client, "status") == {"connected": False}
        wait_until(lambda: "NATS is unavailable" in web.log_text(), 10, "the bridge to report NATS unavailable")
        server = NatsServer(tmp_path / "late", port=port).start()
        try:
            publisher = NatsClient(server.url)
            try:
                assert next_named(client, "status") == {"connected": True}
                wait_until(lambda: requests.get(web.url + "/readyz", timeout=5).status_code == 200, 15, "readyz")
                seq = publisher.publish_snapshot()
                assert int(client.data_events(1)[0].id) == seq
                log = web.log_text()  # one line per state change, not one per attempt
                assert log.count("NATS is unavailable") == 1 and log.count("NATS is back") == 1
            finally:
                publisher.close()
        finally:
            server.stop()
    finally:
        client.close()


def test_id_older_than_the_stream_keeps_gives_reset_and_the_newest(own_nats, start_web):
    publisher = NatsClient(own_nats.url)
    try:
        old = [publisher.publish_snapshot() for _ in range(4)]
        publisher.run(publisher.js.purge_stream("METRICS", keep=1))  # the stream now keeps only the newest
        alerts = [publisher.publish_alert() for _ in range(3)]
        publisher.run(publisher.js.purge_stream("ALERTS", keep=2))
        web = start_web(nats_url=own_nats.url, workers=1)
        client = SSEClient(web.url + STREAM, headers={"Last-Event-ID": str(old[0])})
        try:
            client.next()
            assert client.next().event == "reset"
            assert [int(e.id) for e in client.data_events(1)] == [old[-1]]
        finally:
            client.close()
        # Alerts are never skipped silently: a reset, then everything the stream still keeps.
        client = SSEClient(web.url + "/api/stream/alerts", headers={"Last-Event-ID": str(alerts[0] - 1)})
        try:
            client.next()
            assert client.next().event == "reset"
            assert [int(e.id) for e in client.data_events(2)] == alerts[1:]
        finally:
            client.close()
    finally:
        publisher.close()


def test_alerts_resume_while_nats_is_down_waits_and_misses_nothing(own_nats, start_web):
    publisher = NatsClient(own_nats.url)
    try:
        seen = publisher.publish_alert()
        missed = [publisher.publish_alert() for _ in range(3)]
    finally:
        publisher.close()
    own_nats.stop()
    # A worker that has never reached NATS gets a resume request: it must hold the stream, not reset it.
    web = start_web(nats_url=own_nats.url, workers=1, ready=False)
    client = SSEClient(web.url + "/api/stream/alerts", headers={"Last-Event-ID": str(seen)})
    try:
        client.next()
        assert next_named(client, "status") == {"connected": False}
        restarted = NatsServer(own_nats.store_dir, port=own_nats.port).start()
        own_nats.proc = restarted.proc  # so the fixture stops it
        events = []
        while len(events) < len(missed):
            event = client.next()
            assert event.event != "reset", event.data
            if event.event == "message" and event.id:
                events.append(int(event.id))
        assert events == missed
    finally:
        client.close()
