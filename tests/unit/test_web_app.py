"""The web app through Flask's test client (no servers): auth, CORS, JSON errors."""

from __future__ import annotations

import pytest

from flexgate_stream import create_app
from flexgate_stream.settings import Settings
from flexgate_stream.web.auth import token_ok

pytestmark = pytest.mark.timeout(30)

UNREACHABLE = ("nats://127.0.0.1:1",)


def client_for(**overrides):
    return create_app(Settings(nats_servers=UNREACHABLE, **overrides)).test_client()


def test_token_compare():
    assert token_ok("b", ("a", "b"))
    assert not token_ok("c", ("a", "b"))
    assert not token_ok(None, ("a",))
    assert not token_ok("", ("a",))


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer nope"}, {"Authorization": "Token s3cret"}])
def test_api_requires_a_token_when_tokens_are_set(headers):
    client = client_for(api_tokens=("s3cret",))
    response = client.get("/api/stream/stats", headers=headers)
    assert response.status_code == 401
    assert response.json["success"] is False
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_token_in_header_or_query_passes_auth():
    client = client_for(api_tokens=("s3cret",))
    # Past auth the stats answer 503 here: no NATS and no gevent worker in a unit test.
    assert client.get("/api/stream/stats", headers={"Authorization": "Bearer s3cret"}).status_code == 503
    assert client.get("/api/stream/stats?access_token=s3cret").status_code == 503


def test_health_is_open_and_metrics_follow_the_setting():
    closed = client_for(api_tokens=("s3cret",), metrics_public=False)
    assert closed.get("/healthz").status_code == 200
    assert closed.get("/metrics").status_code == 401
    assert closed.get("/metrics", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    assert client_for(api_tokens=("s3cret",)).get("/metrics").status_code == 200


def test_cors_only_for_listed_origins():
    client = client_for(cors_origins=("https://ok.example",))
    ok = client.get("/healthz", headers={"Origin": "https://ok.example"})
    assert ok.headers["Access-Control-Allow-Origin"] == "https://ok.example"
    assert "Origin" in ok.headers["Vary"]
    assert "Access-Control-Allow-Origin" not in client.get("/healthz", headers={"Origin": "https://x.example"}).headers
    assert "Access-Control-Allow-Origin" not in client_for().get("/healthz", headers={"Origin": "https://x"}).headers


def test_preflight_needs_no_token():
    client = client_for(api_tokens=("s3cret",), cors_origins=("https://ok.example",))
    response = client.options("/api/events", headers={"Origin": "https://ok.example",
                                                      "Access-Control-Request-Method": "POST"})
    assert response.status_code == 204
    assert "POST" in response.headers["Access-Control-Allow-Methods"]


def test_errors_are_json_without_tracebacks():
    client = client_for()
    assert client.get("/api/nope").json == {"success": False, "error": "no such endpoint: /api/nope."}
    wrong = client.put("/api/events")
    assert wrong.status_code == 405 and "POST" in wrong.json["error"]
    big = client_for(events_open=True).post("/api/events", data=b"x" * (64 * 1024 + 1),
                                            content_type="application/json")
    assert big.status_code == 413 and big.json["success"] is False
    bad = client.get("/api/stream/metrics?lastEventId=abc")
    assert bad.status_code == 400 and "Traceback" not in bad.get_data(as_text=True)


def test_streams_outside_a_gevent_worker_answer_503_not_500():
    response = client_for().get("/api/stream/metrics")
    assert response.status_code == 503
    assert response.json["success"] is False and response.headers["Retry-After"]


def test_events_are_closed_without_a_token_unless_opened():
    body = b'{"event":"circuit_breaker.opened","timestamp":"2026-01-01T00:00:00Z"}'
    closed = client_for().post("/api/events", data=body, content_type="application/json")
    assert closed.status_code == 403 and "FLEXGATE_EVENTS_OPEN" in closed.json["error"]
    # Opened, or with a token, the request gets past the gate (and then meets no NATS in a unit test).
    opened = client_for(events_open=True).post("/api/events", data=body, content_type="application/json")
    assert opened.status_code == 503
    token = client_for(api_tokens=("s3cret",)).post("/api/events", data=body, content_type="application/json",
                                                     headers={"Authorization": "Bearer s3cret"})
    assert token.status_code == 503


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x", "application/jsonx"])
def test_events_need_a_json_content_type(content_type):
    body = b'{"event":"circuit_breaker.opened","timestamp":"2026-01-01T00:00:00Z"}'
    headers = {"Content-Type": content_type} if content_type else {}
    response = client_for(events_open=True).post("/api/events", data=body, headers=headers)
    assert response.status_code == 415
    assert "application/json" in response.json["error"]


def test_json_content_type_with_a_charset_is_accepted():
    body = b'{"event":"a","timestamp":"2026-01-01T00:00:00Z"}'
    response = client_for(events_open=True).post("/api/events", data=body,
                                                 content_type="Application/JSON; charset=utf-8")
    assert response.status_code == 503  # past the checks; no NATS in a unit test


def test_the_start_warning_says_whether_events_are_open():
    from flexgate_stream.server.gunicorn_hooks import open_api_warning

    assert "POST /api/events, which is closed" in open_api_warning(Settings())
    assert "accepts events from anyone" in open_api_warning(Settings(events_open=True))
    assert open_api_warning(Settings(api_tokens=("t",))) is None
