"""The publisher's in-memory running totals over the rollups: last 24 h, last hour, last 5 minutes, series.

A window is a range of one-minute buckets ending with the bucket ``minute`` (the one holding the
window end). Moving it one minute adds the new minute's cells and removes the expired one's, so a
snapshot costs the number of routes and upstreams, not of requests. Cells of the last hour stay
in memory; older ones are read back from the rollups when they leave the 24 h window.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from flexgate_stream.tick.aggregate import Agg
from flexgate_stream.tick.figures import SERIES_BUCKET_SECONDS, SERIES_BUCKETS
from flexgate_stream.tick.levels import Batch, Levels
from flexgate_stream.tick.rollups import MINUTE_SECONDS, Cell

DAY_MINUTES = 24 * 60
HOUR_MINUTES = 60
FIVE_MINUTES = 5
SERIES_BUCKET_MINUTES = SERIES_BUCKET_SECONDS // MINUTE_SECONDS  # a series bucket is a group of minutes
MOVE_MINUTES = HOUR_MINUTES // 2  # the windows move forward this far at most; farther, they are built again
MAX_DEFERRED = 20_000  # deferred cells held at most (~20 ticks' at 1,000 routes; a backfill chunk settles at once)


CellSource = Callable[[int, int], list[Cell]]  # cells of minutes first..last (inclusive) from the rollups


class Tally:
    """Running totals for the windows ending with minute ``minute``.

    Besides the windows it keeps the last minutes of the 5-minute window summed by route and upstream
    (``by_minute``), to take a minute out of it when it leaves; a minute leaving the hour or the 24 h window is
    read back from the rollups, ahead by a fold (``prepare``). New cells are summed per minute first and each
    sum added to the windows once, so a window costs the routes a batch touches. No tick reads the kept minutes:
    a batch is added into them by ``keep`` (the folds between ticks call it, and ``advance`` before it takes a
    minute out).
    """

    def __init__(self, minute: int, day_cells: Iterable[Cell], recent_cells: Iterable[Cell]) -> None:
        """Build at ``minute`` from the 24 h aggregates (any cells) and the individual cells of the last hour."""
        self.minute = minute
        self.day = Levels(pairs=True)
        for cell in day_cells:  # added at once: deferred, they would all be held until settled
            self.day.add(cell)
        self.pending: list[Agg] = []  # the windows' aggregates with deferred cells (``settle``)
        self.deferred = 0  # cells counted since the last ``settle``
        self.day.pending = self.pending
        self.hour, self.five = Levels(pending=self.pending), Levels(pending=self.pending)
        self.by_minute: dict[int, Levels] = {}
        self.groups: dict[int, Levels] = {}
        self.unkept: list[tuple[int, Batch]] = []  # batches not yet added into ``by_minute``
        # The minutes that next leave the 24 h window and the hour: their cells and sum, read by a fold (``prepare``).
        self.leaving: dict[int, tuple[list[Cell], Levels]] = {}
        self._fold(recent_cells, day=False)
        self.keep()  # now: the batches hold the hour's cells
        self.settle()

    def apply(self, cells: Iterable[Cell]) -> None:
        """Fold changes (new rows) in; changes to minutes after ``minute`` wait in the rollups until then."""
        self._fold(cells, day=True)

    def _fold(self, cells: Iterable[Cell], day: bool) -> None:
        """Count ``cells`` in the windows they fall in (``day``: the 24 h window too, with its pairs)."""
        batches: dict[int, Batch] = {}
        leaving = self.leaving
        for cell in cells:
            age = self.minute - cell.minute
            if age < 0 or age >= DAY_MINUTES or (age > HOUR_MINUTES and not day):
                continue
            if cell.minute in leaving:  # the cells read ahead are no longer all of that minute's
                del leaving[cell.minute]
            if day:
                self.day.add_pair(cell, 1)
            batch = batches.get(cell.minute)
            if batch is None:
                batch = batches[cell.minute] = Batch()
            batch.add(cell)
        for minute, batch in batches.items():
            batch.close()
            for levels in self._windows(minute, day):
                levels.merge(batch, 1)
            if self.minute - minute <= FIVE_MINUTES:
                self.unkept.append((minute, batch))
            self.deferred += batch.cells
        if self.deferred > MAX_DEFERRED:  # a backfill chunk, or no fold between ticks for a while: held no longer
            self.settle()

    def settle(self) -> None:
        """Add the deferred cells' codes and bins into the windows' aggregates (the folds between ticks)."""
        for agg in self.pending:
            agg.settle()
        self.pending.clear()
        self.deferred = 0

    def keep(self) -> None:
        """Add the batches counted since the last call into the kept minute sums."""
        for minute, batch in self.unkept:
            if self.minute - minute <= FIVE_MINUTES:
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
                levels = self.groups[group] = Levels(pending=self.pending)
            out.append(levels)
        return out

    def advance(self, minute: int, load: CellSource) -> None:
        """Move the windows forward to ``minute``: add the new minutes' cells, remove the expired ones."""
        if minute <= self.minute:
            return
        self.keep()
        first = self.minute + 1
        arriving = load(first, minute)
        prepared, self.leaving = self.leaving, {}
        for window, length in ((self.day, DAY_MINUTES), (self.hour, HOUR_MINUTES)):
            read = prepared.get(first - length) if minute == first else None
            left, leaving = read if read is not None else self._sum(load(first - length, minute - length))
            if window.pairs is not None:
                for cell in left:
                    window.add_pair(cell, -1)
            window.merge(leaving, -1)
        for step in range(first, minute + 1):
            expired = self.by_minute.get(step - FIVE_MINUTES)
            if expired is not None:
                self.five.merge(expired, -1)
        self.minute = minute
        self.by_minute = {m: levels for m, levels in self.by_minute.items() if m >= minute - FIVE_MINUTES}
        oldest_group = minute // SERIES_BUCKET_MINUTES - SERIES_BUCKETS + 1
        self.groups = {g: levels for g, levels in self.groups.items() if g >= oldest_group}
        self._fold(arriving, day=True)

    def reaches(self, minute: int) -> bool:
        """Whether the windows can move to ``minute`` (they never move back, nor far: built again instead)."""
        return 0 <= minute - self.minute <= MOVE_MINUTES

    def between_ticks(self, minute: int | None, load: CellSource) -> None:
        """A fold's work on the totals: keep the batches, move the windows into ``minute`` when it is new (so the
        next tick adds only its own rows), read ahead the minute leaving next, settle the deferred cells."""
        self.keep()
        if minute is not None and self.reaches(minute):
            self.advance(minute, load)
        self.prepare(load)
        self.settle()

    def prepare(self, load: CellSource) -> None:
        """Between ticks: read and sum the cells that leave the 24 h window and the hour when they next move one
        minute, so the tick that moves them does not (at 1,000 routes, ~5,000-9,000 cells each)."""
        leaving = {}
        for length in (DAY_MINUTES, HOUR_MINUTES):
            minute = self.minute + 1 - length
            known = self.leaving.get(minute)
            leaving[minute] = known if known is not None else self._sum(load(minute, minute))
        self.leaving = leaving

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
