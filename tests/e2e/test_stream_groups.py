"""Per-upstream streams, the paged index of every route and upstream, and the lookup of one outside the busiest,
through real gunicorn (2 workers) on a real nats-server of this module's own (the index subjects are global).

The test publishes what the publisher would, each message checked against flexgate_stream/messages.schema.json.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests

from flexgate_stream.devstack.nats_client import snapshot_subject
from flexgate_stream.devstack.samples import sample_index_pages, sample_snapshot
from flexgate_stream.devstack.servers import NatsServer
from flexgate_stream.messages import INDEX_STREAM
from flexgate_stream.tick.stream_setup import ensure_streams
from tests.contract import checked
from tests.e2e.support import NatsClient, SSEClient, WebServer
from tests.waiting import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

# Slug paths that route folding leaves distinct, each with its own count so the order is fixed.
ROUTES = {f"/shop/items/p-{i:05d}/reviews": 100_000 - 7 * i for i in range(3000)}
UPSTREAMS = {f"svc-{i:03d}": 50_000 - 11 * i for i in range(300)}


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[tuple[NatsClient, WebServer]]:
    base = tmp_path_factory.mktemp("groups")
    nats = NatsServer(base / "nats", log_file=base / "nats.log").start()
    client = NatsClient(nats.url)
    web = WebServer(nats.url, base / "web").start()
    yield client, web
    web.stop()
    client.close()
    nats.stop()


def publish_snapshot(client: NatsClient, total: int, **kwargs: Any) -> int:
    """One contract-shaped snapshot (summary, or a route's or an upstream's); its stream sequence."""
    snapshot = checked("Snapshot", sample_snapshot(total, **kwargs))[0]
    return client.publish(snapshot_subject(snapshot), snapshot)


def publish_index(client: NatsClient, kind: str, counts: dict[str, int], **kwargs: Any) -> list[dict[str, Any]]:
    """Every page of one index of ``kind``, page 0 last as the publisher writes them; the pages."""
    pages = checked("GroupIndex", *sample_index_pages(kind, counts, **kwargs))
    client.publish_index(pages)
    return pages


def get(web: WebServer, path: str, **params: str) -> requests.Response:
    return requests.get(web.url + path, params=params, timeout=10)


def not_found(response: requests.Response) -> str:
    assert response.status_code == 404, (response.status_code, response.text[:300])
    body = response.json()
    assert body["success"] is False
    return str(body["error"])


def test_an_upstream_stream_carries_that_upstreams_snapshots_and_resumes(stack):
    client, web = stack
    upstream = "payments-svc"
    publish_snapshot(client, 1, upstream="orders-svc")
    publish_snapshot(client, 2, route=upstream)  # a route of the same name is another stream
    seqs = [publish_snapshot(client, 10 + i, upstream=upstream) for i in range(2)]
    stream = SSEClient(web.url + "/api/stream/metrics", params={"upstream": upstream})
    try:
        assert stream.next().json()["type"] == "connected"
        newest = stream.data_events(1)[0]
        assert int(newest.id) == seqs[-1]
        assert (newest.json()["upstream"], newest.json()["route"]) == (upstream, None)
        publish_snapshot(client, 3, upstream="orders-svc")
        live = publish_snapshot(client, 12, upstream=upstream)
        got = stream.data_events(1)[0]
        assert int(got.id) == live and got.json()["summary"]["totalRequests"] == 12
    finally:
        stream.close()
    missed = [publish_snapshot(client, 20 + i, upstream=upstream) for i in range(2)]
    again = SSEClient(web.url + "/api/stream/metrics", params={"upstream": upstream, "lastEventId": str(live)})
    try:
        again.next()
        assert [int(e.id) for e in again.data_events(2)] == missed
    finally:
        again.close()
    answer = get(web, "/api/metrics/live", upstream=upstream)
    assert answer.status_code == 200
    assert answer.json()["data"]["upstream"] == upstream and answer.json()["data"]["summary"]["totalRequests"] == 21


@pytest.mark.parametrize("path", ["/api/stream/metrics", "/api/metrics/live"])
def test_route_and_upstream_together_or_a_malformed_upstream_is_400_json(stack, path):
    _, web = stack
    both = get(web, path, route="/api/orders", upstream="orders-svc")
    assert both.status_code == 400
    assert both.json() == {"success": False, "error": "give either the route or the upstream parameter, not both."}
    bad = get(web, path, upstream="two words")
    assert bad.status_code == 400 and "upstream parameter" in bad.json()["error"]


def test_every_route_and_upstream_page_by_page_busiest_first(stack):
    client, web = stack
    routes = publish_index(client, "routes", ROUTES, per_page=100, limit=5000)
    upstreams = publish_index(client, "upstreams", UPSTREAMS, per_page=100, limit=500)
    assert (len(routes), len(upstreams)) == (30, 3)
    for kind, pages, counts in (("routes", routes, ROUTES), ("upstreams", upstreams, UPSTREAMS)):
        first = get(web, f"/api/metrics/{kind}")  # page 0 by default
        assert first.status_code == 200 and first.json() == {"success": True, "data": pages[0]}
        seen = []
        for number in range(len(pages)):
            page = get(web, f"/api/metrics/{kind}", page=str(number)).json()["data"]
            checked("GroupIndex", page)
            assert (page["page"], page["pages"], page["windowEnd"]) == (number, len(pages), pages[0]["windowEnd"])
            seen += [(entry["name"], entry["last24Hours"]["requests"]) for entry in page["entries"]]
        assert [name for name, _ in seen] == sorted(counts, key=lambda name: -counts[name])  # each once, busiest first
        assert dict(seen) == counts
        error = not_found(get(web, f"/api/metrics/{kind}", page=str(len(pages))))
        assert f"no page {len(pages)}" in error and f"0 to {len(pages) - 1}" in error
    for bad in ("-1", "abc", "1.5", "9" * 25):
        answer = get(web, "/api/metrics/routes", page=bad)
        assert answer.status_code == 400 and "page parameter" in answer.json()["error"]


def test_a_page_left_over_from_an_older_index_is_404(stack):
    client, web = stack
    publish_index(client, "routes", ROUTES, per_page=100)  # 30 pages
    shorter = publish_index(client, "routes", dict(list(ROUTES.items())[:1000]), per_page=100)  # 10 pages
    assert get(web, "/api/metrics/routes", page="9").json()["data"] == shorter[9]
    assert "has 10 (0 to 9)" in not_found(get(web, "/api/metrics/routes", page="12"))  # stored, but of the old one
    # Page 0 of a newer index is out while its other pages are not (yet): they are not part of it.
    newer = checked("GroupIndex", *sample_index_pages("routes", dict(list(ROUTES.items())[:1000]), per_page=100))
    client.publish_index(newer[:1])
    not_found(get(web, "/api/metrics/routes", page="5"))
    client.publish_index(newer)
    assert get(web, "/api/metrics/routes", page="5").json()["data"] == newer[5]


def test_live_finds_a_route_or_upstream_outside_the_busiest_in_the_index(stack):
    client, web = stack
    busiest = next(iter(ROUTES))
    publish_snapshot(client, 99, route=busiest)  # only the busiest routes have snapshots of their own
    pages = publish_index(client, "routes", ROUTES, per_page=100)
    publish_index(client, "upstreams", UPSTREAMS, per_page=100)
    far = "/shop/items/p-02500/reviews"
    expected = next(e for page in pages for e in page["entries"] if e["name"] == far)
    assert pages.index(next(p for p in pages if expected in p["entries"])) == 25
    answers = [get(web, "/api/metrics/live", route=far) for _ in range(6)]  # on both workers, from cache or not
    for answer in answers:
        assert answer.status_code == 200, answer.text[:300]
        assert answer.json() == {"success": True, "data": {"type": "entry", "kind": "routes",
                                                           "windowEnd": pages[0]["windowEnd"], "entry": expected}}
    upstream = get(web, "/api/metrics/live", upstream="svc-250").json()["data"]
    assert (upstream["type"], upstream["kind"], upstream["entry"]["name"]) == ("entry", "upstreams", "svc-250")
    assert upstream["entry"]["last24Hours"]["requests"] == UPSTREAMS["svc-250"]
    assert get(web, "/api/metrics/live", route=busiest).json()["data"]["type"] == "metrics"
    error = not_found(get(web, "/api/metrics/live", route="/shop/items/p-99999/reviews"))
    assert "p-99999" in error and "not tracked" in error and "FLEXGATE_MAX_ROUTES" in error
    not_found(get(web, "/api/metrics/live", upstream="svc-999"))

    # The next tick's index: the route moved up to page 3 with other figures; the answer follows it.
    moved = {**ROUTES, far: ROUTES["/shop/items/p-00300/reviews"] + 3}
    newer = publish_index(client, "routes", moved, per_page=100)
    for _ in range(6):
        found = get(web, "/api/metrics/live", route=far).json()["data"]
        assert found["windowEnd"] == newer[0]["windowEnd"]
        assert found["entry"]["last24Hours"]["requests"] == moved[far]
    assert any(e["name"] == far for e in newer[3]["entries"])


def test_before_any_index_pages_and_lookups_are_404_not_an_outage(stack):
    client, web = stack
    client.run(client.js.delete_stream(INDEX_STREAM))  # a publisher older than the index never created it
    try:
        assert "no routes index" in not_found(get(web, "/api/metrics/routes"))
        assert "no upstreams index" in not_found(get(web, "/api/metrics/upstreams", page="2"))
        assert "not tracked" in not_found(get(web, "/api/metrics/live", route="/shop/items/p-00007/reviews"))
        client.run(ensure_streams(client.js))  # created, still empty
        assert "no routes index" in not_found(get(web, "/api/metrics/routes"))
        assert "not tracked" in not_found(get(web, "/api/metrics/live", upstream="svc-001"))
    finally:
        client.run(ensure_streams(client.js))


def test_the_feed_cap_counts_route_and_upstream_streams_together(stack, tmp_path):
    client, _ = stack
    web = WebServer(client.url, tmp_path / "web", {"FLEXGATE_MAX_ROUTE_FEEDS": "2"}, workers=1).start()
    streams: list[SSEClient] = []
    try:
        streams = [SSEClient(web.url + "/api/stream/metrics", params=p) for p in ({"route": "/r/a"},
                                                                                  {"upstream": "u-a"})]
        assert [s.status for s in streams] == [200, 200]
        for params in ({"upstream": "u-b"}, {"route": "/r/b"}):
            refused = requests.get(web.url + "/api/stream/metrics", params=params, stream=True, timeout=5)
            assert refused.status_code == 503, params
            assert "routes and upstreams" in refused.json()["error"] and int(refused.headers["Retry-After"]) >= 1
            refused.close()
        again = SSEClient(web.url + "/api/stream/metrics", params={"upstream": "u-a"})  # followed already: fine
        assert again.status == 200
        again.close()
        streams.pop().close()  # the last reader of u-a leaves: its feed is dropped, a place is free
        streams.append(wait_until(lambda: admitted(web, {"upstream": "u-b"}), 10, "a place for another upstream"))
    finally:
        for stream in streams:
            stream.close()
        web.stop()


def admitted(web: WebServer, params: dict[str, str]) -> SSEClient | None:
    """A stream opened with ``params``, or None (and nothing left open) when it is refused."""
    stream = SSEClient(web.url + "/api/stream/metrics", params=params)
    if stream.status == 200:
        return stream
    stream.close()
    return None
