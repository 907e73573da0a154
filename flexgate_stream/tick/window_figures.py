"""Read a tick's WindowFigures out of the running totals (no I/O).

Cost: the groups a message shows (the busiest routes and upstreams of each window, and the rest as one
entry), not every group; the index of every group is read only when asked for.
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Iterable
from datetime import UTC, datetime

from flexgate_stream.tick.aggregate import Agg
from flexgate_stream.tick.figures import (
    SERIES_BUCKET_SECONDS,
    IndexFigures,
    Ranking,
    RecentFigures,
    RouteFigures,
    Stats,
    WindowFigures,
)
from flexgate_stream.tick.levels import Levels
from flexgate_stream.tick.rollups import MINUTE_SECONDS
from flexgate_stream.tick.tally import DAY_MINUTES, FIVE_MINUTES, HOUR_MINUTES, Tally

# Upper bounds of a summary's parts in bytes, for fitting it under its budget: a Breakdown without its name,
# a status code entry, and everything else (summaries, windows, five series of 12 points).
ENTRY_BYTES = 190
CODE_BYTES = 32
BASE_BYTES = 8192
RECENT = (("1h", HOUR_MINUTES), ("5m", FIVE_MINUTES))


def _at(minute: int) -> datetime:
    return datetime.fromtimestamp(minute * MINUTE_SECONDS, UTC)


def busiest(groups: dict[str, Agg], limit: int) -> list[str]:
    """The names of the ``limit`` busiest groups, busiest first (ties by name)."""
    return ranked(groups, limit)[0]


def ranked(groups: dict[str, Agg], limit: int) -> tuple[list[str], int]:
    """The ``limit`` busiest groups' names, busiest first (ties by name), and how many groups have requests."""
    counts = [agg.requests for agg in groups.values()]
    busy = len(counts) - counts.count(0)
    # The limit-th count first (ints, compared in C), then only the groups at or above it sorted by name too.
    floor = heapq.nlargest(limit, counts)[-1] if busy > limit > 0 else 1
    keyed = sorted([(-agg.requests, name) for name, agg in groups.items() if agg.requests >= floor])
    return [name for _n, name in keyed[:limit]], busy


def ranking(levels: Levels, kind: str, names: list[str], count: int) -> Ranking:
    """The groups ``names`` of ``kind`` (the busiest of ``count`` with requests) and, when there are more, the
    others as one ``rest``."""
    groups: dict[str, Agg] = getattr(levels, kind)
    rest = levels.rest(kind, names).stats() if count > len(names) else None
    return Ranking({name: groups[name].stats() for name in names}, rest, count)


Lists = dict[tuple[int, str], tuple[list[str], int]]  # (window: 0 day, 1 hour, 2 five; kind) -> ranked(.., top)


def _lists(tally: Tally, top: int) -> Lists:
    """Each window's ``top`` busiest routes and upstreams, ranked once per tick."""
    windows = enumerate((tally.day, tally.hour, tally.five))
    return {(i, kind): ranked(getattr(levels, kind), top) for i, levels in windows for kind in ("routes", "upstreams")}


def _ranking(levels: Levels, kind: str, busy: tuple[list[str], int], shown: int) -> Ranking:
    return ranking(levels, kind, busy[0][:shown], busy[1])


def _recent(name: str, start: int, levels: Levels, busy: tuple[tuple[list[str], int], ...],
            shown: int) -> RecentFigures:
    return RecentFigures(name, _at(start), levels.total.stats(), dict(levels.total.status_codes),
                         _ranking(levels, "routes", busy[0], shown), _ranking(levels, "upstreams", busy[1], shown))


