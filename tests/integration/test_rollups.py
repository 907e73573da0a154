"""Figures from the rollups against SQL over the same rows: every level, late commits, restarts, a second publisher.

Windows from the rollups are whole one-minute buckets: the 24 h window is the 1440 minutes ending
with the minute that holds windowEnd; the series are clock-aligned 5-minute groups. Counts must be
exact; percentiles within 1 % (relative) of ``percentile_cont``; other floats within half a published unit.
"""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime, timedelta

import psycopg2
import pytest

from flexgate_stream.requestlog import schema
from flexgate_stream.tick.aggregation import TimeColumn
from flexgate_stream.tick.incremental import IncrementalAggregation
from flexgate_stream.tick.routes import route_sql
from flexgate_stream.tick.sketch import RELATIVE_ACCURACY
from flexgate_stream.tick.snapshot import busiest_routes, route_snapshot, summary_snapshot
from tests.integration.test_aggregation import INSERT, insert, make_rows

pytestmark = pytest.mark.timeout(120)

TOLERANCE = 6e-4
PERCENTILE_KEYS = {"p50Latency", "p95Latency", "p99Latency"}
LAT = "CASE WHEN response_time_ms >= 0 AND response_time_ms <= 1e12 THEN response_time_ms::float8 END"


def now_end() -> datetime:
    return datetime.fromtimestamp(time.time() // 5 * 5, UTC)


def sql_group(cur, where: str, params: dict, key: str | None = None) -> dict:
    """Counts, average and percentile_cont per group (``key`` an SQL expression, or None for all rows)."""
    group = key or "'*'"
    cur.execute(
        f"SELECT {group} AS k, count(*), count(*) FILTER (WHERE coalesce(status_code, 0) BETWEEN 200 AND 299),"
        " count(*) FILTER (WHERE status_code BETWEEN 400 AND 499), count(*) FILTER (WHERE status_code BETWEEN 500"
        f" AND 599), avg({LAT}), count({LAT}), percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY {LAT})"
        f" FROM requests WHERE {where} GROUP BY 1", params)
    out = {}
    for k, n, ok, c4, c5, avg, lat_n, pcts in cur.fetchall():
        p = [float(v) for v in pcts] if pcts and None not in pcts else [0.0, 0.0, 0.0]
        out[k] = {"n": n, "ok": ok, "c4": c4, "c5": c5, "avg": float(avg or 0.0), "lat_n": lat_n, "p": p}
    return out


def sql_codes(cur, where: str, params: dict) -> list[dict]:
    cur.execute(f"SELECT coalesce(status_code, 0), count(*) FROM requests WHERE {where} GROUP BY 1 ORDER BY 1", params)
    return [{"code": c, "count": n} for c, n in cur.fetchall()]


def summary_of(g: dict | None, all_time: int | None = None) -> dict:
    g = g or {"n": 0, "ok": 0, "c4": 0, "c5": 0, "avg": 0.0, "p": [0.0, 0.0, 0.0]}
    n = g["n"]
    return {"totalRequests": n, "totalRequestsAllTime": n if all_time is None else all_time, "avgLatency": g["avg"],
            "errorRate": g["c5"] * 100.0 / n if n else 0.0, "availability": g["ok"] * 100.0 / n if n else 100.0,
            "p50Latency": g["p"][0], "p95Latency": g["p"][1], "p99Latency": g["p"][2], "serverErrors": g["c5"],
            "clientErrors": g["c4"], "successfulRequests": g["ok"]}


def breakdowns(groups: dict, seconds: float) -> list[dict]:
    rows = [{"name": k, "requests": g["n"], "requestsPerSecond": g["n"] / seconds,
             "errorRate": g["c5"] * 100.0 / g["n"], "p50Latency": g["p"][0], "p95Latency": g["p"][1],
             "p99Latency": g["p"][2]} for k, g in groups.items()]
    return sorted(rows, key=lambda b: (-b["requests"], b["name"]))


def assert_close(published, expected, where: str = "") -> None:
    """Counts equal; percentiles within 1 % relative; other floats within TOLERANCE; recursively."""
    if isinstance(expected, dict):
        for k, v in expected.items():
            assert k in published, f"{where}.{k} missing"
            if k in PERCENTILE_KEYS and v is not None:
                assert published[k] == pytest.approx(v, rel=RELATIVE_ACCURACY, abs=TOLERANCE), f"{where}.{k}"
            else:
                assert_close(published[k], v, f"{where}.{k}")
    elif isinstance(expected, list):
        assert len(published) == len(expected), f"{where}: {len(published)} != {len(expected)}"
        for i, (p, e) in enumerate(zip(published, expected, strict=True)):
            assert_close(p, e, f"{where}[{i}]")
    elif isinstance(expected, float):
        assert published == pytest.approx(expected, abs=TOLERANCE), where
    else:
        assert published == expected, where


def between(a: float, b: float) -> tuple[str, dict]:
    return '"timestamp" >= to_timestamp(%(a)s) AND "timestamp" < to_timestamp(%(b)s)', {"a": a, "b": b}


def expected_series(cur, snapshot: dict, end: datetime, route: str | None = None) -> None:
    """The 12 clock-aligned 5-minute groups, the last one up to the end of the minute holding ``end``."""
    minute = math.ceil(end.timestamp() / 60) - 1
    last_group = minute // 5
    extra = f" AND {route_sql('path')} = %(route)s" if route else ""
    for i, g in enumerate(range(last_group - 11, last_group + 1)):
        top = (g + 1) * 300 if g < last_group else (minute + 1) * 60
        where, params = between(g * 300, top)
        stats = sql_group(cur, where + extra, params | {"route": route}).get("*")
        seconds = 300 if g < last_group else end.timestamp() - g * 300
        assert snapshot["requestRate"]["data"][i]["value"] == pytest.approx(
            (stats["n"] if stats else 0) / seconds, abs=TOLERANCE)
        for j, key in enumerate(("p50", "p95", "p99")):
            value = snapshot["latency"][key]["data"][i]["value"]
            if stats is None or stats["lat_n"] == 0:
                assert value is None, f"latency.{key}[{i}] of an empty bucket must be null"
            else:
                assert value == pytest.approx(stats["p"][j], rel=RELATIVE_ACCURACY, abs=TOLERANCE), f"{key}[{i}]"
        err = stats["c5"] * 100.0 / stats["n"] if stats else 0.0
        assert snapshot["errorRate"]["data"][i]["value"] == pytest.approx(err, abs=TOLERANCE)


def assert_rollup_snapshot(conn, snapshot: dict, end: datetime) -> None:
    """Every figure of a summary snapshot against SQL over the same rows and windows."""
    minute = math.ceil(end.timestamp() / 60) - 1
    top = (minute + 1) * 60
    route, upstream = route_sql("path"), "coalesce(upstream, 'unknown')"
    with conn.cursor() as cur:
        cur.execute('SELECT count(*) FROM requests WHERE "timestamp" < to_timestamp(%s)', (top,))
        all_time = cur.fetchone()[0]
        where, params = between(top - 86400, top)
        assert snapshot["window"]["start"] == datetime.fromtimestamp(top - 86400, UTC).isoformat(
            timespec="milliseconds").replace("+00:00", "Z")
        assert_close(snapshot["summary"], summary_of(sql_group(cur, where, params).get("*"), all_time), "summary")
        assert_close(snapshot["statusCodes"], sql_codes(cur, where, params), "statusCodes")
        assert_close(snapshot["routes"], breakdowns(sql_group(cur, where, params, route), 86400), "routes")
        assert_close(snapshot["upstreams"], breakdowns(sql_group(cur, where, params, upstream), 86400), "upstreams")
        for name, minutes in (("lastHour", 60), ("last5Minutes", 5)):
            where, params = between(top - minutes * 60, top)
            recent = snapshot[name]
            assert_close(recent["summary"], summary_of(sql_group(cur, where, params).get("*")), f"{name}.summary")
            assert_close(recent["statusCodes"], sql_codes(cur, where, params), f"{name}.statusCodes")
            for field, key in (("routes", route), ("upstreams", upstream)):
                assert_close(recent[field], breakdowns(sql_group(cur, where, params, key), minutes * 60),
                             f"{name}.{field}")
        expected_series(cur, snapshot, end)


def assert_route_snapshot(conn, snapshot: dict, end: datetime) -> None:
    """A per-route snapshot: the route's own 24 h summary, status codes, upstreams and series."""
    minute = math.ceil(end.timestamp() / 60) - 1
    top = (minute + 1) * 60
    where, params = between(top - 86400, top)
    where += f" AND {route_sql('path')} = %(route)s"
    params["route"] = snapshot["route"]
    with conn.cursor() as cur:
        assert_close(snapshot["summary"], summary_of(sql_group(cur, where, params).get("*")), "route summary")
        assert_close(snapshot["statusCodes"], sql_codes(cur, where, params), "route statusCodes")
        ups = breakdowns(sql_group(cur, where, params, "coalesce(upstream, 'unknown')"), 86400)
        assert_close(snapshot["upstreams"], ups, "route upstreams")
        expected_series(cur, snapshot, end, snapshot["route"])


def built(db) -> IncrementalAggregation:
    """An aggregation that has folded the whole existing log."""
    aggregation = IncrementalAggregation(TimeColumn(None))
    aggregation.tick(db, [])
    while aggregation.backfill_step(db):
        pass
    return aggregation


def test_every_figure_at_every_level_matches_sql_over_the_same_rows(db):
    schema.upgrade(db)
    end = now_end()
    insert(db, make_rows(21, 3000, end=end))
    aggregation = built(db)
    late = [(end - timedelta(seconds=s), "/api/users/77", 503, 12.5, "users-svc") for s in (1, 30, 59)]
    insert(db, make_rows(22, 600, end=end) + late)  # new rows, some timestamped up to an hour in the past
    (figures,) = aggregation.tick(db, [end])
    snap = summary_snapshot(figures, 3)
    assert snap["complete"] is True and snap["summary"]["totalRequests"] > 1500 and len(snap["routes"]) >= 5
    assert_rollup_snapshot(db, snap, end)
    for route, entry in busiest_routes(figures, 3):
        assert_route_snapshot(db, route_snapshot(figures, route, entry, 5), end)


def test_a_transaction_held_open_across_two_ticks_is_counted_once(db, database_url):
    schema.upgrade(db)
    end = now_end()
    insert(db, make_rows(23, 300, end=end))
    aggregation = built(db)
    held = psycopg2.connect(database_url)
    try:
        with held.cursor() as cur:  # ids are taken now, the commit comes two ticks later
            for i in range(40):
                cur.execute(INSERT, (end - timedelta(seconds=60), f"/api/held/{i}", 500, 42.0, "held-svc"))
        insert(db, make_rows(24, 200, end=end))  # later ids, committed at once
        aggregation.tick(db, [])
        aggregation.tick(db, [])
        held.commit()
    finally:
        held.close()
    for _ in range(3):
        (figures,) = aggregation.tick(db, [end])
    snap = summary_snapshot(figures, 3)
    by_route = {r["name"]: r["requests"] for r in snap["routes"]}
    assert by_route.get("/api/held/:id") == 40, "rows of the transaction held open were lost or counted twice"
    assert_rollup_snapshot(db, snap, end)


def test_a_restarted_or_second_publisher_resumes_from_the_rollups_without_rescanning(db):
    schema.upgrade(db)
    end = now_end()
    insert(db, make_rows(25, 2000, end=end))
    first = built(db)
    (before,) = first.tick(db, [end])
    with db, db.cursor() as cur:  # a second publisher that rescanned the log would now find nothing
        cur.execute("ALTER TABLE requests RENAME TO requests_kept")
        cur.execute("CREATE TABLE requests (LIKE requests_kept INCLUDING ALL)")
    second = IncrementalAggregation(TimeColumn(None))
    (again,) = second.tick(db, [end])
    with db, db.cursor() as cur:
        cur.execute("DROP TABLE requests")
        cur.execute("ALTER TABLE requests_kept RENAME TO requests")
    assert summary_snapshot(again, 3) == summary_snapshot(before, 3)
    insert(db, make_rows(26, 300, end=end))
    (one,) = first.tick(db, [end])  # the first folds the new rows; the second follows the change log
    (two,) = second.tick(db, [end])
    assert summary_snapshot(one, 3) == summary_snapshot(two, 3)
    assert_rollup_snapshot(db, summary_snapshot(two, 3), end)


def test_a_bucket_without_requests_has_no_latency(db):
    schema.upgrade(db)
    end = now_end()
    insert(db, [(end - timedelta(minutes=50), "/a", 200, 10.0, None), (end - timedelta(seconds=5), "/a", 200, 20.0,
                                                                         None)])
    (figures,) = built(db).tick(db, [end])
    snap = summary_snapshot(figures, 3)
    values = [p["value"] for p in snap["latency"]["p50"]["data"]]
    assert values.count(None) >= 9 and 0 not in values and values[-1] == pytest.approx(20.0, rel=0.01)
    assert_rollup_snapshot(db, snap, end)


def test_first_start_builds_the_rollups_in_chunks_while_ticks_keep_publishing(db, monkeypatch, caplog):
    import flexgate_stream.tick.incremental as incremental

    monkeypatch.setattr(incremental, "BACKFILL_IDS", 500)
    schema.upgrade(db)
    end = now_end()
    insert(db, make_rows(27, 2000, end=end))
    aggregation = IncrementalAggregation(TimeColumn(None))
    caplog.set_level("INFO", logger="workers.publisher")
    (first,) = aggregation.tick(db, [end])
    assert first.complete is False and first.summary.requests == 0  # published at once, before the backfill
    insert(db, make_rows(28, 100, end=end))
    steps = 0
    while aggregation.backfill_step(db):
        steps += 1
        (partial,) = aggregation.tick(db, [end])  # ticks go on between chunks
        assert partial.complete is False
    (done,) = aggregation.tick(db, [end])
    assert steps >= 3 and done.complete is True
    assert [r.getMessage() for r in caplog.records if "up to 100 %" in r.getMessage()]
    assert_rollup_snapshot(db, summary_snapshot(done, 3), end)


def test_old_rollups_are_pruned_and_still_counted_in_the_all_time_total(db, monkeypatch):
    import flexgate_stream.tick.incremental as incremental

    schema.upgrade(db)
    end = now_end()
    old = [(end - timedelta(hours=h), "/api/old", 200, 5.0, None) for h in (30, 40, 50)]
    insert(db, old + make_rows(29, 300, end=end))
    aggregation = built(db)
    (before,) = aggregation.tick(db, [end])
    monkeypatch.setattr(incremental, "KEEP_MINUTES", 35 * 60)  # the 40 h and 50 h old minutes are now too old
    (after,) = aggregation.tick(db, [end])
    with db.cursor() as cur:
        cur.execute("SELECT count(*) FROM request_rollups WHERE route = '/api/old'")
        assert cur.fetchone()[0] == 1
    db.rollback()
    assert after.all_time == before.all_time and summary_snapshot(after, 3)["summary"] == summary_snapshot(
        before, 3)["summary"]
    fresh = IncrementalAggregation(TimeColumn(None))  # a restart reads the pruned count back
    (again,) = fresh.tick(db, [end])
    assert again.all_time == before.all_time


def test_a_naive_gateway_column_is_bucketed_in_its_own_zone(db):
    """A gateway table with ``timestamp without time zone`` in Europe/Berlin: the same figures as SQL reads."""
    with db, db.cursor() as cur:
        cur.execute("CREATE TABLE requests (id BIGSERIAL PRIMARY KEY, timestamp TIMESTAMP NOT NULL DEFAULT NOW(),"
                    " method VARCHAR(10), path TEXT, status_code INT, response_time_ms NUMERIC(10,2),"
                    " upstream VARCHAR(255))")
    schema.upgrade(db)
    end = now_end()
    insert(db, make_rows(30, 1500, end=end), zone="Europe/Berlin")
    aggregation = IncrementalAggregation(TimeColumn("Europe/Berlin"))
    aggregation.tick(db, [])
    while aggregation.backfill_step(db):
        pass
    insert(db, make_rows(31, 300, end=end), zone="Europe/Berlin")
    (figures,) = aggregation.tick(db, [end])
    with db, db.cursor() as cur:
        cur.execute("SET TIME ZONE 'Europe/Berlin'")  # so the checks compare wall-clock values in that zone
    assert_rollup_snapshot(db, summary_snapshot(figures, 3), end)
