"""The publisher's in-memory running totals over the rollups: last 24 h, last hour, last 5 minutes, series.

A window is a range of one-minute buckets ending with the bucket ``minute`` (the one holding the
window end). Moving it one minute adds the new minute's cells and removes the expired one's, so a
snapshot costs the number of routes and upstreams, not of requests. Cells of the last hour stay
in memory; older ones are read back from the rollups when they leave the 24 h window.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from flexgate_stream.tick.aggregate import Agg
from flexgate_stream.tick.figures import SERIES_BUCKET_SECONDS, SERIES_BUCKETS
from flexgate_stream.tick.rollups import MINUTE_SECONDS, Cell

DAY_MINUTES = 24 * 60
HOUR_MINUTES = 60
FIVE_MINUTES = 5
SERIES_BUCKET_MINUTES = SERIES_BUCKET_SECONDS // MINUTE_SECONDS  # a series bucket is a group of minutes


class Levels:
    """Aggregates of one window at every level: all traffic, per route, per upstream (and per route x upstream)."""

    def __init__(self, pairs: bool = False, upstreams: bool = True) -> None:
        self.total = Agg()
        self.routes: dict[str, Agg] = {}
        self.upstreams: dict[str, Agg] = {}
        self.pairs: dict[tuple[str, str], Agg] | None = {} if pairs else None
        # The same pair aggregates by route (its upstreams) and by upstream (its routes), kept with ``pairs``, so
        # a group's members are read without going over every pair.
        self.members: dict[str, dict[str, dict[str, Agg]]] = {"routes": {}, "upstreams": {}}
        self.by_upstream = upstreams
        # The groups a list last showed, by kind, and the sum of their aggregates, kept up to date as they change:
        # the rest of a list is then the total less one aggregate, not less each listed group's (``rest``).
        self.listed: dict[str, tuple[frozenset[str], Agg]] = {}

    def add(self, cell: Cell, sign: int = 1) -> None:
        """Add or remove one cell at every level; groups left empty are dropped."""
        self.total.add(cell, sign)
        _add(self.routes, cell.route, cell, sign)
        if self.by_upstream:
            _add(self.upstreams, cell.upstream, cell, sign)
        if self.pairs is not None:
            self.add_pair(cell, sign)
        for kind, (names, listed) in self.listed.items():
            if (cell.route if kind == "routes" else cell.upstream) in names:
                listed.add(cell, sign)

    def merge(self, other: Levels | Batch, sign: int) -> None:
        """Add or remove the totals, routes and upstreams of ``other`` (not its pairs)."""
        self.total.add(other.total, sign)
        for kind in ("routes", "upstreams") if self.by_upstream else ("routes",):
            groups = getattr(self, kind)
            names, listed = self.listed.get(kind, (frozenset(), None))
            for key, agg in getattr(other, kind).items():
                _add(groups, key, agg, sign)
                if key in names:
                    assert listed is not None
                    listed.add(agg, sign)

    def rest(self, kind: str, names: list[str]) -> Agg:
        """The total less the groups ``names`` of ``kind`` ("routes" or "upstreams")."""
        shown = frozenset(names)
        known = self.listed.get(kind)
        if known is None or known[0] != shown:
            groups, listed = getattr(self, kind), Agg()
            for name in shown:
                if name in groups:
                    listed.add(groups[name])
            known = self.listed[kind] = (shown, listed)
        out = self.total.copy()
        out.add(known[1], -1)
        return out

    def add_pair(self, cell: Cell, sign: int) -> None:
        """Add or remove one cell at the route x upstream level only."""
        assert self.pairs is not None
        route, upstream = cell.route, cell.upstream
        agg = self.pairs.get((route, upstream))
        if agg is None:
            agg = self.pairs[(route, upstream)] = Agg()
            self.members["routes"].setdefault(route, {})[upstream] = agg
            self.members["upstreams"].setdefault(upstream, {})[route] = agg
        agg.add(cell, sign)
        if agg.requests == 0 and agg.latency_count == 0:
            del self.pairs[(route, upstream)]
            for owner, member, side in ((route, upstream, "routes"), (upstream, route, "upstreams")):
                group = self.members[side][owner]
                del group[member]
                if not group:
                    del self.members[side][owner]


def _add(groups: dict[Any, Any], key: object, cell: Cell | Agg, sign: int) -> None:
    agg = groups.get(key)
    if agg is None:
        agg = groups[key] = Agg()
    agg.add(cell, sign)
    if agg.requests == 0 and agg.latency_count == 0:
        del groups[key]


class Batch:
    """One minute's new cells summed by route and upstream before they reach the windows; a route with one cell
    keeps the cell itself (at 1,000 busy routes each has one a tick: summing it into an aggregate first is a
    copy)."""

    __slots__ = ("total", "routes", "upstreams")

    def __init__(self) -> None:
        self.total = Agg()
        self.routes: dict[str, Cell | Agg] = {}
        self.upstreams: dict[str, Agg] = {}

    def add(self, cell: Cell) -> None:
        """Count one cell."""
        self.total.add(cell)
        _add(self.upstreams, cell.upstream, cell, 1)
        known = self.routes.get(cell.route)
        if known is None:
            self.routes[cell.route] = cell
            return
        if not isinstance(known, Agg):
            known = Agg()
            known.add(self.routes[cell.route])
            self.routes[cell.route] = known
        known.add(cell)


CellSource = Callable[[int, int], list[Cell]]  # cells of minutes first..last (inclusive) from the rollups


class Tally:
    """Running totals for the windows ending with minute ``minute``.

    Besides the windows it keeps each minute of the last hour summed by route and upstream (``by_minute``), to
    take a minute out of the hour and 5-minute windows when it leaves them. New cells are summed per minute
    first and each sum added to the windows once, so a window costs the routes a batch touches, not its cells.
    No tick reads the kept minutes: a batch is added into them by ``keep`` (the folds between ticks call it, and
    ``advance`` before it takes a minute out).
    """

    def __init__(self, minute: int, day_cells: Iterable[Cell], recent_cells: Iterable[Cell]) -> None:
        """Build at ``minute`` from the 24 h aggregates (any cells) and the individual cells of the last hour."""
        self.minute = minute
        self.day = Levels(pairs=True)
        for cell in day_cells:
            self.day.add(cell)
        self.hour, self.five = Levels(), Levels()
        self.by_minute: dict[int, Levels] = {}
        self.groups: dict[int, Levels] = {}
        self.unkept: list[tuple[int, Batch]] = []  # batches not yet added into ``by_minute``
        # The minute that next leaves the 24 h window: its cells and their sum, read by a fold (``prepare``).
        self.leaving: tuple[int, list[Cell], Levels] | None = None
        self._fold(recent_cells, day=False)
        self.keep()  # now: the batches hold the hour's cells

    def apply(self, cells: Iterable[Cell]) -> None:
        """Fold changes (new rows) in; changes to minutes after ``minute`` wait in the rollups until then."""
        self._fold(cells, day=True)

    def _fold(self, cells: Iterable[Cell], day: bool) -> None:
        """Count ``cells`` in the windows they fall in (``day``: the 24 h window too, with its pairs)."""
        batches: dict[int, Batch] = {}
        leaving = self.leaving[0] if self.leaving is not None else None
        for cell in cells:
            age = self.minute - cell.minute
            if age < 0 or age >= DAY_MINUTES or (age > HOUR_MINUTES and not day):
                continue
            if cell.minute == leaving:  # the cells read ahead are no longer all of that minute's
                self.leaving = leaving = None
            if day:
                self.day.add_pair(cell, 1)
            batch = batches.get(cell.minute)
            if batch is None:
                batch = batches[cell.minute] = Batch()
            batch.add(cell)
        for minute, batch in batches.items():
            for levels in self._windows(minute, day):
                levels.merge(batch, 1)
            if self.minute - minute <= HOUR_MINUTES:
                self.unkept.append((minute, batch))

    def keep(self) -> None:
        """Add the batches counted since the last call into the kept minute sums."""
        for minute, batch in self.unkept:
            if self.minute - minute <= HOUR_MINUTES:
                kept = self.by_minute.get(minute)
                if kept is None:
                    kept = self.by_minute[minute] = Levels()
                kept.merge(batch, 1)
        self.unkept = []

    def _windows(self, minute: int, day: bool) -> list[Levels]:
        """The aggregates a change to ``minute`` is counted in now (``day``: the 24 h window's too); the kept
        minute sums later (``keep``)."""
        age = self.minute - minute
        out = [self.day] if day else []
        if age < HOUR_MINUTES:
            out.append(self.hour)
        if age < FIVE_MINUTES:
            out.append(self.five)
        group = minute // SERIES_BUCKET_MINUTES
        if group > self.minute // SERIES_BUCKET_MINUTES - SERIES_BUCKETS and age <= HOUR_MINUTES:
            levels = self.groups.get(group)
            if levels is None:
                levels = self.groups[group] = Levels()
            out.append(levels)
        return out

    def advance(self, minute: int, load: CellSource) -> None:
        """Move the windows forward to ``minute``: add the new minutes' cells, remove the expired ones."""
        if minute <= self.minute:
            return
        self.keep()
        first = self.minute + 1
        arriving = load(first, minute)
        prepared, self.leaving = self.leaving, None
        if prepared is not None and minute == first and prepared[0] == first - DAY_MINUTES:
            left, leaving = prepared[1], prepared[2]
        else:
            left, leaving = self._sum(load(first - DAY_MINUTES, minute - DAY_MINUTES))
        for cell in left:
            self.day.add_pair(cell, -1)
        self.day.merge(leaving, -1)
        for step in range(first, minute + 1):
            for window, length in ((self.hour, HOUR_MINUTES), (self.five, FIVE_MINUTES)):
                expired = self.by_minute.get(step - length)
                if expired is not None:
                    window.merge(expired, -1)
        self.minute = minute
        self.by_minute = {m: levels for m, levels in self.by_minute.items() if m >= minute - HOUR_MINUTES}
        oldest_group = minute // SERIES_BUCKET_MINUTES - SERIES_BUCKETS + 1
        self.groups = {g: levels for g, levels in self.groups.items() if g >= oldest_group}
        self._fold(arriving, day=True)

    def prepare(self, load: CellSource) -> None:
        """Between ticks: read and sum the cells that leave the 24 h window when it next moves one minute, so
        the tick that moves it does not (at 10 M rows and 1,000 routes, ~5,000 cells)."""
        minute = self.minute + 1 - DAY_MINUTES
        if self.leaving is None or self.leaving[0] != minute:
            self.leaving = (minute, *self._sum(load(minute, minute)))

    @staticmethod
    def _sum(cells: list[Cell]) -> tuple[list[Cell], Levels]:
        levels = Levels()
        for cell in cells:
            levels.add(cell)
        return cells, levels

    def shift(self, cells: Iterable[Cell], sign: int) -> None:
        """Remove (sign -1) or add back (sign 1) cells of the current minute in every window, leaving the kept
        minute sums as they are: a window that ends inside the minute does not count its rows after the end."""
        group = self.groups.get(self.minute // SERIES_BUCKET_MINUTES)
        for cell in cells:
            for levels in (self.day, self.hour, self.five, group):
                if levels is not None:
                    levels.add(cell, sign)

    def series_groups(self) -> list[tuple[int, Levels | None]]:
        """The 12 clock-aligned 5-minute groups of the series, oldest first: (group index, levels or None)."""
        last = self.minute // SERIES_BUCKET_MINUTES
        return [(g, self.groups.get(g)) for g in range(last - SERIES_BUCKETS + 1, last + 1)]
