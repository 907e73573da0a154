"""API tokens, CORS and the per-worker client cap, through real gunicorn."""

from __future__ import annotations

import pytest
import requests

from tests.e2e.support import SSEClient
from tests.waiting import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

TOKEN = "e2e-token-4f0c"


@pytest.fixture(scope="module")
def locked(nats_server, nats_client, tmp_path_factory):
    """A server that requires a token, allows one CORS origin, keeps /metrics private, and caps streams."""
    from tests.e2e.support import WebServer

    env = {"FLEXGATE_API_TOKENS": f"other-token,{TOKEN}", "FLEXGATE_CORS_ORIGINS": "https://dash.example",
           "FLEXGATE_METRICS_PUBLIC": "false", "FLEXGATE_MAX_CLIENTS": "2"}
    server = WebServer(nats_server.url, tmp_path_factory.mktemp("locked"), env, workers=1).start()
    yield server
    server.stop()


@pytest.mark.parametrize("path", ["/api/stream/metrics", "/api/stream/stats", "/api/metrics/live", "/metrics"])
@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}])
def test_missing_or_wrong_token_is_401_json(locked, path, headers):
    response = requests.get(locked.url + path, headers=headers, timeout=5)
    assert response.status_code == 401
    assert response.json()["success"] is False and "token" in response.json()["error"]
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_right_token_in_header_or_query(locked, nats_client):
    seq = nats_client.publish_snapshot()
    by_header = requests.get(locked.url + "/api/metrics/live", headers={"Authorization": f"Bearer {TOKEN}"},
                             timeout=5)
    assert by_header.status_code == 200
    stream = SSEClient(locked.url + "/api/stream/metrics", params={"access_token": TOKEN})
    try:
        assert stream.status == 200
        stream.next()
        assert int(stream.data_events(1)[0].id) == seq
    finally:
        stream.close()
    assert "access_token" not in locked.log_text()  # the query string never reaches the access log


@pytest.mark.parametrize("path", ["/api//metrics/live", "/api/stream//stats", "//healthz", "//evil.example/x"])
def test_a_doubled_slash_is_404_not_a_redirect_that_repeats_the_token(locked, path):
    response = requests.get(f"{locked.url}{path}?access_token={TOKEN}", allow_redirects=False, timeout=5)
    assert response.status_code == 404
    assert "Location" not in response.headers
    assert response.json() == {"success": False, "error": f"no such endpoint: {path}."}
    assert TOKEN not in response.text


def test_health_stays_open(locked):
    assert requests.get(locked.url + "/healthz", timeout=5).status_code == 200
    assert requests.get(locked.url + "/readyz", timeout=5).status_code == 200


def test_cors_allow_list(locked):
    auth = {"Authorization": f"Bearer {TOKEN}"}
    allowed = requests.get(locked.url + "/api/stream/stats", headers={**auth, "Origin": "https://dash.example"},
                           timeout=5)
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://dash.example"
    other = requests.get(locked.url + "/api/stream/stats", headers={**auth, "Origin": "https://evil.example"},
                         timeout=5)
    assert "Access-Control-Allow-Origin" not in other.headers
    preflight = requests.options(locked.url + "/api/events", timeout=5, headers={
        "Origin": "https://dash.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type"})
    assert preflight.status_code == 204
    assert "Authorization" in preflight.headers["Access-Control-Allow-Headers"]


def open_streams(server) -> int:
    body = requests.get(server.url + "/api/stream/stats", params={"access_token": TOKEN}, timeout=5).json()
    return body["data"]["clients"]["worker"]


def test_client_cap_answers_503_with_retry_after(locked):
    # Streams closed by earlier tests end at their next heartbeat, when the write fails.
    wait_until(lambda: open_streams(locked) == 0, 10, "earlier streams to close")
    streams = [SSEClient(locked.url + "/api/stream/metrics", params={"access_token": TOKEN}) for _ in range(2)]
    try:
        for stream in streams:
            assert stream.status == 200
            stream.next()
        refused = requests.get(locked.url + "/api/stream/metrics", params={"access_token": TOKEN}, timeout=5)
        assert refused.status_code == 503
        assert int(refused.headers["Retry-After"]) >= 1
        assert refused.json()["success"] is False
    finally:
        for stream in streams:
            stream.close()


def test_open_server_without_tokens_warns_at_start(web_server):
    assert "FLEXGATE_API_TOKENS is not set" in web_server.log_text()
