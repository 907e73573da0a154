"""GET /api/stream/metrics through real gunicorn (2 workers) and real NATS: fan-out, order, resume."""

from __future__ import annotations

import http.client
import json
import re

import pytest
import requests

from tests.e2e.support import SSEClient, open_spread

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]


def test_fifty_clients_on_both_workers_each_receive_all_twenty_snapshots_in_order(web_server, nats_client):
    nats_client.publish_snapshot()  # so every client starts with the same newest snapshot
    clients = open_spread(web_server.url + "/api/stream/metrics", 50)
    try:
        assert len({c.worker for c in clients}) == 2, "the clients should be spread over both workers"
        newest = [c.data_events(1)[0].id for c in clients]
        assert len(set(newest)) == 1
        published = [nats_client.publish_snapshot() for _ in range(20)]
        for client in clients:
            got = client.data_events(20)
            assert [int(e.id) for e in got] == published
            assert [e.json()["summary"]["totalRequests"] for e in got] == sorted(
                e.json()["summary"]["totalRequests"] for e in got)
    finally:
        for client in clients:
            client.close()


def test_stream_headers_hello_and_retry_hint(web_server):
    client = SSEClient(web_server.url + "/api/stream/metrics")
    try:
        assert client.response.headers["Content-Type"].startswith("text/event-stream")
        assert client.response.headers["Cache-Control"] == "no-cache"
        assert client.response.headers["X-Accel-Buffering"] == "no"
        hello = client.next()
        assert set(hello.json()) == {"type", "clientId"}
        assert hello.retry == 500
        assert hello.id is None
    finally:
        client.close()


def test_new_client_gets_the_newest_snapshot_at_once_and_never_the_backlog(web_server, nats_client):
    for _ in range(5):
        newest = nats_client.publish_snapshot()
    client = SSEClient(web_server.url + "/api/stream/metrics")
    try:
        client.next()
        first = client.data_events(1)[0]
        assert int(first.id) == newest
        # Nothing older follows: the next data event is the next snapshot published.
        following = nats_client.publish_snapshot()
        assert int(client.data_events(1)[0].id) == following
    finally:
        client.close()


def test_heartbeat_comment_arrives_on_an_idle_stream(web_server):
    client = SSEClient(web_server.url + "/api/stream/metrics")
    try:
        frames = [client.next(include_comments=True) for _ in range(3)]  # hello, newest snapshot, then idle
        assert frames[-1].comment == "heartbeat"
    finally:
        client.close()


@pytest.mark.parametrize("how", ["header", "query"])
def test_resume_after_disconnect_misses_nothing(web_server, nats_client, how):
    seen = nats_client.publish_snapshot()
    client = SSEClient(web_server.url + "/api/stream/metrics")
    client.next()
    last_seen = client.data_events(1)[0].id
    assert int(last_seen) == seen
    client.close()
    missed = [nats_client.publish_snapshot() for _ in range(3)]
    resume = {"headers": {"Last-Event-ID": last_seen}} if how == "header" else {"params": {"lastEventId": last_seen}}
    again = SSEClient(web_server.url + "/api/stream/metrics", **resume)
    try:
        again.next()
        replayed = again.data_events(3)
        assert [int(e.id) for e in replayed] == missed
        later = nats_client.publish_snapshot()
        assert int(again.data_events(1)[0].id) == later  # live again, no duplicate, no gap
    finally:
        again.close()


def test_header_wins_over_the_query_parameter(web_server, nats_client):
    first = nats_client.publish_snapshot()
    second = nats_client.publish_snapshot()
    client = SSEClient(web_server.url + "/api/stream/metrics", headers={"Last-Event-ID": str(first)},
                       params={"lastEventId": "1"})
    try:
        client.next()
        assert int(client.data_events(1)[0].id) == second
    finally:
        client.close()