def fitting(tally: Tally, top: int, budget: int, lists: Lists) -> int:
    """How many of the busiest groups each list of the summary can show with the message under ``budget`` bytes.

    Estimated from the names in ``lists`` (each window's busiest, ``_lists``; the rest of an entry is numbers of
    bounded width), so the lists are ranked once.
    """
    codes = sum(len(levels.total.status_codes) for levels in (tally.day, tally.hour, tally.five))
    costs = [[ENTRY_BYTES + len(json.dumps(name)) for name in names] for names, _count in lists.values()]
    fixed = BASE_BYTES + CODE_BYTES * codes + ENTRY_BYTES * len(lists)  # the "(other)" entries
    n = top
    while n > 1 and fixed + sum(sum(c[:n]) for c in costs) > budget:
        n = max(1, n * 3 // 4)
    return n


def _group(tally: Tally, kind: str, name: str, members: tuple[dict[str, Stats], int]) -> RouteFigures:
    """One route's (kind "routes") or upstream's figures: 24 h, series buckets, codes, members, recent windows."""
    agg = getattr(tally.day, kind)[name]
    buckets = {}
    for i, (_g, levels) in enumerate(tally.series_groups()):
        member = getattr(levels, kind).get(name) if levels is not None else None
        if member is not None and member.requests:
            buckets[i] = member.stats()
    recent = {}
    for window, levels in (("1h", tally.hour), ("5m", tally.five)):
        found = getattr(levels, kind).get(name)
        recent[window] = found.stats() if found is not None else Stats()
    return RouteFigures(agg.stats(), buckets, dict(agg.status_codes), members[0], recent, members[1])


def _members(tally: Tally, names: Iterable[str], upstream_side: bool,
             limit: int) -> dict[str, tuple[dict[str, Stats], int]]:
    """For each of ``names``: its ``limit`` busiest upstreams (or, ``upstream_side``, routes) over 24 h, and how
    many it has."""
    sides = tally.day.members["upstreams" if upstream_side else "routes"]
    out = {}
    for owner in names:
        members = sides.get(owner, {})
        top, count = ranked(members, limit)
        out[owner] = ({name: members[name].stats() for name in top}, count)
    return out


def figures_of(tally: Tally, end: datetime, all_time: int, complete: bool = True, top: int = 20,
               budget: int = 60_000, index: bool = False) -> WindowFigures:
    """The figures of the windows ending at ``end`` (``tally`` is at the minute holding ``end``).

    ``top``: how many of the busiest routes and upstreams get their own snapshot, and each window lists at most
    (fewer when their names would take the summary over ``budget`` bytes); ``index``: also every route and
    upstream tracked over 24 h.
    """
    minute = tally.minute
    lists = _lists(tally, top)
    shown = fitting(tally, top, budget, lists)
    groups = tally.series_groups()
    series_start = datetime.fromtimestamp(groups[0][0] * SERIES_BUCKET_SECONDS, UTC)
    last_seconds = max(1.0, end.timestamp() - groups[-1][0] * SERIES_BUCKET_SECONDS)
    buckets = {i: levels.total.stats() for i, (_g, levels) in enumerate(groups)
               if levels is not None and levels.total.requests}
    day = tally.day
    busy_routes, busy_upstreams = lists[(0, "routes")][0], lists[(0, "upstreams")][0]
    routes_ranked = _ranking(day, "routes", lists[(0, "routes")], shown)
    upstreams_ranked = _ranking(day, "upstreams", lists[(0, "upstreams")], shown)
    route_members = _members(tally, busy_routes, upstream_side=False, limit=top)
    upstream_members = _members(tally, busy_upstreams, upstream_side=True, limit=top)
    routes = {name: _group(tally, "routes", name, route_members[name]) for name in busy_routes}
    upstreams = {name: _group(tally, "upstreams", name, upstream_members[name]) for name in busy_upstreams}
    recent = [_recent(name, minute - length + 1, levels, (lists[(i, "routes")], lists[(i, "upstreams")]), shown)
              for i, ((name, length), levels) in enumerate(zip(RECENT, (tally.hour, tally.five), strict=True), 1)]
    return WindowFigures(end, day.total.stats(), all_time, dict(day.total.status_codes), buckets, routes,
                         dict(upstreams_ranked.top), day_start=_at(minute - DAY_MINUTES + 1),
                         series_start=series_start, last_bucket_seconds=last_seconds, recent=recent,
                         complete=complete, route_ranking=routes_ranked, upstream_ranking=upstreams_ranked,
                         upstream_groups=upstreams, index=index_of(tally) if index else None)


def index_of(tally: Tally) -> dict[str, list[IndexFigures]]:
    """Every route and every upstream with requests in the last 24 h, busiest first, over 24 h, 1 h and 5 min."""
    out = {}
    for kind in ("routes", "upstreams"):
        day, hour, five = (getattr(levels, kind) for levels in (tally.day, tally.hour, tally.five))
        entries = []
        for name in busiest(day, len(day)):
            entries.append(IndexFigures(name, day[name].stats(), _stats_of(hour.get(name)), _stats_of(five.get(name))))
        out[kind] = entries
    return out


def _stats_of(agg: Agg | None) -> Stats:
    return agg.stats() if agg is not None else Stats()


def route_recent(figures: WindowFigures, entry: RouteFigures) -> list[RecentFigures]:
    """The recent windows of one route or upstream (its own figures only)."""
    return [RecentFigures(window.name, window.start, entry.recent.get(window.name, Stats()), {}, Ranking(),
                          Ranking()) for window in figures.recent]
