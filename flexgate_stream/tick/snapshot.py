"""Shape a tick's figures into the messages of ``flexgate_stream.messages`` (pure, no I/O)."""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import lru_cache

from flexgate_stream.messages import (
    OTHER,
    SCHEMA_VERSION,
    Breakdown,
    GroupIndex,
    IndexEntry,
    RecentWindow,
    Series,
    Snapshot,
    StatusCount,
    Summary,
    Window,
    encode,
)
from flexgate_stream.tick.figures import (
    BREAKDOWN_SPAN,
    SERIES_BUCKET_SECONDS,
    SERIES_BUCKETS,
    SUMMARY_SPAN,
    IndexFigures,
    Ranking,
    RecentFigures,
    RouteFigures,
    Stats,
    WindowFigures,
)
from flexgate_stream.tick.memo import Memo
from flexgate_stream.tick.window_figures import route_recent
from flexgate_stream.timestamps import iso as _iso

RECENT_SPANS = {"1h": timedelta(hours=1), "5m": timedelta(minutes=5)}

DECIMALS = 3  # published floats are rounded to 1 µs / 0.001 %; tests compare with this tolerance

# A tick's messages share their few instants (window end and starts, series buckets): each is written once.
iso = lru_cache(maxsize=256)(_iso)


@lru_cache(maxsize=16)
def _stamps(start: datetime) -> tuple[str, ...]:
    """The series' bucket timestamps from ``start``."""
    return tuple(iso(start + timedelta(seconds=i * SERIES_BUCKET_SECONDS)) for i in range(SERIES_BUCKETS))


def percent(part: int, whole: int, empty: float = 0.0) -> float:
    """``part`` as a percentage of ``whole``; ``empty`` when there is nothing to divide."""
    return round(part * 100.0 / whole, DECIMALS) if whole else empty


# Rounding is most of shaping: the same figures come back in several messages and tick after tick (past series
# buckets, groups without new requests), so their rounded forms are remembered, keyed by value (never by object).
# A tick at 1,000 routes makes a few hundred new ones of each.
Triple = tuple[float, float, float]
BucketValues = tuple[float, float | None, float | None, float | None, float]  # request rate, p50, p95, p99, 5xx rate
_ROUNDED: Memo[Triple, Triple] = Memo(2048)
_RATES: Memo[tuple[int, int, timedelta], tuple[float, float]] = Memo(2048)  # requests per second, 5xx rate
_CELLS: Memo[tuple[int, int, int, Triple], BucketValues] = Memo(2048)


def _round3(values: Triple) -> Triple:
    return round(values[0], DECIMALS), round(values[1], DECIMALS), round(values[2], DECIMALS)


def rounded(percentiles: Triple) -> Triple:
    """p50, p95 and p99 rounded to DECIMALS."""
    return _ROUNDED.find(percentiles) or _ROUNDED.keep(percentiles, _round3(percentiles))


def summary_of(stats: Stats, all_time: int) -> Summary:
    """The original's ``summary`` object, as numbers."""
    p50, p95, p99 = rounded(stats.percentiles)
    return {"totalRequests": stats.requests, "totalRequestsAllTime": all_time,
            "avgLatency": round(stats.avg_latency, DECIMALS),
            "errorRate": percent(stats.server_errors, stats.requests),
            "availability": percent(stats.success, stats.requests, empty=100.0),
            "p50Latency": p50, "p95Latency": p95, "p99Latency": p99, "serverErrors": stats.server_errors,
            "clientErrors": stats.client_errors, "successfulRequests": stats.success}


def breakdown_of(name: str, stats: Stats, span: timedelta = BREAKDOWN_SPAN) -> Breakdown:
    """Figures of one route or upstream over ``span``."""
    p50, p95, p99 = rounded(stats.percentiles)
    requests = stats.requests
    key = (requests, stats.server_errors, span)
    rates = _RATES.find(key) or _RATES.keep(key, (round(requests / span.total_seconds(), DECIMALS),
                                                   percent(stats.server_errors, requests)))
    return {"name": name, "requests": requests, "requestsPerSecond": rates[0], "errorRate": rates[1],
            "p50Latency": p50, "p95Latency": p95, "p99Latency": p99}


