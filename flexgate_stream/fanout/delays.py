"""Delays tallied cheaply where they happen: one add per frame written in one pass (or per client writing it
later itself), no Prometheus call.

A ``DelayTally`` keeps two things: the bucket counts a Prometheus histogram has not taken yet (the web tier
takes them a few times a second, web.prometheus), and the last minute of delays on a fine logarithmic grid, so
``/api/stream/stats`` can say its p50 and p99 within 10 % without keeping every sample.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections import deque
from collections.abc import Callable, Iterable
from typing import TypedDict

# The Prometheus histogram's upper bounds (+Inf follows): from a fast write (ms) to a publisher that lags ticks.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
GRID_FIRST = 0.001  # the quantile grid: 1 ms, then steps of 10 %, so an interpolated quantile is within 10 %
GRID_STEP = math.log(1.1)
SLOT_SECONDS = 5.0  # the last minute is kept as twelve slots of 5 s
WINDOW_SECONDS = 60.0


class Quantiles(TypedDict):
    p50: float | None  # seconds; None when nothing was tallied in the last minute
    p99: float | None
    count: int


def grid_index(delay: float) -> int:
    """The grid bucket of ``delay``: 0 for up to 1 ms, k for up to 1 ms x 1.1^k."""
    if delay <= GRID_FIRST:
        return 0
    return max(1, math.ceil(math.log(delay / GRID_FIRST) / GRID_STEP - 1e-9))


def grid_bounds(index: int) -> tuple[float, float]:
    """The lower and upper edge of grid bucket ``index``, in seconds."""
    if index == 0:
        return 0.0, GRID_FIRST
    return GRID_FIRST * math.exp(GRID_STEP * (index - 1)), GRID_FIRST * math.exp(GRID_STEP * index)


class DelayTally:
    """Delays of one kind in one process: pending histogram counts, and the last minute for quantiles."""

    __slots__ = ("pending", "pending_sum", "on_pending", "_dirty", "_slots")

    def __init__(self) -> None:
        self.pending = [0] * (len(BUCKETS) + 1)
        self.pending_sum = 0.0
        self.on_pending: Callable[[], None] | None = None  # told when counts wait to be taken again
        self._dirty = False
        self._slots: deque[tuple[int, dict[int, int]]] = deque()  # (slot number, grid bucket -> count)

    def add(self, delay: float, count: int, now: float) -> None:
        """``count`` events that each took ``delay`` seconds, tallied at ``now`` (epoch seconds)."""
        if count <= 0:
            return
        delay = max(0.0, delay)  # clocks of different hosts may disagree a little
        if not self._dirty:
            self._dirty = True
            if self.on_pending is not None:
                self.on_pending()
        self.pending[bisect_left(BUCKETS, delay)] += count
        self.pending_sum += delay * count
        slot = int(now // SLOT_SECONDS)
        if not self._slots or self._slots[-1][0] != slot:
            self._slots.append((slot, {}))
            self._expire(slot)
        counts = self._slots[-1][1]
        index = grid_index(delay)
        counts[index] = counts.get(index, 0) + count

    def take(self) -> tuple[list[int], float] | None:
        """The bucket counts (one per bound of BUCKETS, then +Inf) and sum added since the last take, if any."""
        if not self._dirty:
            return None
        self._dirty = False
        taken = self.pending, self.pending_sum
        self.pending, self.pending_sum = [0] * (len(BUCKETS) + 1), 0.0
        return taken

    def recent(self, now: float) -> dict[int, int]:
        """Grid bucket counts of the last minute."""
        self._expire(int(now // SLOT_SECONDS))
        merged: dict[int, int] = {}
        for _slot, counts in self._slots:
            for index, count in counts.items():
                merged[index] = merged.get(index, 0) + count
        return merged

    def _expire(self, slot: int) -> None:
        oldest = slot - int(WINDOW_SECONDS // SLOT_SECONDS) + 1
        while self._slots and self._slots[0][0] < oldest:
            self._slots.popleft()


def last_minute(tallies: Iterable[DelayTally], now: float) -> Quantiles:
    """p50 and p99 of what ``tallies`` counted in the last minute, interpolated within grid buckets."""
    merged: dict[int, int] = {}
    for tally in tallies:
        for index, count in tally.recent(now).items():
            merged[index] = merged.get(index, 0) + count
    total = sum(merged.values())
    return Quantiles(p50=quantile(merged, total, 0.5), p99=quantile(merged, total, 0.99), count=total)


def quantile(counts: dict[int, int], total: int, q: float) -> float | None:
    """The ``q`` quantile of grid bucket ``counts`` (as Prometheus's histogram_quantile interpolates)."""
    if not total:
        return None
    rank, seen = q * total, 0
    for index in sorted(counts):
        count = counts[index]
        if seen + count >= rank:
            low, high = grid_bounds(index)
            return round(low + (high - low) * (rank - seen) / count, 6)
        seen += count
    return round(grid_bounds(max(counts))[1], 6)
