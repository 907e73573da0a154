"""Hand-made messages in the shapes of ``flexgate_stream.messages``, for the test suite and the benchmarks.

One snapshot factory: realistic figures (twelve 5-minute points per series, routes, upstreams, status codes),
a windowEnd unique per call, and every field the dashboard and the original admin UI read; and the pages of
the route and upstream index.
"""

from __future__ import annotations

import itertools
import math
from datetime import UTC, datetime, timedelta
from typing import Any

from flexgate_stream.messages import OTHER
from flexgate_stream.timestamps import iso

_clock = itertools.count(1)



def _series(name: str, unit: str, end: datetime, base: float, swing: float) -> dict[str, Any]:
    points = []
    for i in range(12):
        at = end - timedelta(minutes=5 * (11 - i))
        points.append({"timestamp": iso(at), "value": round(base + swing * math.sin(i / 2), 3)})
    return {"name": name, "data": points, "unit": unit}


def _breakdown(name: str, count: int, error_rate: float) -> dict[str, Any]:
    return {"name": name, "requests": count, "requestsPerSecond": round(count / 3600, 3), "errorRate": error_rate,
            "p50Latency": 30.0, "p95Latency": 170.0, "p99Latency": 450.0}


def sample_snapshot(total: int, *, route: str | None = None, upstream: str | None = None,
                    end: datetime | None = None, taken: datetime | None = None, rps: float = 42.0,
                    error_rate: float = 0.5, availability: float = 99.0, routes: dict[str, int] | None = None,
                    route_count: int | None = None, upstreams: dict[str, int] | None = None,
                    upstream_count: int | None = None) -> dict[str, Any]:
    """A Snapshot of ``total`` requests (one route's or upstream's when ``route`` or ``upstream`` is given);
    ``end`` (its windowEnd) defaults to now plus a step unique per call; ``route_count`` and ``upstream_count``
    default to the names listed (an ``(other)`` entry among them not counted)."""
    end = end if end is not None else datetime.now(UTC) + timedelta(milliseconds=next(_clock))
    taken = taken if taken is not None else end
    routes = routes if routes is not None else {"/api/orders": total // 2, "/api/users/:id": total // 3,
                                                 "/health": total - total // 2 - total // 3}
    upstreams = upstreams if upstreams is not None else {"orders-svc": total * 2 // 3,
                                                         "users-svc": total - total * 2 // 3}
    rate = _series("Request rate", "req/s", end, rps, rps / 10)
    rate["data"][-1]["value"] = rps  # "now" is the newest point
    server_errors = round(total * error_rate / 100)
    successful = round(total * availability / 100)
    window_end = iso(end, timespec="microseconds")  # unique per call
    return {
        "type": "metrics",
        "version": 1,
        "summary": {
            "totalRequests": total, "totalRequestsAllTime": total * 10, "avgLatency": 48.2,
            "errorRate": error_rate, "availability": availability, "p50Latency": 31.5, "p95Latency": 182.4,
            "p99Latency": 512.9, "serverErrors": server_errors, "clientErrors": total - successful - server_errors,
            "successfulRequests": successful,
        },
        "window": {"name": "24h", "start": iso(end - timedelta(hours=24)), "end": window_end},
        "windowEnd": window_end,
        "requestRate": rate,
        "latency": {key: _series(key, "ms", end, base, base / 6)
                    for key, base in (("p50", 31.0), ("p95", 180.0), ("p99", 480.0))},
        "errorRate": _series("Error rate", "%", end, error_rate, error_rate / 4),
        "statusCodes": [{"code": 200, "count": successful}, {"code": 404, "count": total - successful - server_errors},
                        {"code": 503, "count": server_errors}],
        "routes": [_breakdown(name, count, error_rate) for name, count in routes.items()],
        "upstreams": [_breakdown(name, count, error_rate) for name, count in upstreams.items()],
        "routeCount": route_count if route_count is not None else len(set(routes) - {OTHER}),
        "upstreamCount": upstream_count if upstream_count is not None else len(set(upstreams) - {OTHER}),
        "route": route,
        "upstream": upstream,
        "timestamp": iso(taken),
        "lastHour": None,
        "last5Minutes": None,
        "complete": True,
    }


def sample_alert(rule: str, state: str, *, severity: str = "warning", value: float | None = None,
                 threshold: float | None = None, route: str | None = None) -> dict[str, Any]:
    """An Alert as messages.Alert describes it."""
    now = iso(datetime.now(UTC) + timedelta(milliseconds=next(_clock)))
    return {"type": "alert", "id": f"{rule}:{route or '*'}", "rule": rule, "severity": severity, "state": state,
            "value": value, "threshold": threshold, "route": route, "startedAt": now, "at": now}


def sample_index_pages(kind: str, requests: dict[str, int], *, per_page: int = 100, end: datetime | None = None,
                       limit: int = 1000, overflow: int = 0) -> list[dict[str, Any]]:
    """The GroupIndex pages of ``kind`` listing ``requests`` (name -> requests over 24 h), busiest first."""
    window_end = iso(end if end is not None else datetime.now(UTC) + timedelta(milliseconds=next(_clock)),
                     timespec="microseconds")
    ordered = sorted(requests.items(), key=lambda item: (-item[1], item[0]))
    chunks = [ordered[i:i + per_page] for i in range(0, len(ordered), per_page)] or [[]]
    return [{"type": "index", "version": 1, "kind": kind, "windowEnd": window_end, "page": number,
             "pages": len(chunks), "total": len(ordered), "limit": limit, "overflowRequests": overflow,
             "entries": [{"name": name, "last24Hours": _breakdown(name, count, 0.5),
                          "lastHour": _breakdown(name, count // 24, 0.5),
                          "last5Minutes": _breakdown(name, count // 288, 0.5)} for name, count in chunk]}
            for number, chunk in enumerate(chunks)]
