"""What every published figure should be, computed by SQL over the same rows, and the comparisons.

Counts must be exact; percentiles within 1 % (relative) of ``percentile_cont``; other floats within half a
published unit.
"""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime

import pytest

from flexgate_stream.messages import OTHER
from flexgate_stream.tick.routes import route_sql
from flexgate_stream.tick.sketch import RELATIVE_ACCURACY

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


def listed(cur, where: str, params: dict, key: str, published: list[dict], seconds: float) -> list[dict]:
    """The expected entries of a list that shows the busiest groups, then "(other)" for all the rest."""
    names = [entry["name"] for entry in published if entry["name"] != OTHER]
    shown = f"CASE WHEN {key} = ANY(%(shown)s) THEN {key} ELSE '{OTHER}' END"
    rows = breakdowns(sql_group(cur, where, params | {"shown": names}, shown), seconds)
    return [r for r in rows if r["name"] != OTHER] + [r for r in rows if r["name"] == OTHER]


def percentile_close(published: float, expected: float) -> bool:
    """A published percentile against SQL's: within the sketch's relative accuracy, plus the rounding to three
    decimals (a value near the edge of its bin is published up to RELATIVE_ACCURACY off, then rounded)."""
    return abs(published - expected) <= RELATIVE_ACCURACY * abs(expected) + TOLERANCE


def assert_close(published, expected, where: str = "") -> None:
    """Counts equal; percentiles within 1 % relative; other floats within TOLERANCE; recursively."""
    if isinstance(expected, dict):
        for k, v in expected.items():
            assert k in published, f"{where}.{k} missing"
            if k in PERCENTILE_KEYS and v is not None:
                assert percentile_close(published[k], v), \
                    f"{where}.{k}: published {published[k]!r}, SQL {v!r}; published {published!r}; SQL {expected!r}"
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
    """The 12 clock-aligned 5-minute groups, the last one up to ``end``."""
    minute = math.ceil(end.timestamp() / 60) - 1
    last_group = minute // 5
    extra = f" AND {route_sql('path')} = %(route)s" if route else ""
    for i, g in enumerate(range(last_group - 11, last_group + 1)):
        top = (g + 1) * 300 if g < last_group else end.timestamp()
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
                assert percentile_close(value, stats["p"][j]), f"{key}[{i}]: published {value!r}, SQL {stats['p'][j]!r}"
        err = stats["c5"] * 100.0 / stats["n"] if stats else 0.0
        assert snapshot["errorRate"]["data"][i]["value"] == pytest.approx(err, abs=TOLERANCE)


def assert_rollup_snapshot(conn, snapshot: dict, end: datetime) -> None:
    """Every figure of a summary snapshot against SQL over the rows stamped inside each window it declares:
    from the start of a minute (24 h, 1 h, 5 min before the end of the minute holding ``end``) to ``end``."""
    minute = math.ceil(end.timestamp() / 60) - 1
    top = (minute + 1) * 60
    route, upstream = route_sql("path"), "coalesce(upstream, 'unknown')"
    with conn.cursor() as cur:
        cur.execute('SELECT count(*) FROM requests WHERE "timestamp" < to_timestamp(%s)', (end.timestamp(),))
        all_time = cur.fetchone()[0]
        where, params = between(top - 86400, end.timestamp())
        assert snapshot["window"]["start"] == datetime.fromtimestamp(top - 86400, UTC).isoformat(
            timespec="milliseconds").replace("+00:00", "Z")
        assert_close(snapshot["summary"], summary_of(sql_group(cur, where, params).get("*"), all_time), "summary")
        assert_close(snapshot["statusCodes"], sql_codes(cur, where, params), "statusCodes")
        assert_close(snapshot["routes"], listed(cur, where, params, route, snapshot["routes"], 86400), "routes")
        assert_close(snapshot["upstreams"], listed(cur, where, params, upstream, snapshot["upstreams"], 86400),
                     "upstreams")
        for name, minutes in (("lastHour", 60), ("last5Minutes", 5)):
            where, params = between(top - minutes * 60, end.timestamp())
            recent = snapshot[name]
            assert_close(recent["summary"], summary_of(sql_group(cur, where, params).get("*")), f"{name}.summary")
            assert_close(recent["statusCodes"], sql_codes(cur, where, params), f"{name}.statusCodes")
            for field, key in (("routes", route), ("upstreams", upstream)):
                assert_close(recent[field], listed(cur, where, params, key, recent[field], minutes * 60),
                             f"{name}.{field}")
        expected_series(cur, snapshot, end)


def assert_route_snapshot(conn, snapshot: dict, end: datetime) -> None:
    """A per-route snapshot: the route's own 24 h summary, status codes, upstreams and series."""
    minute = math.ceil(end.timestamp() / 60) - 1
    top = (minute + 1) * 60
    where, params = between(top - 86400, end.timestamp())
    where += f" AND {route_sql('path')} = %(route)s"
    params["route"] = snapshot["route"]
    with conn.cursor() as cur:
        assert_close(snapshot["summary"], summary_of(sql_group(cur, where, params).get("*")), "route summary")
        assert_close(snapshot["statusCodes"], sql_codes(cur, where, params), "route statusCodes")
        ups = breakdowns(sql_group(cur, where, params, "coalesce(upstream, 'unknown')"), 86400)
        assert_close(snapshot["upstreams"], ups, "route upstreams")
        expected_series(cur, snapshot, end, snapshot["route"])
