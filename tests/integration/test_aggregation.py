"""Every figure of the full-scan reference (bench/full_scan.py), shaped into snapshots, against an independent
computation in Python over the same rows.

Tolerance: published floats are rounded to 3 decimals (snapshot.DECIMALS), so each float is compared
with abs=6e-4 (half a unit of the last published place, plus float64 noise); counts are exact.
Python's ``statistics.quantiles(method="inclusive")`` is the same definition as PostgreSQL's
``percentile_cont`` (linear interpolation between order statistics).
"""

from __future__ import annotations

import random
import statistics
from datetime import datetime, timedelta

import pytest

from bench.full_scan import AllTimeCounter, aggregate_window
from flexgate_stream.requestlog import schema
from flexgate_stream.tick.routes import fold_route, route_sql
from flexgate_stream.tick.snapshot import busiest_routes, route_snapshot, summary_snapshot
from flexgate_stream.tick.time_column import TimeColumn
from tests.integration.request_log import END, PATHS, insert, make_rows

pytestmark = pytest.mark.timeout(90)

TOLERANCE = 6e-4
def _stats(rows: list[tuple]) -> dict:
    codes = [0 if r[2] is None else r[2] for r in rows]
    lats = sorted(float(r[3]) for r in rows if r[3] is not None and r[3] >= 0)
    if len(lats) >= 2:
        cuts = statistics.quantiles(lats, n=100, method="inclusive")
        pcts = (cuts[49], cuts[94], cuts[98])
    else:
        pcts = (lats[0],) * 3 if lats else (0.0, 0.0, 0.0)
    return {"n": len(rows), "lats": len(lats), "ok": sum(200 <= c <= 299 for c in codes),
            "c4": sum(400 <= c <= 499 for c in codes),
            "c5": sum(500 <= c <= 599 for c in codes), "avg": statistics.fmean(lats) if lats else 0.0,
            "pcts": pcts, "codes": codes}


def _pct(part: int, whole: int, empty: float = 0.0) -> float:
    return part * 100.0 / whole if whole else empty


def expected_summary(rows: list[tuple], end: datetime) -> dict:
    """The ``summary`` object, computed in Python."""
    window = [r for r in rows if end - timedelta(hours=24) <= r[0] < end]
    s = _stats(window)
    return {"totalRequests": s["n"], "totalRequestsAllTime": sum(r[0] < end for r in rows),
            "avgLatency": s["avg"], "errorRate": _pct(s["c5"], s["n"]), "availability": _pct(s["ok"], s["n"], 100.0),
            "p50Latency": s["pcts"][0], "p95Latency": s["pcts"][1], "p99Latency": s["pcts"][2],
            "serverErrors": s["c5"], "clientErrors": s["c4"], "successfulRequests": s["ok"]}


def expected_status_codes(rows: list[tuple], end: datetime) -> list[dict]:
    codes = _stats([r for r in rows if end - timedelta(hours=24) <= r[0] < end])["codes"]
    return [{"code": c, "count": codes.count(c)} for c in sorted(set(codes))]


def expected_series(rows: list[tuple], end: datetime) -> dict:
    """Rate, p50/p95/p99 and 5xx rate per 5-minute bucket of the last hour."""
    start = end - timedelta(hours=1)
    out: dict[str, list[float]] = {"rate": [], "p50": [], "p95": [], "p99": [], "err": []}
    for i in range(12):
        low, high = start + timedelta(minutes=5 * i), start + timedelta(minutes=5 * (i + 1))
        s = _stats([r for r in rows if low <= r[0] < high])
        out["rate"].append(s["n"] / 300)
        for key, value in zip(("p50", "p95", "p99"), s["pcts"], strict=True):
            out[key].append(value if s["lats"] else None)  # no latency in the bucket: null, never 0
        out["err"].append(_pct(s["c5"], s["n"]))
    return out


def expected_breakdown(rows: list[tuple], end: datetime, key) -> dict[str, dict]:
    """Figures per route (key=fold) or upstream over the last hour."""
    hour = [r for r in rows if end - timedelta(hours=1) <= r[0] < end]
    groups: dict[str, list[tuple]] = {}
    for r in hour:
        groups.setdefault(key(r), []).append(r)
    result = {}
    for name, members in groups.items():
        s = _stats(members)
        result[name] = {"name": name, "requests": s["n"], "requestsPerSecond": s["n"] / 3600,
                        "errorRate": _pct(s["c5"], s["n"]), "p50Latency": s["pcts"][0],
                        "p95Latency": s["pcts"][1], "p99Latency": s["pcts"][2]}
    return result


def by_route(r: tuple) -> str:
    return fold_route(r[1])


def by_upstream(r: tuple) -> str:
    return r[4] or "unknown"