def listed(ranking: Ranking, span: timedelta = BREAKDOWN_SPAN) -> list[Breakdown]:
    """The busiest groups, busiest first, then OTHER for the rest (so the entries sum to the window's total)."""
    out = [breakdown_of(name, stats, span) for name, stats in ranking.top.items()]
    if ranking.rest is not None and ranking.rest.requests:
        out.append(breakdown_of(OTHER, ranking.rest, span))
    return out


def _cell(stats: Stats) -> BucketValues:
    """One full bucket's request rate, p50, p95, p99 (None without latencies) and 5xx rate."""
    key = (stats.requests, stats.server_errors, stats.latency_count, stats.percentiles)
    return _CELLS.find(key) or _CELLS.keep(key, (
        round(stats.requests / SERIES_BUCKET_SECONDS, DECIMALS),
        *(rounded(stats.percentiles) if stats.latency_count else (None, None, None)),
        percent(stats.server_errors, stats.requests)))


_NO_CELL = _cell(Stats())


def _series(name: str, unit: str, stamps: tuple[str, ...], values: tuple[float | None, ...]) -> Series:
    """One series over the bucket timestamps."""
    return {"name": name, "unit": unit,
            "data": [{"timestamp": t, "value": v} for t, v in zip(stamps, values, strict=True)]}


def series_of(buckets: dict[int, Stats], start: datetime,
              last_seconds: float = SERIES_BUCKET_SECONDS) -> tuple[Series, dict[str, Series], Series]:
    """Request rate, latency p50/p95/p99 and 5xx rate per 5-minute bucket.

    A bucket without latencies has latency None (no point), never 0; the last bucket's rate is over
    the ``last_seconds`` it has covered so far.
    """
    stamps = _stamps(start)
    cells = [_cell(buckets[i]) if i in buckets else _NO_CELL for i in range(SERIES_BUCKETS)]
    rate, p50, p95, p99, errors = zip(*cells, strict=True)
    last = buckets.get(SERIES_BUCKETS - 1)
    rate = (*rate[:-1], round((last.requests if last else 0) / last_seconds, DECIMALS))
    latency = {"p50": _series("P50 latency", "ms", stamps, p50), "p95": _series("P95 latency", "ms", stamps, p95),
               "p99": _series("P99 latency", "ms", stamps, p99)}
    return (_series("Request rate", "req/s", stamps, rate), latency,
            _series("Error rate", "%", stamps, errors))


def codes_of(status_codes: dict[int, int]) -> list[StatusCount]:
    """Status codes with their counts, by code."""
    return [StatusCount(code=code, count=n) for code, n in sorted(status_codes.items()) if n]


def recent_of(window: RecentFigures, end: datetime) -> RecentWindow:
    """One recent window (the last hour or 5 minutes): summary, status codes, every route and upstream."""
    span = RECENT_SPANS.get(window.name, BREAKDOWN_SPAN)
    return RecentWindow(window=Window(name=window.name, start=iso(window.start), end=iso(end)),
                        summary=summary_of(window.stats, window.stats.requests),
                        statusCodes=codes_of(window.status_codes), routes=listed(window.routes, span),
                        upstreams=listed(window.upstreams, span), routeCount=window.routes.count,
                        upstreamCount=window.upstreams.count)


def _snapshot(figures: WindowFigures, window: Window, summary: Summary, entry: RouteFigures,
              lists: tuple[Ranking, Ranking], owner: tuple[str | None, str | None],
              recent: list[RecentFigures]) -> Snapshot:
    rate, latency, errors = series_of(entry.buckets, figures.breakdown_start, figures.last_bucket_seconds)
    end = iso(figures.window_end)
    span = SUMMARY_SPAN if figures.day_start else BREAKDOWN_SPAN
    shaped = {r.name: recent_of(r, figures.window_end) for r in recent}
    routes, upstreams = lists
    return Snapshot(type="metrics", version=SCHEMA_VERSION, summary=summary, window=window, windowEnd=end,
                    requestRate=rate, latency=latency, errorRate=errors, statusCodes=codes_of(entry.status_codes),
                    routes=listed(routes, span), upstreams=listed(upstreams, span), routeCount=routes.count,
                    upstreamCount=upstreams.count, route=owner[0], upstream=owner[1], timestamp=end,
                    lastHour=shaped.get("1h"), last5Minutes=shaped.get("5m"), complete=figures.complete)


def _window(figures: WindowFigures) -> Window:
    """24 h from the rollups, the last hour ("1h") from the full scan."""
    if figures.day_start:
        return Window(name="24h", start=iso(figures.summary_start), end=iso(figures.window_end))
    return Window(name="1h", start=iso(figures.breakdown_start), end=iso(figures.window_end))