def test_per_route_stream_and_its_resume(web_server, nats_client):
    route = "/api/orders/e2e-route"
    other = nats_client.publish_snapshot(route="/api/other")
    seqs = [nats_client.publish_snapshot(route=route) for _ in range(2)]
    client = SSEClient(web_server.url + "/api/stream/metrics", params={"route": route})
    try:
        client.next()
        newest = client.data_events(1)[0]
        assert int(newest.id) == seqs[-1]
        assert newest.json()["route"] == route
        nats_client.publish_snapshot(route="/api/other")
        live = nats_client.publish_snapshot(route=route)
        got = client.data_events(1)[0]
        assert int(got.id) == live and got.json()["route"] == route
    finally:
        client.close()
    missed = [nats_client.publish_snapshot(route=route) for _ in range(2)]
    again = SSEClient(web_server.url + "/api/stream/metrics", params={"route": route, "lastEventId": str(live)})
    try:
        again.next()
        assert [int(e.id) for e in again.data_events(2)] == missed
    finally:
        again.close()
    assert other not in missed


def test_id_newer_than_the_stream_gives_reset_and_the_newest(web_server, nats_client):
    newest = nats_client.publish_snapshot()
    client = SSEClient(web_server.url + "/api/stream/metrics", params={"lastEventId": str(10**12)})
    try:
        client.next()
        reset = client.next()
        assert reset.event == "reset"
        assert "reason" in reset.json()
        assert int(client.data_events(1)[0].id) == newest
    finally:
        client.close()


@pytest.mark.parametrize("value", ["abc", "-1", "1.5", "12abc", "9" * 25])
def test_malformed_last_event_id_is_400_json(web_server, value):
    for kwargs in ({"params": {"lastEventId": value}}, {"headers": {"Last-Event-ID": value}}):
        response = requests.get(web_server.url + "/api/stream/metrics", timeout=5, **kwargs)
        assert response.status_code == 400
        body = response.json()
        assert body["success"] is False
        assert "sequence number" in body["error"] and value[:10] in body["error"]


@pytest.mark.parametrize("value", ["", "a b", "x" * 300, "bad\tname"])
def test_malformed_route_is_400_json(web_server, value):
    response = requests.get(web_server.url + "/api/stream/metrics", params={"route": value}, timeout=5)
    assert response.status_code == 400
    assert response.json() == {"success": False, "error": json.loads(response.text)["error"]}
    assert "route" in response.json()["error"]


def test_live_snapshot_for_clients_without_sse(web_server, nats_client):
    seq = nats_client.publish_snapshot()
    response = requests.get(web_server.url + "/api/metrics/live", timeout=5)
    assert response.status_code == 200
    body = response.json()
    assert body["success"] is True and body["data"]["type"] == "metrics"
    stream = SSEClient(web_server.url + "/api/stream/metrics")
    try:
        stream.next()
        assert stream.data_events(1)[0].json() == body["data"]
        assert seq
    finally:
        stream.close()


def test_a_stream_is_logged_once_when_it_ends_with_every_byte_it_sent(start_web, nats_client):
    """Snapshots the worker writes straight to a waiting stream's socket count in its access log line."""
    web = start_web(workers=1)
    nats_client.publish_snapshot()
    conn = http.client.HTTPConnection("127.0.0.1", web.port, timeout=10)
    conn.request("GET", "/api/stream/metrics", headers={"User-Agent": "bytes-probe", "Accept": "text/event-stream"})
    response = conn.getresponse()
    body = b""
    published = [nats_client.publish_snapshot() for _ in range(3)]
    while f"id: {published[-1]}\n".encode() not in body:
        body += response.read1(65536)
    web.stop()  # SIGTERM: the stream gets its last frame and ends
    body += response.read()
    conn.close()
    assert body.endswith(b'data: {"reason":"the server is restarting"}\n\n')
    lines = [line for line in web.log_text().splitlines() if "bytes-probe" in line]
    assert len(lines) == 1, lines
    logged = re.search(r'"GET /api/stream/metrics HTTP/1.1" 200 (\d+) ', lines[0])
    assert logged is not None and int(logged.group(1)) == len(body)
