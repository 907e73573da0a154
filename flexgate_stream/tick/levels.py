"""A window's aggregates at every level (``Levels``) and one minute's new cells on their way to them (``Batch``).

A window's groups may hold cells whose status codes and bins are added later (``Agg.defer``): a tick counts its
cells into every group (rankings read the counts) and adds the bins of the few groups it lists when it reads them;
the folds between ticks add the rest (``Tally.settle``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flexgate_stream.tick.aggregate import Agg
from flexgate_stream.tick.rollups import Cell

LIST_CELLS = 2  # a route's cells in a batch kept as they are, at most (at 1,000 busy routes a tick has one or two)

class Levels:
    """Aggregates of one window at every level: all traffic, per route, per upstream (and per route x upstream)."""

    def __init__(self, pairs: bool = False, upstreams: bool = True, pending: list[Agg] | None = None) -> None:
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
        # With ``pending``, a cell reaches a group's codes and bins when they are read or settled (``Agg.defer``):
        # a tick reads the counts of every group (ranking) but the bins of the few it lists.
        self.pending = pending

    def add(self, cell: Cell, sign: int = 1) -> None:
        """Add or remove one cell at every level; groups left empty are dropped."""
        self.total.add(cell, sign)
        _add(self.routes, cell.route, cell, sign, self.pending)
        if self.by_upstream:
            _add(self.upstreams, cell.upstream, cell, sign, self.pending)
        if self.pairs is not None:
            self.add_pair(cell, sign)
        for kind, (names, listed) in self.listed.items():
            if (cell.route if kind == "routes" else cell.upstream) in names:
                _into(listed, cell, sign, self.pending)

    def merge(self, other: Levels | Batch, sign: int) -> None:
        """Add or remove the totals, routes and upstreams of ``other`` (not its pairs)."""
        self.total.add(other.total, sign)
        for kind in ("routes", "upstreams") if self.by_upstream else ("routes",):
            groups = getattr(self, kind)
            names, listed = self.listed.get(kind, (frozenset(), None))
            for key, value in getattr(other, kind).items():
                into = _into_all if type(value) is list else _into  # a batch's route: its cells
                _add(groups, key, value, sign, self.pending, into)
                if key in names:
                    assert listed is not None
                    into(listed, value, sign, self.pending)

    def rest(self, kind: str, names: list[str]) -> Agg:
        """The total less the groups ``names`` of ``kind`` ("routes" or "upstreams")."""
        shown = frozenset(names)
        known = self.listed.get(kind)
        if known is None or known[0] != shown:
            # Only the groups that entered or left the list are added or taken out: the busiest change a few at a
            # time (a group that left the window was taken out of the sum as its cells left).
            was, listed = known if known is not None else (frozenset(), Agg())
            groups = getattr(self, kind)
            for names_, sign in ((shown - was, 1), (was - shown, -1)):
                for name in names_:
                    if name in groups:
                        listed.add(groups[name], sign)
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
        _into(agg, cell, sign, self.pending)
        if agg.requests == 0 and agg.latency_count == 0:
            del self.pairs[(route, upstream)]
            for owner, member, side in ((route, upstream, "routes"), (upstream, route, "upstreams")):
                group = self.members[side][owner]
                del group[member]
                if not group:
                    del self.members[side][owner]


def _into_all(agg: Agg, cells: list[Cell], sign: int, pending: list[Agg] | None) -> None:
    if pending is None:
        for cell in cells:
            agg.add(cell, sign)
    else:
        agg.defer_all(cells, sign, pending)


def _into(agg: Agg, cell: Cell | Agg, sign: int, pending: list[Agg] | None) -> None:
    """Add ``cell`` into ``agg``, its bins later when ``pending`` is given (an aggregate, which may still change,
    is added at once)."""
    if pending is not None and type(cell) is Cell:
        agg.defer(cell, sign, pending)
    else:
        agg.add(cell, sign)


def _add(groups: dict[Any, Any], key: object, cell: Cell | Agg | list[Cell], sign: int,
         pending: list[Agg] | None = None, into: Callable[..., None] = _into) -> None:
    """Add ``cell`` (or, with ``into=_into_all``, a list of cells) into the group ``key``, dropped once empty."""
    agg = groups.get(key)
    if agg is None:
        agg = groups[key] = Agg()
    into(agg, cell, sign, pending)
    if agg.requests == 0 and agg.latency_count == 0:
        del groups[key]


class Batch:
    """One minute's new cells before they reach the windows: summed by upstream (and those sums into the total,
    ``close``), by route a list of cells, each deferred in the windows (at 1,000 busy routes a route has one or
    two a tick, and a tick reads the bins of the few it lists)."""

    __slots__ = ("total", "routes", "upstreams", "cells", "_cells")

    def __init__(self) -> None:
        self.cells = 0
        self.total = Agg()
        self.routes: dict[str, list[Cell] | Agg] = {}  # by ``close``
        self.upstreams: dict[str, Agg] = {}
        self._cells: dict[str, list[Cell]] = {}

    def add(self, cell: Cell) -> None:
        """Count one cell."""
        self.cells += 1
        _add(self.upstreams, cell.upstream, cell, 1)
        known = self._cells.get(cell.route)
        if known is None:
            self._cells[cell.route] = [cell]
        else:
            known.append(cell)

    def close(self) -> None:
        """The total, once every cell is counted: the sum of the upstreams' sums (a few, not a cell at a time); a
        route with more than ``LIST_CELLS`` cells summed (a busy route's bins, read on every tick, are then added
        into each window once, not a cell at a time)."""
        for agg in self.upstreams.values():
            self.total.add(agg)
        for route, cells in self._cells.items():
            if len(cells) > LIST_CELLS:
                summed = self.routes[route] = Agg()
                for cell in cells:
                    summed.add(cell)
            else:
                self.routes[route] = cells