def assert_close(published, expected, where: str = "") -> None:
    """Counts equal, floats within TOLERANCE, recursively."""
    if isinstance(expected, dict):
        assert set(published) >= set(expected), where
        for k, v in expected.items():
            assert_close(published[k], v, f"{where}.{k}")
    elif isinstance(expected, list):
        assert len(published) == len(expected), where
        for i, (p, e) in enumerate(zip(published, expected, strict=True)):
            assert_close(p, e, f"{where}[{i}]")
    elif isinstance(expected, float):
        assert isinstance(published, int | float) and not isinstance(published, bool), where
        assert published == pytest.approx(expected, abs=TOLERANCE), where
    else:
        assert published == expected, where


def assert_snapshot_matches(snapshot: dict, rows: list[tuple], end: datetime, top: int) -> None:
    """Every figure of a published summary snapshot against the Python computation."""
    assert snapshot["type"] == "metrics" and snapshot["route"] is None
    assert snapshot["windowEnd"] == end.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    assert_close(snapshot["summary"], expected_summary(rows, end), "summary")
    assert_close(snapshot["statusCodes"], expected_status_codes(rows, end), "statusCodes")
    series = expected_series(rows, end)
    assert_close([p["value"] for p in snapshot["requestRate"]["data"]], series["rate"], "requestRate")
    for key in ("p50", "p95", "p99"):
        assert_close([p["value"] for p in snapshot["latency"][key]["data"]], series[key], f"latency.{key}")
    assert_close([p["value"] for p in snapshot["errorRate"]["data"]], series["err"], "errorRate")
    for field, key in (("routes", by_route), ("upstreams", by_upstream)):
        expected = expected_breakdown(rows, end, key)
        ranked = sorted(expected.values(), key=lambda b: (-b["requests"], b["name"]))[:top]
        assert_close(snapshot[field], ranked, field)


def figures_for(db, end: datetime, zone: str | None = None):
    return aggregate_window(db, end, TimeColumn(zone), AllTimeCounter(TimeColumn(zone)))


def test_every_figure_matches_an_independent_computation(db):
    schema.upgrade(db)
    rows = make_rows(1, 3000)
    insert(db, rows)
    figures = figures_for(db, END)
    assert_snapshot_matches(summary_snapshot(figures, 3), rows, END, top=3)
    assert figures.summary.requests > 1000 and len(figures.routes) >= 5  # the data exercises the code


def test_route_snapshot_matches_the_same_computation_for_one_route(db):
    schema.upgrade(db)
    rows = make_rows(2, 2000)
    insert(db, rows)
    figures = figures_for(db, END)
    route, entry = busiest_routes(figures, 1)[0]
    mine = [r for r in rows if fold_route(r[1]) == route]
    snap = route_snapshot(figures, route, entry, 5)
    hour = [r for r in mine if END - timedelta(hours=1) <= r[0] < END]
    s = _stats(hour)
    assert snap["route"] == route and snap["window"]["name"] == "1h"
    assert_close(snap["summary"], {"totalRequests": s["n"], "serverErrors": s["c5"], "avgLatency": s["avg"],
                                   "p50Latency": s["pcts"][0], "p99Latency": s["pcts"][2]}, "summary")
    assert_close(snap["statusCodes"], [{"code": c, "count": s["codes"].count(c)} for c in sorted(set(s["codes"]))])
    series = expected_series(mine, END)
    assert_close([p["value"] for p in snap["latency"]["p95"]["data"]], series["p95"], "latency.p95")
    ups = expected_breakdown(mine, END, by_upstream)
    assert_close(snap["upstreams"], sorted(ups.values(), key=lambda b: (-b["requests"], b["name"])))


def test_empty_table_gives_zeros_and_full_availability(db):
    schema.upgrade(db)
    snap = summary_snapshot(figures_for(db, END), 5)
    assert snap["summary"] == {"totalRequests": 0, "totalRequestsAllTime": 0, "avgLatency": 0.0, "errorRate": 0.0,
                               "availability": 100.0, "p50Latency": 0.0, "p95Latency": 0.0, "p99Latency": 0.0,
                               "serverErrors": 0, "clientErrors": 0, "successfulRequests": 0}
    assert snap["statusCodes"] == [] and snap["routes"] == [] and snap["upstreams"] == []
    assert len(snap["requestRate"]["data"]) == 12 and all(p["value"] == 0 for p in snap["requestRate"]["data"])


@pytest.mark.parametrize(("status", "latency"), [(200, 12.5), (None, None), (799, -1.0), (503, 0.0)])
def test_single_row_has_defined_figures(db, status, latency):
    schema.upgrade(db)
    rows = [(END - timedelta(minutes=1), "/api/users/1", status, latency, None)]
    insert(db, rows)
    assert_snapshot_matches(summary_snapshot(figures_for(db, END), 5), rows, END, top=5)


