"""Any gateway's paths: requests labelled by the gateway's own routes, at most so many labels with an overflow
entry, summaries under 64 KB, and a message too large for the server is one error, not an outage."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from flexgate_stream.devstack.servers import NatsServer
from flexgate_stream.messages import (
    INDEX_STREAM,
    METRICS_STREAM,
    OTHER,
    OVERFLOW,
    PUBLISHERS_BUCKET,
    SUMMARY_MAX_BYTES,
    SUMMARY_SUBJECT,
)
from flexgate_stream.requestlog import schema
from flexgate_stream.tick import incremental
from flexgate_stream.tick.incremental import IncrementalAggregation
from flexgate_stream.tick.time_column import TimeColumn
from tests.integration.publishers import Worker, nats_call
from tests.waiting import wait_until

pytestmark = pytest.mark.timeout(120)

# FlexGate's routes table as its migrations/001_initial_schema.sql creates it (uuid-ossp's default aside).
ROUTES_TABLE = """
CREATE TABLE routes (
  id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
  route_id VARCHAR(255) UNIQUE NOT NULL,
  path VARCHAR(500) NOT NULL,
  upstream VARCHAR(255) NOT NULL,
  methods TEXT[] NOT NULL,
  strip_path VARCHAR(500),
  enabled BOOLEAN DEFAULT true,
  rate_limit_enabled BOOLEAN DEFAULT false,
  rate_limit_max INTEGER,
  rate_limit_window_ms INTEGER,
  rate_limit_message TEXT,
  description TEXT,
  tags TEXT[],
  created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
  updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
  created_by VARCHAR(255),
  updated_by VARCHAR(255),
  deleted_at TIMESTAMP,
  deleted_by VARCHAR(255)
);
CREATE INDEX idx_routes_path ON routes(path);
CREATE INDEX idx_routes_enabled ON routes(enabled);
"""
ROUTE = ("INSERT INTO routes (route_id, path, upstream, methods, enabled, deleted_at)"
         " VALUES (%s, %s, %s, '{GET}', %s, %s)")
# Slug paths route folding leaves distinct, over upstreams svc-0..svc-299, stamped 2 to 52 minutes ago.
SLUGS = ("INSERT INTO requests (\"timestamp\", method, path, status_code, response_time_ms, upstream)"
         " SELECT now() - interval '2 minutes' - (i %% 3000) * interval '1 second', 'GET',"
         " '/shop/items/p-' || substr(md5((i + %(offset)s)::text), 1, 9) || '/reviews',"
         " CASE WHEN i %% 10 = 0 THEN 503 ELSE 200 END, 5 + i %% 200, 'svc-' || i %% 300"
         " FROM generate_series(1, %(n)s) AS i")


def _insert(db, rows: list[tuple[str, str]], at: datetime) -> None:
    with db, db.cursor() as cur:
        for path, upstream in rows:
            cur.execute('INSERT INTO requests ("timestamp", method, path, status_code, response_time_ms, upstream)'
                        " VALUES (%s, 'GET', %s, 200, 12.5, %s)", (at, path, upstream))


def _routes_of(figures) -> dict[str, int]:
    ranking = figures.route_ranking
    out = {name: stats.requests for name, stats in ranking.top.items()}
    if ranking.rest is not None:
        out[OTHER] = ranking.rest.requests
    return out


def test_the_gateways_routes_table_labels_requests_and_a_change_shows_without_a_restart(db, monkeypatch):
    schema.upgrade(db)
    with db, db.cursor() as cur:
        cur.execute(ROUTES_TABLE)
        for route_id, path, enabled, deleted in [("route-1", "/shop/items/:slug/reviews", True, None),
                                                  ("route-2", "/shop/*", True, None),
                                                  ("route-3", "/api/*", False, None),
                                                  ("route-4", "/admin/*", True, datetime.now(UTC))]:
            cur.execute(ROUTE, (route_id, path, "shop-svc", enabled, deleted))
    aggregation = IncrementalAggregation(TimeColumn(None), top=50)
    end = datetime.fromtimestamp(datetime.now(UTC).timestamp() // 5 * 5, UTC)
    aggregation.tick(db, [end])  # first start: rows from here on are read as they arrive
    at = end - timedelta(minutes=2)
    _insert(db, [(f"/shop/items/p-{i:07x}/reviews?page=2", "shop-svc") for i in range(60)]
            + [("/shop/cart/checkout", "shop-svc")] * 5 + [("/api/users/42", "users-svc")] * 4
            + [("/admin/panel/x", "admin-svc")] * 3, at)
    (figures,) = aggregation.tick(db, [end])
    assert _routes_of(figures) == {"/shop/items/:slug/reviews": 60, "/shop/*": 5, "/api/users/:id": 4,
                                   "/admin/panel/x": 3}

    monkeypatch.setattr(incremental, "PATTERNS_SECONDS", 0.0)  # read the table at every tick
    with db, db.cursor() as cur:
        cur.execute("UPDATE routes SET enabled = true WHERE route_id = 'route-3'")
    _insert(db, [("/api/users/42", "users-svc")] * 2, at)
    (figures,) = aggregation.tick(db, [end])
    assert _routes_of(figures)["/api/*"] == 2  # new rows only: counted rows keep their label
    assert _routes_of(figures)["/api/users/:id"] == 4


def test_the_route_patterns_setting_labels_requests_without_a_routes_table(db):
    schema.upgrade(db)
    aggregation = IncrementalAggregation(TimeColumn(None), patterns=("/shop/items/:slug/reviews",))
    end = datetime.fromtimestamp(datetime.now(UTC).timestamp() // 5 * 5, UTC)
    aggregation.tick(db, [end])
    _insert(db, [(f"/shop/items/{i}x/reviews", "shop-svc") for i in range(30)], end - timedelta(minutes=2))
    (figures,) = aggregation.tick(db, [end])
    assert _routes_of(figures) == {"/shop/items/:slug/reviews": 30}


def _newest(url: str) -> dict:
    async def read(js):
        summary = await js.get_last_msg(METRICS_STREAM, SUMMARY_SUBJECT)
        pages, page = [], 0
        while True:
            msg = await js.get_last_msg(INDEX_STREAM, f"index.routes.{page}")
            pages.append(json.loads(msg.data))
            page += 1
            if page >= pages[0]["pages"]:
                break
        beats = await js.key_value(PUBLISHERS_BUCKET)
        beat = json.loads((await beats.get((await beats.keys())[0])).value)
        return {"summary": json.loads(summary.data), "bytes": len(summary.data), "pages": pages, "beat": beat}

    return nats_call(url, read)


def _complete(url: str, total: int) -> dict | None:
    try:
        found = _newest(url)
    except Exception:  # noqa: BLE001 - nothing stored yet
        return None
    summary, pages = found["summary"], found["pages"]
    pages_agree = all(p["windowEnd"] == pages[0]["windowEnd"] for p in pages)
    indexed = sum(entry["last24Hours"]["requests"] for page in pages for entry in page["entries"])
    ok = summary["complete"] and summary["summary"]["totalRequests"] == total and pages_agree and indexed == total
    return found if ok else None


def test_twenty_thousand_slug_paths_and_300_upstreams_keep_the_stream_small_and_exact(db, database_url, tmp_path):
    schema.upgrade(db)
    with db, db.cursor() as cur:
        cur.execute(SLUGS, {"n": 10_000, "offset": 0})  # an existing log, folded at first start
    server = NatsServer(tmp_path / "nats", log_file=tmp_path / "nats.log").start()
    worker = Worker(tmp_path / "publisher.log", {"DATABASE_URL": database_url, "NATS_SERVERS": server.url,
                                                 "FLEXGATE_TICK_SECONDS": "1"})
    try:
        wait_until(lambda: _complete(server.url, 10_000), 60, "a complete snapshot of the existing log")
        with db, db.cursor() as cur:
            cur.execute(SLUGS, {"n": 10_000, "offset": 10_000})  # new rows while it runs
        found = wait_until(lambda: _complete(server.url, 20_000), 60, "a snapshot counting the new rows")
    finally:
        worker.proc.terminate()
        worker.proc.wait(10)
        server.stop()
    summary = found["summary"]
    assert found["bytes"] <= SUMMARY_MAX_BYTES
    with db.cursor() as cur:
        cur.execute('SELECT count(*), count(DISTINCT upstream) FROM requests WHERE "timestamp" >= %s'
                    ' AND "timestamp" < %s', (summary["window"]["start"], summary["window"]["end"]))
        assert cur.fetchone() == (20_000, 300)
    for window in (summary, summary["lastHour"], summary["last5Minutes"]):
        total = window["summary"]["totalRequests"]
        for kind in ("routes", "upstreams"):
            assert sum(entry["requests"] for entry in window[kind]) == total, kind
    routes = {entry["name"]: entry["requests"] for entry in summary["routes"]}
    assert OVERFLOW in routes and OTHER in routes
    assert summary["routeCount"] == 1001 and summary["upstreamCount"] == 201
    listed = [entry for page in found["pages"] for entry in page["entries"]]
    assert len(listed) == found["pages"][0]["total"] == 1001
    assert sum(entry["last24Hours"]["requests"] for entry in listed) == 20_000
    overflow = next(entry for entry in listed if entry["name"] == OVERFLOW)["last24Hours"]["requests"]
    assert found["beat"]["cardinality"]["routes"] == {"labels": 1000, "limit": 1000, "overflowRequests": overflow}
    assert found["beat"]["cardinality"]["upstreams"]["labels"] == 200
    log = worker.log()
    assert log.count("distinct routes in the last 24 h") == 1 and log.count("distinct upstreams in the last 24 h") == 1
    assert "maximum payload" not in log and "Traceback" not in log


def test_a_message_over_the_servers_max_payload_is_one_error_and_the_rest_is_published(db, database_url, tmp_path):
    schema.upgrade(db)
    with db, db.cursor() as cur:
        cur.execute(SLUGS, {"n": 3_000, "offset": 0})
    config = tmp_path / "small.conf"
    config.write_text("max_payload: 4096\n")  # under the summary's series and figures (about 5 KB)
    server = NatsServer(tmp_path / "nats", log_file=tmp_path / "nats.log", config=config).start()
    worker = Worker(tmp_path / "publisher.log", {"DATABASE_URL": database_url, "NATS_SERVERS": server.url,
                                                 "FLEXGATE_TICK_SECONDS": "1"})
    try:
        first = wait_until(lambda: _ticked(server.url), 45, "a tick published while the summary does not fit")
        wait_until(lambda: (_ticked(server.url) or first) > first, 45, "three more ticks")
        wait_until(lambda: (_ticked(server.url) or first) > first + timedelta(seconds=3), 45, "three more ticks")
    finally:
        worker.proc.terminate()
        worker.proc.wait(10)
        server.stop()
    log = worker.log()
    too_large = [line for line in log.splitlines() if "over the NATS server's max_payload of 4096 bytes" in line]
    assert any(f"not publishing {SUMMARY_SUBJECT}@" in line for line in too_large)
    assert len(too_large) <= 3  # once for each kind of message (summary, routes, upstreams), not once a tick
    assert "retrying with backoff" not in log and "Traceback" not in log


def _ticked(url: str) -> datetime | None:
    """The window end of the newest tick the heartbeat reports, once index pages of it are stored."""
    async def read(js):
        beats = await js.key_value(PUBLISHERS_BUCKET)
        beat = json.loads((await beats.get((await beats.keys())[0])).value)
        page = json.loads((await js.get_last_msg(INDEX_STREAM, "index.routes.0")).data)
        return beat["lastWindowEnd"] if beat["lastWindowEnd"] and page["windowEnd"] >= beat["lastWindowEnd"] else None

    try:
        end = nats_call(url, read)
    except Exception:  # noqa: BLE001 - not there yet
        return None
    return datetime.fromisoformat(end.replace("Z", "+00:00")) if end else None
