"""A mergeable latency sketch: log-spaced bins (DDSketch's mapping) with exact counts.

A latency x > 0 falls in bin ``ceil(log_gamma(x))``, gamma = (1 + a) / (1 - a), and is
represented by ``2 gamma^k / (gamma + 1)``, within ``a`` (1 %) of x. Bins are computed in SQL
(``bin_sql``) so only (bin, count) pairs leave the database; adding and subtracting sketches is
adding counts, so a rolling 24 h sketch is kept by adding new minutes and removing expired ones.
Percentiles follow ``percentile_cont``: the two order statistics around rank q (n - 1) are read
from their bins and interpolated; each is within ``a`` relative, so their interpolation is too.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right, insort
from itertools import accumulate

RELATIVE_ACCURACY = 0.009  # 1 % with room for the 3 published decimals
GAMMA = (1 + RELATIVE_ACCURACY) / (1 - RELATIVE_ACCURACY)
LOG_GAMMA = math.log(GAMMA)
ZERO_BIN = -1_000_000  # latency exactly 0 (below any positive bin: ln(1e-300) / ln(gamma) > -35 000)
# A merge of more bins than this forgets the bins in order (sorting anew is then cheaper than as many insertions),
# of more than MARKED_BINS where the quantiles were (so are the running counts of every bin).
PLACED_BINS = 64
MARKED_BINS = 16


def bin_sql(value: str) -> str:
    """A PostgreSQL expression: the bin of ``value`` (a non-negative float8 or NULL)."""
    return f"CASE WHEN {value} > 0 THEN ceil(ln({value}) / {LOG_GAMMA!r})::int WHEN {value} = 0 THEN {ZERO_BIN} END"


def bin_of(value: float) -> int:
    """The bin of a non-negative latency (the Python twin of ``bin_sql``)."""
    return math.ceil(math.log(value) / LOG_GAMMA) if value > 0 else ZERO_BIN


def bin_value(key: int) -> float:
    """The value that stands for every latency in bin ``key`` (within RELATIVE_ACCURACY of each)."""
    return 0.0 if key == ZERO_BIN else 2 * GAMMA ** key / (GAMMA + 1)


def add_counts(counts: dict[int, int], other: dict[int, int], sign: int = 1) -> None:
    """Add (sign 1) or remove (sign -1) each count of ``other`` into ``counts``; a key whose count reaches zero
    is dropped. Runs for every bin and status code of every cell a tick touches, so the loop is kept bare."""
    for key, n in other.items():
        left = counts.get(key, 0) + sign * n
        if left:
            counts[key] = left
        else:
            counts.pop(key, None)


class LatencySketch:
    """Counts per bin; merge and subtract are exact, quantiles within RELATIVE_ACCURACY."""

    __slots__ = ("bins", "count", "_keys", "_asked", "_marks")

    def __init__(self, bins: dict[int, int] | None = None) -> None:
        self.bins: dict[int, int] = dict(bins) if bins else {}
        self.count = sum(self.bins.values())
        # Kept for quantiles through merges of a few bins (a group read every tick gains a few each tick, and its
        # day has hundreds): the bins in order, and for each fraction last asked (``_asked``) where its order
        # statistic was, [index in the bins in order, latencies in the bins before it]; a quantile then moves
        # from there over the few bins its rank moved, not over every bin.
        self._keys: list[int] | None = None
        self._asked: tuple[float, ...] = ()
        self._marks: list[list[int]] | None = None

    def add_bin(self, key: int, n: int) -> None:
        """Add ``n`` latencies to bin ``key`` (``n`` may be negative to remove them)."""
        left = self.bins.get(key, 0) + n
        if left:
            self.bins[key] = left
        else:
            self.bins.pop(key, None)
        self.count += n
        self._keys = self._marks = None

    def merge(self, other: LatencySketch, sign: int = 1) -> None:
        """Add (sign 1) or remove (sign -1) every latency of ``other``."""
        self.merge_bins(other.bins, sign)
        self.count += sign * other.count

    def merge_bins(self, other: dict[int, int], sign: int) -> None:
        """Add (sign 1) or remove (sign -1) the counts of ``other`` (the caller adds to ``count``), keeping what
        quantiles keep when ``other`` has a few bins."""
        bins, keys = self.bins, self._keys
        if len(other) > MARKED_BINS:
            self._marks = None
        if keys is not None and len(other) <= PLACED_BINS:
            if self._marks is None:
                _place_bins(bins, keys, other, sign)
            else:
                _mark_bins(bins, keys, self._marks, other, sign)
            return
        self._keys = self._marks = None
        add_counts(bins, other, sign)

    def quantiles(self, fractions: tuple[float, ...]) -> tuple[float, ...]:
        """``percentile_cont`` estimates for ``fractions``; zeros when the sketch is empty."""
        if self.count <= 0:
            return tuple(0.0 for _ in fractions)
        keys = self._keys
        if keys is None:
            keys = self._keys = sorted(self.bins)
        marks = self._marks
        if marks is None or self._asked != fractions:
            marks = self._marks = self._place(keys, fractions)
            self._asked = fractions
        bins, last, top = self.bins, len(keys) - 1, self.count - 1
        out = []
        for q, mark in zip(fractions, marks, strict=True):
            # percentile_cont: the order statistics of ranks low and low + 1 around q (count - 1), interpolated.
            rank = q * top
            low = int(rank)
            at, before = mark
            while at > last or (at > 0 and before > low):  # (past the end: its last bin was dropped)
                at -= 1
                before -= bins[keys[at]]
            while at < last and before + bins[keys[at]] <= low:
                before += bins[keys[at]]
                at += 1
            mark[0], mark[1] = at, before
            value = bin_value(keys[at])
            if rank > low:
                # Rank low + 1 is in the next bin when this one ends at it (counts are positive).
                high = at + 1 if at < last and before + bins[keys[at]] <= low + 1 else at
                value += (rank - low) * (bin_value(keys[high]) - value)
            out.append(value)
        return tuple(out)

    def _place(self, keys: list[int], fractions: tuple[float, ...]) -> list[list[int]]:
        """Where each of ``fractions``' lower order statistic is, from the running counts of every bin."""
        cumulative = list(accumulate(map(self.bins.__getitem__, keys)))
        last, top, out = len(keys) - 1, self.count - 1, []
        for q in fractions:
            at = min(bisect_right(cumulative, int(q * top)), last)
            out.append([at, cumulative[at - 1] if at else 0])
        return out

    def to_arrays(self) -> tuple[list[int], list[int]]:
        """(bins, counts), sorted by bin, for storage."""
        keys = sorted(self.bins)
        return keys, [self.bins[k] for k in keys]

    @classmethod
    def from_arrays(cls, keys: list[int] | None, counts: list[int] | None) -> LatencySketch:
        """The inverse of ``to_arrays``."""
        return cls(dict(zip(keys or [], counts or [], strict=True)))


def _place_bins(bins: dict[int, int], keys: list[int], other: dict[int, int], sign: int) -> None:
    """Add the counts of ``other`` into ``bins``, an added bin inserted into ``keys`` (in order), a dropped one
    deleted."""
    for key, n in other.items():
        old = bins.get(key, 0)
        left = old + sign * n
        if left:
            bins[key] = left
            if not old:
                insort(keys, key)
        elif old:
            del bins[key]
            del keys[bisect_left(keys, key)]


def _mark_bins(bins: dict[int, int], keys: list[int], marks: list[list[int]], other: dict[int, int],
               sign: int) -> None:
    """``_place_bins``, and each mark (a bin's index and the latencies before it) moved by the bins before it."""
    for key, n in other.items():
        old = bins.get(key, 0)
        left = old + sign * n
        at = bisect_left(keys, key)
        if left:
            bins[key] = left
            if not old:
                keys.insert(at, key)
        elif old:
            del bins[key]
            del keys[at]
        for mark in marks:
            if at < mark[0]:  # a bin before the mark: its index moves with an added or dropped bin
                mark[0] += (not old) - (not left)
                mark[1] += left - old
