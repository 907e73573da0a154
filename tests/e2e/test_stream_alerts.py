"""GET /api/stream/alerts and POST /api/events through real gunicorn and NATS."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime

import pytest
import requests

from tests.e2e.support import SSEClient

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]


def now_iso() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def post_event(url: str, body, **kwargs) -> requests.Response:
    data = body if isinstance(body, bytes | str) else json.dumps(body)
    return requests.post(url + "/api/events", data=data, headers={"Content-Type": "application/json"},
                         timeout=5, **kwargs)


def test_alerts_stream_gets_live_alerts_only_and_resumes(web_server, nats_client):
    # History, not sent to a new client without ?since=: an alert the worker already holds when the client comes.
    watcher = SSEClient(web_server.url + "/api/stream/alerts")
    watcher.next()
    history = nats_client.publish_alert("warning")
    assert int(watcher.data_events(1)[0].id) == history  # now in that worker's ring
    for _ in range(50):
        client = SSEClient(web_server.url + "/api/stream/alerts")
        if client.worker == watcher.worker:
            break
        client.close()
    watcher.close()
    try:
        assert client.worker == watcher.worker
        client.next()
        live = [nats_client.publish_alert("critical") for _ in range(3)]
        got = client.data_events(3)
        assert [int(e.id) for e in got] == live
        assert got[0].json()["type"] == "alert"
    finally:
        client.close()
    missed = [nats_client.publish_alert("info") for _ in range(2)]
    again = SSEClient(web_server.url + "/api/stream/alerts", headers={"Last-Event-ID": str(live[-1])})
    try:
        again.next()
        assert [int(e.id) for e in again.data_events(2)] == missed
    finally:
        again.close()


def test_since_replays_history_first_then_live(web_server, nats_client):
    earlier = [nats_client.publish_alert("warning", rule="since-test") for _ in range(2)]
    client = SSEClient(web_server.url + "/api/stream/alerts", params={"since": "1h"})
    try:
        client.next()
        history: list[int] = []  # everything of the last hour (other tests' alerts too), oldest first
        while not history or history[-1] < earlier[-1]:
            event = client.next()
            assert event.event != "reset", f"reset after {len(history)} alerts: {event.data}"
            if event.event == "message":
                history.append(int(event.id))
        assert history[-2:] == earlier
        assert history == sorted(history)
        live = nats_client.publish_alert("critical")
        assert int(client.data_events(1)[0].id) == live
    finally:
        client.close()


def test_since_replay_misses_nothing_while_alerts_outpace_the_ring(web_server, nats_client):
    # More alerts than a worker's ring holds (FLEXGATE_CLIENT_QUEUE, 64), and more arriving while history is
    # read, so the ring moves past where the replay stops: the client must still get every alert, and no reset.
    earlier = [nats_client.publish_alert("warning", rule="ring-test") for _ in range(70)]
    during: list[int] = []

    def publish_more() -> None:
        for _ in range(100):
            during.append(nats_client.publish_alert("info", rule="ring-test"))

    publisher = threading.Thread(target=publish_more)
    client = SSEClient(web_server.url + "/api/stream/alerts", params={"since": "1h"})
    publisher.start()
    try:
        client.next()
        got: list[int] = []
        deadline = time.monotonic() + 40
        while publisher.is_alive() or not got or got[-1] < during[-1]:
            assert time.monotonic() < deadline, f"alerts never came: {sorted(set(earlier + during) - set(got))}"
            # Heartbeats (every second here) come back too: the last alert can arrive before the publisher
            # has its acknowledgement, and the loop must still see the publisher finish after it.
            event = client.next(include_comments=True)
            assert event.event != "reset", f"reset after {len(got)} alerts: {event.data}"
            if event.event == "message" and event.comment is None:
                got.append(int(event.id))
        assert got == sorted(set(got))
        assert set(earlier + during) <= set(got)
    finally:
        publisher.join(30)
        client.close()


def test_gateway_event_is_stored_and_reaches_alert_streams(web_server):
    client = SSEClient(web_server.url + "/api/stream/alerts")
    try:
        client.next()
        body = {"event": "circuit_breaker.opened", "timestamp": now_iso(), "data": {"upstream": "orders"}}
        response = post_event(web_server.url, body)
        assert response.status_code == 202
        stored = response.json()["data"]
        assert stored["subject"] == "alerts.circuit_breaker.opened" and stored["duplicate"] is False
        event = client.data_events(1)[0]
        assert int(event.id) == stored["seq"]
        assert event.json()["event"] == "circuit_breaker.opened"
        assert event.json()["data"] == {"upstream": "orders"}
        again = post_event(web_server.url, body)  # the gateway retried the same delivery
        assert again.status_code == 202 and again.json()["data"]["duplicate"] is True
    finally:
        client.close()


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "JSON object"),
        ({"timestamp": "2026-01-01T00:00:00Z"}, "missing event"),
        ({"event": "rate_limit.exceeded"}, "missing timestamp"),
        ({}, "missing event and timestamp"),
        ({"event": "Bad Event!", "timestamp": "2026-01-01T00:00:00Z"}, "event must be"),
        ({"event": "rate_limit.exceeded", "timestamp": "yesterday"}, "timestamp must be"),
        ({"event": "rate_limit.exceeded", "timestamp": "2026-01-01T00:00:00"}, "time zone"),
        ({"event": "rate_limit.exceeded", "timestamp": "2026-01-01T00:00:00Z", "data": [1]}, "data must be"),
    ],
)
def test_bad_events_are_400_json_saying_what(web_server, body, says):
    response = post_event(web_server.url, body)
    assert response.status_code == 400
    assert response.json()["success"] is False
    assert says in response.json()["error"]


def test_oversized_event_is_413(web_server):
    body = {"event": "rate_limit.exceeded", "timestamp": now_iso(), "data": {"blob": "x" * 70_000}}
    response = post_event(web_server.url, body)
    assert response.status_code == 413
    assert response.json()["success"] is False


@pytest.mark.parametrize("value", ["1y", "abc", "-5m", "8d", ""])
def test_bad_since_is_400_json(web_server, value):
    response = requests.get(web_server.url + "/api/stream/alerts", params={"since": value}, timeout=5)
    assert response.status_code == 400
    assert "since" in response.json()["error"]


def test_unknown_path_and_wrong_method_are_json(web_server):
    missing = requests.get(web_server.url + "/api/nothing-here", timeout=5)
    assert missing.status_code == 404 and missing.json()["success"] is False
    wrong = requests.get(web_server.url + "/api/events", timeout=5)
    assert wrong.status_code == 405 and "POST" in wrong.json()["error"]
    assert requests.delete(web_server.url + "/api/stream/metrics", timeout=5).status_code == 405