def summary_snapshot(figures: WindowFigures, top_routes: int) -> Snapshot:
    """The ``metrics.summary`` message: 24 h summary, 5-minute series of the last hour, the busiest routes and
    upstreams of each window and the rest as one entry (from the full scan: the busiest over the last hour)."""
    window = Window(name="24h", start=iso(figures.summary_start), end=iso(figures.window_end))
    routes = figures.route_ranking or Ranking.of({n: e.stats for n, e in figures.routes.items()}, top_routes)
    upstreams = figures.upstream_ranking or Ranking.of(figures.upstreams, top_routes)
    whole = RouteFigures(figures.summary, figures.buckets, figures.status_codes)
    return _snapshot(figures, window, summary_of(figures.summary, figures.all_time), whole, (routes, upstreams),
                     (None, None), figures.recent)


def route_snapshot(figures: WindowFigures, route: str, entry: RouteFigures, top_upstreams: int) -> Snapshot:
    """The same shape for one route, its upstreams listed (a per-route all-time count is not kept:
    ``totalRequestsAllTime`` is the route's count in the window)."""
    own = Ranking({route: entry.stats}, None, 1)
    return _snapshot(figures, _window(figures), summary_of(entry.stats, entry.stats.requests), entry,
                     (own, _members(entry, top_upstreams)), (route, None), route_recent(figures, entry))


def upstream_snapshot(figures: WindowFigures, upstream: str, entry: RouteFigures, top_routes: int) -> Snapshot:
    """The same shape for one upstream, its routes listed."""
    own = Ranking({upstream: entry.stats}, None, 1)
    return _snapshot(figures, _window(figures), summary_of(entry.stats, entry.stats.requests), entry,
                     (_members(entry, top_routes), own), (None, upstream), route_recent(figures, entry))


def _members(entry: RouteFigures, limit: int) -> Ranking:
    """The busiest members of a group (a route's upstreams, an upstream's routes)."""
    ranked = Ranking.of(entry.upstreams, limit)
    ranked.count = max(ranked.count, entry.member_count)
    if ranked.count > len(ranked.top):
        left = entry.stats.requests - sum(s.requests for s in ranked.top.values())
        ranked.rest = Stats(requests=left)  # counts only: the members' latencies are not kept apart
    return ranked


def busiest_routes(figures: WindowFigures, limit: int) -> list[tuple[str, RouteFigures]]:
    """The routes that get their own per-route snapshot, busiest first."""
    return sorted(figures.routes.items(), key=lambda item: (-item[1].stats.requests, item[0]))[:limit]


def busiest_upstreams(figures: WindowFigures, limit: int) -> list[tuple[str, RouteFigures]]:
    """The upstreams that get their own per-upstream snapshot, busiest first."""
    return sorted(figures.upstream_groups.items(), key=lambda item: (-item[1].stats.requests, item[0]))[:limit]


def _index_entry(entry: IndexFigures) -> IndexEntry:
    return IndexEntry(name=entry.name, last24Hours=breakdown_of(entry.name, entry.day, SUMMARY_SPAN),
                      lastHour=breakdown_of(entry.name, entry.hour, RECENT_SPANS["1h"]),
                      last5Minutes=breakdown_of(entry.name, entry.five, RECENT_SPANS["5m"]))


def index_pages(figures: WindowFigures, kind: str, limit: int, overflow_requests: int,
                page_bytes: int) -> list[GroupIndex]:
    """The index of ``kind`` ("routes" or "upstreams") in pages of at most ``page_bytes`` of entries."""
    entries = [_index_entry(e) for e in (figures.index or {}).get(kind, [])]
    pages: list[list[IndexEntry]] = [[]]
    size = 0
    for entry in entries:
        cost = len(encode(entry)) + 1
        if pages[-1] and size + cost > page_bytes:
            pages.append([])
            size = 0
        pages[-1].append(entry)
        size += cost
    end = iso(figures.window_end)
    return [GroupIndex(type="index", version=SCHEMA_VERSION, kind=kind, windowEnd=end,  # type: ignore[typeddict-item]
                       page=i, pages=len(pages), total=len(entries), limit=limit, overflowRequests=overflow_requests,
                       entries=page) for i, page in enumerate(pages)]
