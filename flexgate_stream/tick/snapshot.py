"""Shape a tick's figures into the messages of ``flexgate_stream.messages`` (pure, no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from flexgate_stream.messages import SCHEMA_VERSION, Breakdown, Series, Snapshot, StatusCount, Summary, Window
from flexgate_stream.tick.aggregation import (
    BREAKDOWN_SPAN,
    BUCKET_SECONDS,
    BUCKETS,
    RouteFigures,
    Stats,
    WindowFigures,
)

DECIMALS = 3  # published floats are rounded to 1 µs / 0.001 %; tests compare with this tolerance


def iso(at: datetime) -> str:
    """ISO 8601 in UTC with a ``Z`` and millisecond precision."""
    return at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def percent(part: int, whole: int, empty: float = 0.0) -> float:
    """``part`` as a percentage of ``whole``; ``empty`` when there is nothing to divide."""
    return round(part * 100.0 / whole, DECIMALS) if whole else empty


def summary_of(stats: Stats, all_time: int) -> Summary:
    """The original's ``summary`` object, as numbers."""
    p50, p95, p99 = (round(v, DECIMALS) for v in stats.percentiles)
    return Summary(
        totalRequests=stats.requests, totalRequestsAllTime=all_time,
        avgLatency=round(stats.avg_latency, DECIMALS), errorRate=percent(stats.server_errors, stats.requests),
        availability=percent(stats.success, stats.requests, empty=100.0),
        p50Latency=p50, p95Latency=p95, p99Latency=p99, serverErrors=stats.server_errors,
        clientErrors=stats.client_errors, successfulRequests=stats.success,
    )


def breakdown_of(name: str, stats: Stats, span: timedelta = BREAKDOWN_SPAN) -> Breakdown:
    """Figures of one route or upstream over ``span``."""
    p50, p95, p99 = (round(v, DECIMALS) for v in stats.percentiles)
    return Breakdown(name=name, requests=stats.requests,
                     requestsPerSecond=round(stats.requests / span.total_seconds(), DECIMALS),
                     errorRate=percent(stats.server_errors, stats.requests), p50Latency=p50, p95Latency=p95,
                     p99Latency=p99)


def top(groups: dict[str, Stats], limit: int) -> list[Breakdown]:
    """The ``limit`` busiest groups, busiest first (ties by name)."""
    ranked = sorted(groups.items(), key=lambda item: (-item[1].requests, item[0]))[:limit]
    return [breakdown_of(name, stats) for name, stats in ranked]


def series_of(buckets: dict[int, Stats], start: datetime) -> tuple[Series, dict[str, Series], Series]:
    """Request rate, latency p50/p95/p99 and 5xx rate per 5-minute bucket; empty buckets are zeros."""
    stamps = [iso(start + timedelta(seconds=i * BUCKET_SECONDS)) for i in range(BUCKETS)]
    cells = [buckets.get(i, Stats()) for i in range(BUCKETS)]

    def series(name: str, unit: str, values: list[float]) -> Series:
        """One series over the bucket timestamps."""
        points = [{"timestamp": t, "value": v} for t, v in zip(stamps, values, strict=True)]
        return Series(name=name, unit=unit, data=points)

    rate = series("Request rate", "req/s", [round(c.requests / BUCKET_SECONDS, DECIMALS) for c in cells])
    latency = {
        key: series(f"{key.upper()} latency", "ms", [round(c.percentiles[i], DECIMALS) for c in cells])
        for i, key in enumerate(("p50", "p95", "p99"))
    }
    errors = series("Error rate", "%", [percent(c.server_errors, c.requests) for c in cells])
    return rate, latency, errors


def _snapshot(figures: WindowFigures, window: Window, summary: Summary, buckets: dict[int, Stats],
              status_codes: dict[int, int], routes: list[Breakdown], upstreams: list[Breakdown],
              route: str | None) -> Snapshot:
    rate, latency, errors = series_of(buckets, figures.breakdown_start)
    codes = [StatusCount(code=code, count=n) for code, n in sorted(status_codes.items())]
    end = iso(figures.window_end)
    return Snapshot(type="metrics", version=SCHEMA_VERSION, summary=summary, window=window, windowEnd=end,
                    requestRate=rate, latency=latency, errorRate=errors, statusCodes=codes, routes=routes,
                    upstreams=upstreams, route=route, timestamp=end)


def summary_snapshot(figures: WindowFigures, top_routes: int) -> Snapshot:
    """The ``metrics.summary`` message: 24 h summary, last hour's series, busiest routes and upstreams."""
    window = Window(name="24h", start=iso(figures.summary_start), end=iso(figures.window_end))
    routes = {name: entry.stats for name, entry in figures.routes.items()}
    return _snapshot(figures, window, summary_of(figures.summary, figures.all_time), figures.buckets,
                     figures.status_codes, top(routes, top_routes), top(figures.upstreams, top_routes), None)


def route_snapshot(figures: WindowFigures, route: str, entry: RouteFigures, top_upstreams: int) -> Snapshot:
    """The same shape for one route, over the breakdown window (``window.name`` is "1h").

    A per-route all-time count is not kept: ``totalRequestsAllTime`` is the route's count in the window.
    """
    window = Window(name="1h", start=iso(figures.breakdown_start), end=iso(figures.window_end))
    return _snapshot(figures, window, summary_of(entry.stats, entry.stats.requests), entry.buckets,
                     entry.status_codes, [breakdown_of(route, entry.stats)], top(entry.upstreams, top_upstreams),
                     route)


def busiest_routes(figures: WindowFigures, limit: int) -> list[tuple[str, RouteFigures]]:
    """The routes that get their own per-route snapshot, busiest first."""
    return sorted(figures.routes.items(), key=lambda item: (-item[1].stats.requests, item[0]))[:limit]
