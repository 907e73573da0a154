"""The figures a tick computes, before they are shaped into messages: plain records, no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

SUMMARY_SPAN = timedelta(hours=24)
BREAKDOWN_SPAN = timedelta(hours=1)
SERIES_BUCKET_SECONDS = 300  # the series: clock-aligned 5-minute buckets over the last hour
SERIES_BUCKETS = int(BREAKDOWN_SPAN.total_seconds()) // SERIES_BUCKET_SECONDS
PERCENTILES = (0.5, 0.95, 0.99)


@dataclass
class Stats:
    """Counts and latency figures of one group of requests."""

    requests: int = 0
    success: int = 0
    client_errors: int = 0
    server_errors: int = 0
    latency_count: int = 0
    latency_sum: float = 0.0
    percentiles: tuple[float, float, float] = (0.0, 0.0, 0.0)

    @property
    def avg_latency(self) -> float:
        """Mean of the valid latencies, 0 when there is none."""
        return self.latency_sum / self.latency_count if self.latency_count else 0.0


@dataclass
class RouteFigures:
    """One route (or upstream) over the breakdown window: totals, 5-minute buckets, status codes, and its
    upstreams (for an upstream: its routes); ``recent``: its figures over the recent windows, by name."""

    stats: Stats = field(default_factory=Stats)
    buckets: dict[int, Stats] = field(default_factory=dict)
    status_codes: dict[int, int] = field(default_factory=dict)
    upstreams: dict[str, Stats] = field(default_factory=dict)
    recent: dict[str, Stats] = field(default_factory=dict)
    member_count: int = 0  # upstreams (routes) in all; ``upstreams`` may hold only the busiest


@dataclass
class Ranking:
    """The busiest groups of a window, busiest first; ``rest``: every other group together; ``count``: all groups."""

    top: dict[str, Stats] = field(default_factory=dict)
    rest: Stats | None = None
    count: int = 0

    @classmethod
    def of(cls, groups: dict[str, Stats], limit: int | None) -> Ranking:
        """The ``limit`` busiest of ``groups`` (all when None), without a rest (the full scan's lists)."""
        ranked = sorted(groups.items(), key=lambda item: (-item[1].requests, item[0]))[:limit]
        return cls(dict(ranked), None, len(groups))


@dataclass
class RecentFigures:
    """All traffic, status codes, routes and upstreams over a recent window (the last hour, the last 5 minutes)."""

    name: str
    start: datetime
    stats: Stats
    status_codes: dict[int, int]
    routes: Ranking
    upstreams: Ranking


@dataclass
class WindowFigures:
    """Everything a tick publishes, before it is shaped into messages.

    From the rollups (``day_start`` set): summary, status codes, routes and upstreams cover the 1440
    one-minute buckets ending with the one that holds ``window_end``; ``buckets`` are the 12
    clock-aligned 5-minute groups ending with the one holding ``window_end`` (the last one partial,
    ``last_bucket_seconds`` long). From the full scan (``day_start`` None): exact 24 h and last hour.
    """

    window_end: datetime
    summary: Stats
    all_time: int
    status_codes: dict[int, int]
    buckets: dict[int, Stats]
    routes: dict[str, RouteFigures]
    upstreams: dict[str, Stats]
    day_start: datetime | None = None
    series_start: datetime | None = None
    last_bucket_seconds: float = SERIES_BUCKET_SECONDS
    recent: list[RecentFigures] = field(default_factory=list)
    complete: bool = True
    route_ranking: Ranking | None = None  # from the rollups: the busiest routes over 24 h and the rest
    upstream_ranking: Ranking | None = None
    upstream_groups: dict[str, RouteFigures] = field(default_factory=dict)  # the busiest upstreams, in full
    index: dict[str, list[IndexFigures]] | None = None  # "routes" and "upstreams": every tracked group, busiest first
    labels: dict[str, tuple[int, int]] = field(default_factory=dict)  # kind: (distinct labels, overflow requests)

    @property
    def summary_start(self) -> datetime:
        """Start of the 24 h summary window."""
        return self.day_start or self.window_end - SUMMARY_SPAN

    @property
    def breakdown_start(self) -> datetime:
        """Start of the series (and, from the full scan, of the one-hour breakdown window)."""
        return self.series_start or self.window_end - BREAKDOWN_SPAN

    def last_five_minutes(self, route: str | None = None) -> Stats | None:
        """Figures of the last 5 minutes, for all traffic or one route (None when it had no requests)."""
        five = next((r for r in self.recent if r.name == "5m"), None)
        if five is None:
            if route is None:
                return self.buckets.get(SERIES_BUCKETS - 1)
            entry = self.routes.get(route)
            return entry.buckets.get(SERIES_BUCKETS - 1) if entry else None
        if route is None:
            return five.stats
        entry = self.routes.get(route)
        return entry.recent.get("5m") if entry else None


@dataclass
class IndexFigures:
    """One route or upstream of the index: its figures over 24 h, the last hour and the last 5 minutes."""

    name: str
    day: Stats
    hour: Stats
    five: Stats


def percentile_triple(values: list[Any] | None) -> tuple[float, float, float]:
    """p50, p95 and p99 from PostgreSQL's percentile_cont array; zeros when there were no latencies."""
    if not values or None in values:
        return (0.0, 0.0, 0.0)
    p50, p95, p99 = (float(v) for v in values)
    return (p50, p95, p99)
