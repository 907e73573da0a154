"""Bad input at the HTTP edge, through real gunicorn: every answer a JSON 4xx, nothing held, nothing forged."""

from __future__ import annotations

import json
import socket
import time

import pytest
import requests

from tests.e2e.support import SSEClient, WebServer

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

EVENT = {"event": "circuit_breaker.opened", "timestamp": "2026-01-01T00:00:00Z", "data": {}}
JSON = {"Content-Type": "application/json"}


def raw(port: int, data: bytes, timeout: float = 10.0) -> bytes:
    """Send ``data`` as it is and read the answer until the server closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        return read_until_closed(sock)


def read_until_closed(sock: socket.socket) -> bytes:
    answer = b""
    while True:
        try:
            part = sock.recv(65536)
        except ConnectionResetError:
            return answer
        if not part:
            return answer
        answer += part


def split(answer: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, body


def json_error(answer: bytes) -> tuple[int, str]:
    status, headers, body = split(answer)
    assert headers["content-type"].startswith("application/json"), answer[:300]
    doc = json.loads(body)
    assert doc["success"] is False and doc["error"]
    return status, doc["error"]


@pytest.fixture(scope="module")
def strict(nats_server, nats_client, tmp_path_factory):
    """The defaults a new user gets for events (closed without a token), and three route feeds per worker."""
    env = {"FLEXGATE_EVENTS_OPEN": "false", "FLEXGATE_MAX_ROUTE_FEEDS": "3"}
    server = WebServer(nats_server.url, tmp_path_factory.mktemp("strict"), env, workers=1).start()
    yield server
    server.stop()


@pytest.mark.parametrize(("body", "says"), [
    (b'{"event":"a","timestamp":"0001-01-01T00:00:00+01:00"}', "between years 1 and 9999"),
    (b'{"event":"a","timestamp":"9999-12-31T23:59:59-01:00"}', "between years 1 and 9999"),
    (b'{"event":"a","timestamp":"2026-01-01T00:00:00Z","data":{"x":NaN}}', "NaN or Infinity"),
    (b'{"event":"a","timestamp":"2026-01-01T00:00:00Z","data":{"x":Infinity}}', "NaN or Infinity"),
    (b'{"a":' * 10000 + b"1" + b"}" * 10000, "nested too deeply"),
])
def test_events_that_crashed_the_handler_are_400_naming_the_problem(web_server, body, says):
    response = requests.post(web_server.url + "/api/events", data=body, headers=JSON, timeout=10)
    assert response.status_code == 400, response.text[:300]
    assert says in response.json()["error"]
    assert "Traceback" not in web_server.log_text()


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
def test_events_refuse_bodies_not_declared_json(web_server, content_type):
    headers = {"Content-Type": content_type} if content_type else {}
    response = requests.post(web_server.url + "/api/events", data=json.dumps(EVENT), headers=headers, timeout=5)
    assert response.status_code == 415
    assert "application/json" in response.json()["error"]


def test_events_are_closed_without_a_token_by_default(strict):
    # What a cross-site form would send: text/plain, no preflight. And a well-formed JSON post too.
    for headers in ({"Content-Type": "text/plain"}, JSON):
        response = requests.post(strict.url + "/api/events", data=json.dumps(EVENT), headers=headers, timeout=5)
        assert response.status_code == 403
        assert "FLEXGATE_EVENTS_OPEN" in response.json()["error"]


def test_chunked_body_over_64_kib_is_413_like_a_declared_length(web_server):
    doc = json.dumps({**EVENT, "data": {"pad": "x" * 70_000}}).encode()
    chunks = (doc[i:i + 8192] for i in range(0, len(doc), 8192))  # a generator: requests sends it chunked
    response = requests.post(web_server.url + "/api/events", data=chunks, headers=JSON, timeout=10)
    assert response.status_code == 413
    assert "too large" in response.json()["error"]
    small = (part for part in (json.dumps(EVENT).encode(),))
    assert requests.post(web_server.url + "/api/events", data=small, headers=JSON, timeout=10).status_code == 202


@pytest.mark.parametrize("framing", ["length", "chunked"])
def test_a_body_that_stops_arriving_gets_408_and_the_connection_closed(web_server, framing):
    head = "POST /api/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    if framing == "length":
        data = (head + "Content-Length: 100\r\n\r\n{\"").encode()
    else:
        data = (head + "Transfer-Encoding: chunked\r\n\r\n2\r\n{\"\r\n").encode()
    started = time.monotonic()
    answer = raw(web_server.port, data, timeout=30)  # the server closes the connection; the client never does
    took = time.monotonic() - started
    status, error = json_error(answer)
    limit = float(web_server.env["FLEXGATE_BODY_TIMEOUT"])
    assert status == 408 and f"{limit:g} s" in error
    assert took < limit + 2 + 3  # FLEXGATE_BODY_TIMEOUT + keep-alive (2) + slack


def test_unknown_route_on_live_metrics_is_404_not_an_outage(web_server, nats_client):
    nats_client.publish_snapshot()
    response = requests.get(web_server.url + "/api/metrics/live", params={"route": "/never/published"}, timeout=5)
    assert response.status_code == 404
    assert "Retry-After" not in response.headers
    assert "/never/published" in response.json()["error"]
    nats_client.publish_snapshot(route="/api/known")
    assert requests.get(web_server.url + "/api/metrics/live", params={"route": "/api/known"},
                        timeout=5).status_code == 200


def test_route_feeds_per_worker_are_capped(strict):
    streams = [SSEClient(strict.url + "/api/stream/metrics", params={"route": f"/r/{i}"}) for i in range(3)]
    try:
        assert [s.status for s in streams] == [200, 200, 200]
        refused = requests.get(strict.url + "/api/stream/metrics", params={"route": "/r/3"}, stream=True, timeout=5)
        assert refused.status_code == 503
        assert "routes" in refused.json()["error"] and int(refused.headers["Retry-After"]) >= 1
        refused.close()
        again = SSEClient(strict.url + "/api/stream/metrics", params={"route": "/r/0"})  # a followed one is fine
        assert again.status == 200
        again.close()
        assert requests.get(strict.url + "/api/stream/metrics", stream=True, timeout=5).status_code == 200
    finally:
        for stream in streams:
            stream.close()


@pytest.mark.parametrize(("request_head", "status", "says"), [
    (b"GET /api/metrics/live?access_token=SECRET&x=\x01 HTTP/1.1\r\nHost: x\r\n\r\n", 400, "request line"),
    (b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n", 400, "header"),
    (b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, "too long"),
    (b"GET /healthz HTTP/1.1\r\n" + b"".join(b"X-H%d: 1\r\n" % i for i in range(120)) + b"\r\n", 431,
     "headers"),
    (b"GET /healthz HTTP/1.1\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n", 431, "headers"),
    (b"POST /api/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"zz\r\n{}\r\n0\r\n\r\n", 400, "chunked"),
    (b"POST /api/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"2\r\n{}XX0\r\n\r\n", 400, "chunked"),
])
def test_what_gunicorn_refuses_itself_is_json_too(web_server, request_head, status, says):
    answered, error = json_error(raw(web_server.port, request_head))
    assert answered == status
    assert says in error
    assert "SECRET" not in error  # nothing the client sent is echoed


def test_a_body_nobody_reads_does_not_hold_the_connection(web_server):
    started = time.monotonic()
    answer = raw(web_server.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"", timeout=30)
    assert split(answer)[0] == 200
    assert time.monotonic() - started < 2 + 3  # gunicorn's keep-alive (2 s) bounds the wait for the rest