def test_naive_gateway_column_gives_the_same_windows_in_any_server_or_session_zone(postgres_server, db, database_url):
    """The same instants as Europe/Berlin wall-clock times in a gateway table, read by an Asia/Kathmandu session."""
    rows = make_rows(3, 1500) + [(END - timedelta(minutes=2), None, None, None, None)]  # gateway allows NULL path
    with db, db.cursor() as cur:
        cur.execute("CREATE TABLE requests (id BIGSERIAL PRIMARY KEY, timestamp TIMESTAMP NOT NULL DEFAULT NOW(),"
                    " method VARCHAR(10), path TEXT, status_code INT, response_time_ms NUMERIC(10,2),"
                    " upstream VARCHAR(255))")
        cur.execute(f'ALTER DATABASE "{database_url.rsplit("/", 1)[1]}" SET timezone = \'Asia/Kathmandu\'')
    insert(db, rows, zone="Europe/Berlin")
    import psycopg2

    fresh = psycopg2.connect(database_url)  # picks up the database's non-UTC TimeZone
    try:
        with fresh.cursor() as cur:
            cur.execute("SHOW TimeZone")
            assert cur.fetchone()[0] == "Asia/Kathmandu"
        for end in (END, END + timedelta(hours=2, seconds=35)):  # across the DST change
            snap = summary_snapshot(figures_for(fresh, end, zone="Europe/Berlin"), 4)
            assert_snapshot_matches(snap, rows, end, top=4)
    finally:
        fresh.close()


def test_all_time_count_stays_exact_as_the_window_moves(db):
    schema.upgrade(db)
    rows = make_rows(4, 800)
    insert(db, rows)
    column = TimeColumn(None)
    counter = AllTimeCounter(column)
    for step in range(0, 30 * 3600, 7 * 3600 + 5):  # moves the 24 h boundary over rows
        end = END + timedelta(seconds=step)
        if step == 7 * 3600 + 5:
            extra = make_rows(5, 50, end=end)
            insert(db, extra)
            rows += extra
        figures = aggregate_window(db, end, column, counter)
        assert figures.all_time == sum(r[0] < end for r in rows)


def test_route_folding_in_sql_equals_python(db):
    rnd = random.Random(6)
    from flexgate_stream.devstack.traffic import TrafficModel

    model = TrafficModel(7)
    paths = [p for p in PATHS if p] + [model.row(END)[2] for _ in range(300)] + [
        "/a/123/456", "/a/12x", "/v1/ABCDEF0123456789", "/a/0123456789abcde", "//", "", "/a?b", "/x#frag/1",
        "/u/3f2a9c1e-0000-4000-8000-00000000000A/y", "/" + "s" * 300, f"/n/{rnd.randint(0, 10**12)}",
    ]
    with db.cursor() as cur:
        cur.execute(f"SELECT p, {route_sql('p')} FROM unnest(%s::text[]) AS p", (paths,))
        folded = dict(cur.fetchall())
    assert {p: fold_route(p) for p in paths} == folded
    assert folded["/api/users/42"] == "/api/users/:id"
    assert folded["/a/123/456"] == "/a/:id/:id"
    assert folded["/api/products/abc"] == "/api/products/abc"


@pytest.fixture(scope="module")
def st_johns_server():
    """A second PostgreSQL whose server TimeZone is America/St_Johns (UTC-03:30, DST), stopped by PID."""
    import shutil
    import tempfile
    from pathlib import Path

    from flexgate_stream.devstack.servers import PostgresServer

    base = Path(tempfile.mkdtemp(prefix="flexgate-test-pg-tz-"))
    base.chmod(0o755)  # reachable by the unprivileged user the server runs as when we are root
    server = PostgresServer(base / "data", log_file=base / "postgres.log", timezone="America/St_Johns").start()
    yield server
    server.stop()
    shutil.rmtree(base, ignore_errors=True)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("zone", [None, "Asia/Kolkata"])
def test_windows_are_utc_on_a_server_in_another_zone(st_johns_server, zone):
    """timestamptz, or a naive column read in FLEXGATE_REQUESTS_TIMEZONE: same figures on a non-UTC server."""
    import psycopg2

    conn = psycopg2.connect(st_johns_server.url)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("SHOW TimeZone")
            assert cur.fetchone()[0] == "America/St_Johns"
            cur.execute("DROP TABLE IF EXISTS requests; DROP TABLE IF EXISTS schema_migrations")
            kind = "TIMESTAMPTZ" if zone is None else "TIMESTAMP"
            cur.execute(f'CREATE TABLE requests (id BIGSERIAL PRIMARY KEY, "timestamp" {kind} NOT NULL,'
                        " method VARCHAR(10), path TEXT, status_code INT, response_time_ms NUMERIC(10,2),"
                        " upstream VARCHAR(255))")
        rows = make_rows(8, 1200)
        insert(conn, rows, zone=zone)
        snap = summary_snapshot(figures_for(conn, END, zone=zone), 4)
        assert_snapshot_matches(snap, rows, END, top=4)
    finally:
        conn.close()
