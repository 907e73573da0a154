"""Shape a tick's figures into the messages of ``flexgate_stream.messages`` (pure, no I/O)."""

from __future__ import annotations

from datetime import datetime, timedelta

from flexgate_stream.messages import (
    SCHEMA_VERSION,
    Breakdown,
    Point,
    RecentWindow,
    Series,
    Snapshot,
    StatusCount,
    Summary,
    Window,
)
from flexgate_stream.tick.aggregation import (
    BREAKDOWN_SPAN,
    BUCKET_SECONDS,
    BUCKETS,
    SUMMARY_SPAN,
    RecentFigures,
    RouteFigures,
    Stats,
    WindowFigures,
)
from flexgate_stream.tick.window_figures import route_recent
from flexgate_stream.timestamps import iso

RECENT_SPANS = {"1h": timedelta(hours=1), "5m": timedelta(minutes=5)}

DECIMALS = 3  # published floats are rounded to 1 µs / 0.001 %; tests compare with this tolerance



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


def top(groups: dict[str, Stats], limit: int | None, span: timedelta = BREAKDOWN_SPAN) -> list[Breakdown]:
    """The ``limit`` busiest groups (all when None), busiest first (ties by name)."""
    ranked = sorted(groups.items(), key=lambda item: (-item[1].requests, item[0]))[:limit]
    return [breakdown_of(name, stats, span) for name, stats in ranked]


def series_of(buckets: dict[int, Stats], start: datetime,
              last_seconds: float = BUCKET_SECONDS) -> tuple[Series, dict[str, Series], Series]:
    """Request rate, latency p50/p95/p99 and 5xx rate per 5-minute bucket.

    A bucket without latencies has latency None (no point), never 0; the last bucket's rate is over
    the ``last_seconds`` it has covered so far.
    """
    stamps = [iso(start + timedelta(seconds=i * BUCKET_SECONDS)) for i in range(BUCKETS)]
    cells = [buckets.get(i, Stats()) for i in range(BUCKETS)]
    spans = [BUCKET_SECONDS] * (BUCKETS - 1) + [last_seconds]

    def series(name: str, unit: str, values: list[float | None]) -> Series:
        """One series over the bucket timestamps."""
        points = [Point(timestamp=t, value=v) for t, v in zip(stamps, values, strict=True)]
        return Series(name=name, unit=unit, data=points)

    rate = series("Request rate", "req/s",
                  [round(c.requests / span, DECIMALS) for c, span in zip(cells, spans, strict=True)])
    latency = {
        key: series(f"{key.upper()} latency", "ms",
                    [round(c.percentiles[i], DECIMALS) if c.latency_count else None for c in cells])
        for i, key in enumerate(("p50", "p95", "p99"))
    }
    errors = series("Error rate", "%", [percent(c.server_errors, c.requests) for c in cells])
    return rate, latency, errors


def codes_of(status_codes: dict[int, int]) -> list[StatusCount]:
    """Status codes with their counts, by code."""
    return [StatusCount(code=code, count=n) for code, n in sorted(status_codes.items()) if n]


def recent_of(window: RecentFigures, end: datetime) -> RecentWindow:
    """One recent window (the last hour or 5 minutes): summary, status codes, every route and upstream."""
    span = RECENT_SPANS.get(window.name, BREAKDOWN_SPAN)
    return RecentWindow(window=Window(name=window.name, start=iso(window.start), end=iso(end)),
                        summary=summary_of(window.stats, window.stats.requests),
                        statusCodes=codes_of(window.status_codes), routes=top(window.routes, None, span),
                        upstreams=top(window.upstreams, None, span))


def _snapshot(figures: WindowFigures, window: Window, summary: Summary, buckets: dict[int, Stats],
              status_codes: dict[int, int], routes: list[Breakdown], upstreams: list[Breakdown],
              route: str | None, recent: list[RecentFigures]) -> Snapshot:
    rate, latency, errors = series_of(buckets, figures.breakdown_start, figures.last_bucket_seconds)
    end = iso(figures.window_end)
    shaped = {r.name: recent_of(r, figures.window_end) for r in recent}
    return Snapshot(type="metrics", version=SCHEMA_VERSION, summary=summary, window=window, windowEnd=end,
                    requestRate=rate, latency=latency, errorRate=errors, statusCodes=codes_of(status_codes),
                    routes=routes, upstreams=upstreams, route=route, timestamp=end, lastHour=shaped.get("1h"),
                    last5Minutes=shaped.get("5m"), complete=figures.complete)


def summary_snapshot(figures: WindowFigures, top_routes: int) -> Snapshot:
    """The ``metrics.summary`` message: 24 h summary, 5-minute series of the last hour, routes and upstreams.

    From the rollups every route and upstream is listed, over 24 h; from the full scan the busiest, over an hour.
    """
    window = Window(name="24h", start=iso(figures.summary_start), end=iso(figures.window_end))
    routes = {name: entry.stats for name, entry in figures.routes.items()}
    limit, span = (None, SUMMARY_SPAN) if figures.day_start else (top_routes, BREAKDOWN_SPAN)
    return _snapshot(figures, window, summary_of(figures.summary, figures.all_time), figures.buckets,
                     figures.status_codes, top(routes, limit, span), top(figures.upstreams, limit, span), None,
                     figures.recent)


def route_snapshot(figures: WindowFigures, route: str, entry: RouteFigures, top_upstreams: int) -> Snapshot:
    """The same shape for one route: over 24 h from the rollups, over the last hour ("1h") from the full scan.

    A per-route all-time count is not kept: ``totalRequestsAllTime`` is the route's count in the window.
    """
    if figures.day_start:
        window = Window(name="24h", start=iso(figures.summary_start), end=iso(figures.window_end))
        span = SUMMARY_SPAN
    else:
        window = Window(name="1h", start=iso(figures.breakdown_start), end=iso(figures.window_end))
        span = BREAKDOWN_SPAN
    return _snapshot(figures, window, summary_of(entry.stats, entry.stats.requests), entry.buckets,
                     entry.status_codes, [breakdown_of(route, entry.stats, span)],
                     top(entry.upstreams, top_upstreams, span), route, route_recent(figures, route))


def busiest_routes(figures: WindowFigures, limit: int) -> list[tuple[str, RouteFigures]]:
    """The routes that get their own per-route snapshot, busiest first."""
    return sorted(figures.routes.items(), key=lambda item: (-item[1].stats.requests, item[0]))[:limit]
