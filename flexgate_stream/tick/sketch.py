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
# A merge of more bins than this forgets the sorted bins rather than placing each added one (sorting anew is
# then cheaper than as many insertions).
PLACED_BINS = 64


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

    __slots__ = ("bins", "count", "_keys", "_cumulative")

    def __init__(self, bins: dict[int, int] | None = None) -> None:
        self.bins: dict[int, int] = dict(bins) if bins else {}
        self.count = sum(self.bins.values())
        # Kept for quantiles: the bins in order (an added or dropped bin placed in them by ``merge_bins``: at 10 M
        # rows a busy group's day has hundreds) and their running counts (until any count changes).
        self._keys: list[int] | None = None
        self._cumulative: list[int] | None = None

    def add_bin(self, key: int, n: int) -> None:
        """Add ``n`` latencies to bin ``key`` (``n`` may be negative to remove them)."""
        left = self.bins.get(key, 0) + n
        if left:
            self.bins[key] = left
        else:
            self.bins.pop(key, None)
        self.count += n
        self._keys = self._cumulative = None

    def forget_order(self, keys: bool = True) -> None:
        """Drop what is kept for quantiles after the bins were changed directly (``keys``: a bin was added or
        dropped; else only counts changed)."""
        self._cumulative = None
        if keys:
            self._keys = None

    def merge(self, other: LatencySketch, sign: int = 1) -> None:
        """Add (sign 1) or remove (sign -1) every latency of ``other``."""
        self.merge_bins(other.bins, sign)
        self.count += sign * other.count

    def merge_bins(self, other: dict[int, int], sign: int) -> None:
        """Add (sign 1) or remove (sign -1) the counts of ``other``, keeping the sorted bins when they are kept:
        a group read every tick gains or loses a bin on most ticks, and sorting hundreds again costs more."""
        self._cumulative = None
        keys = self._keys
        bins = self.bins
        if keys is None or len(other) > PLACED_BINS:
            self._keys = None
            for key, n in other.items():  # add_counts, written out: this runs for every group a batch touches
                left = bins.get(key, 0) + sign * n
                if left:
                    bins[key] = left
                else:
                    bins.pop(key, None)
            return
        for key, n in other.items():
            old = bins.get(key)
            left = (old or 0) + sign * n
            if left:
                bins[key] = left
                if old is None:
                    insort(keys, key)
            elif old is not None:
                del bins[key]
                del keys[bisect_left(keys, key)]

    def quantiles(self, fractions: tuple[float, ...]) -> tuple[float, ...]:
        """``percentile_cont`` estimates for ``fractions``; zeros when the sketch is empty."""
        if self.count <= 0:
            return tuple(0.0 for _ in fractions)
        keys = self._keys
        if keys is None:
            keys = self._keys = sorted(self.bins)
        cumulative = self._cumulative
        if cumulative is None:
            cumulative = self._cumulative = list(accumulate(map(self.bins.__getitem__, keys)))
        last, top = len(keys) - 1, self.count - 1
        out = []
        for q in fractions:
            # percentile_cont: the order statistics of ranks low and low + 1 around q (count - 1), interpolated.
            rank = q * top
            low = math.floor(rank)
            at = min(bisect_right(cumulative, low), last)
            value = bin_value(keys[at])
            if rank > low:
                if cumulative[at] <= low + 1:  # rank low + 1 lies in a later bin
                    at = min(bisect_right(cumulative, low + 1, at), last)
                value += (rank - low) * (bin_value(keys[at]) - value)
            out.append(value)
        return tuple(out)

    def to_arrays(self) -> tuple[list[int], list[int]]:
        """(bins, counts), sorted by bin, for storage."""
        keys = sorted(self.bins)
        return keys, [self.bins[k] for k in keys]

    @classmethod
    def from_arrays(cls, keys: list[int] | None, counts: list[int] | None) -> LatencySketch:
        """The inverse of ``to_arrays``."""
        return cls(dict(zip(keys or [], counts or [], strict=True)))
