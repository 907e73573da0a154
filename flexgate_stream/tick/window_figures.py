"""Read a tick's WindowFigures out of the running totals (no I/O; cost: routes x upstreams, not rows)."""

from __future__ import annotations

from datetime import UTC, datetime

from flexgate_stream.tick.aggregation import RecentFigures, RouteFigures, Stats, WindowFigures
from flexgate_stream.tick.rollups import BUCKET_SECONDS
from flexgate_stream.tick.tally import DAY_MINUTES, FIVE_MINUTES, GROUP_MINUTES, HOUR_MINUTES, Agg, Levels, Tally

GROUP_SECONDS = GROUP_MINUTES * BUCKET_SECONDS


def _at(minute: int) -> datetime:
    return datetime.fromtimestamp(minute * BUCKET_SECONDS, UTC)


def _stats(groups: dict[str, Agg]) -> dict[str, Stats]:
    return {name: agg.stats() for name, agg in groups.items() if agg.requests}


def _recent(name: str, start: int, levels: Levels) -> RecentFigures:
    return RecentFigures(name, _at(start), levels.total.stats(), dict(levels.total.status_codes),
                         _stats(levels.routes), _stats(levels.upstreams))


def figures_of(tally: Tally, end: datetime, all_time: int, complete: bool = True) -> WindowFigures:
    """The figures of the windows ending at ``end`` (``tally`` is at the minute holding ``end``)."""
    minute = tally.minute
    groups = tally.series_groups()
    series_start = datetime.fromtimestamp(groups[0][0] * GROUP_SECONDS, UTC)
    last_seconds = max(1.0, end.timestamp() - groups[-1][0] * GROUP_SECONDS)
    buckets = {i: levels.total.stats() for i, (_g, levels) in enumerate(groups)
               if levels is not None and levels.total.requests}
    day = tally.day
    per_route_upstreams: dict[str, dict[str, Stats]] = {}
    for (route, upstream), agg in (day.pairs or {}).items():
        if agg.requests:
            per_route_upstreams.setdefault(route, {})[upstream] = agg.stats()
    routes = {}
    for route, agg in day.routes.items():
        if not agg.requests:
            continue
        route_buckets = {}
        for i, (_g, levels) in enumerate(groups):
            member = levels.routes.get(route) if levels is not None else None
            if member is not None and member.requests:
                route_buckets[i] = member.stats()
        routes[route] = RouteFigures(agg.stats(), route_buckets, dict(agg.status_codes),
                                     per_route_upstreams.get(route, {}))
    recent = [_recent("1h", minute - HOUR_MINUTES + 1, tally.hour),
              _recent("5m", minute - FIVE_MINUTES + 1, tally.five)]
    return WindowFigures(end, day.total.stats(), all_time, dict(day.total.status_codes), buckets, routes,
                         _stats(day.upstreams), day_start=_at(minute - DAY_MINUTES + 1), series_start=series_start,
                         last_bucket_seconds=last_seconds, recent=recent, complete=complete)


def route_recent(figures: WindowFigures, route: str) -> list[RecentFigures]:
    """The recent windows of one route (its own figures only)."""
    out = []
    for window in figures.recent:
        stats = window.routes.get(route, Stats())
        out.append(RecentFigures(window.name, window.start, stats, {}, {}, {}))
    return out
