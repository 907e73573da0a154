"""Real responses of a real gunicorn validate against /api/openapi.json."""

from __future__ import annotations

import pytest
import requests
from jsonschema import Draft202012Validator

from flexgate_stream.devstack.samples import sample_index_pages
from tests.contract import checked
from tests.e2e.support import SSEClient

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]


def check(doc: dict, path: str, method: str, response: requests.Response) -> None:
    """``response`` has a documented status and content type, and its JSON body matches the schema."""
    operation = doc["paths"][path][method]
    documented = operation["responses"].get(str(response.status_code))
    assert documented is not None, f"{method.upper()} {path} answered undocumented {response.status_code}"
    if "$ref" in documented:
        documented = doc["components"]["responses"][documented["$ref"].rsplit("/", 1)[1]]
    kind = response.headers["Content-Type"].split(";")[0]
    content = documented["content"]
    assert kind in content or "*/*" in content, (path, kind, list(content))
    if kind == "application/json":
        schema = content[kind]["schema"]
        errors = list(Draft202012Validator({"components": doc["components"], **schema}).iter_errors(response.json()))
        assert not errors, f"{method.upper()} {path} {response.status_code}: {[e.message for e in errors][:3]}"


def test_real_responses_match_the_document(web_server, nats_client):
    url = web_server.url
    doc = requests.get(url + "/api/openapi.json", timeout=10).json()
    nats_client.publish_snapshot()
    nats_client.publish_alert()
    nats_client.publish_snapshot(upstream="openapi-svc")
    for kind, names in (("routes", [f"/openapi/{i}" for i in range(250)]), ("upstreams", ["openapi-svc", "other"])):
        nats_client.publish_index(checked("GroupIndex", *sample_index_pages(kind, {n: 1000 - len(n) for n in names})))
    calls = [
        ("/healthz", "get", requests.get(url + "/healthz", timeout=10)),
        ("/readyz", "get", requests.get(url + "/readyz", timeout=10)),
        ("/api/stream/stats", "get", requests.get(url + "/api/stream/stats", timeout=10)),
        ("/api/metrics/live", "get", requests.get(url + "/api/metrics/live", timeout=10)),
        ("/api/metrics/live", "get", requests.get(url + "/api/metrics/live", params={"route": "x" * 600}, timeout=10)),
        ("/api/metrics/live", "get", requests.get(url + "/api/metrics/live", params={"route": "/never/seen"},
                                                  timeout=10)),
        ("/api/metrics/live", "get", requests.get(url + "/api/metrics/live", params={"route": "/openapi/7"},
                                                  timeout=10)),
        ("/api/metrics/live", "get", requests.get(url + "/api/metrics/live", params={"upstream": "openapi-svc"},
                                                  timeout=10)),
        ("/api/metrics/routes", "get", requests.get(url + "/api/metrics/routes", params={"page": "2"}, timeout=10)),
        ("/api/metrics/routes", "get", requests.get(url + "/api/metrics/routes", params={"page": "99"}, timeout=10)),
        ("/api/metrics/routes", "get", requests.get(url + "/api/metrics/routes", params={"page": "x"}, timeout=10)),
        ("/api/metrics/upstreams", "get", requests.get(url + "/api/metrics/upstreams", timeout=10)),
        ("/api/events", "post", requests.post(url + "/api/events", timeout=10, json={
            "event": "circuit_breaker.opened", "timestamp": "2026-01-31T12:00:00Z", "data": {"route": "/a"}})),
        ("/api/events", "post", requests.post(url + "/api/events", timeout=10, json={"event": "x"})),
        ("/api/events", "post", requests.post(url + "/api/events", timeout=10, data=b"{", headers={
            "Content-Type": "application/json"})),
        ("/api/events", "post", requests.post(url + "/api/events", timeout=10, data=b"x" * 70000, headers={
            "Content-Type": "application/json"})),
        ("/api/events", "post", requests.post(url + "/api/events", timeout=10, data=b"{}")),
        ("/metrics", "get", requests.get(url + "/metrics", timeout=10)),
        ("/", "get", requests.get(url + "/", timeout=10)),
        ("/api/openapi.json", "get", requests.get(url + "/api/openapi.json", timeout=10)),
    ]
    statuses = set()
    for path, method, response in calls:
        check(doc, path, method, response)
        statuses.add(response.status_code)
    assert [r.status_code for p, _, r in calls if p == "/api/metrics/routes"] == [200, 404, 400]
    assert [r.json()["data"]["type"] for p, _, r in calls if p == "/api/metrics/live" and r.ok] == [
        "metrics", "entry", "metrics"]
    assert {200, 202, 400, 404, 413, 415} <= statuses
    for path in ("/api/stream/metrics", "/api/stream/alerts"):
        stream = SSEClient(url + path)
        try:
            check(doc, path, "get", stream.response)
            hello = stream.next()
            assert hello.json()["type"] == "connected"
        finally:
            stream.close()
    bad = SSEClient(url + "/api/stream/metrics", headers={"Last-Event-ID": "not-a-number"})
    check(doc, "/api/stream/metrics", "get", bad.response)
    assert bad.status == 400
