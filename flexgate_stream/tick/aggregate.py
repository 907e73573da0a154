"""A group's running figures: counts and a latency sketch of any set of cells, with their Stats cached."""

from __future__ import annotations

from flexgate_stream.tick.figures import PERCENTILES, Stats, percentile_triple
from flexgate_stream.tick.rollups import Cell
from flexgate_stream.tick.sketch import LatencySketch


class Agg:
    """Counts and a latency sketch of any set of cells; Stats (with percentiles) cached until it changes."""

    __slots__ = ("requests", "status_codes", "latency_count", "latency_sum", "sketch", "_stats")

    def __init__(self) -> None:
        self.requests = 0
        self.status_codes: dict[int, int] = {}
        self.latency_count = 0
        self.latency_sum = 0.0
        self.sketch = LatencySketch()
        self._stats: Stats | None = None

    def add(self, cell: Cell | Agg, sign: int = 1) -> None:
        """Add (sign 1) or remove (sign -1) the requests of ``cell``."""
        self.requests += sign * cell.requests
        codes = self.status_codes
        for code, n in cell.status_codes.items():  # add_counts, written out (as the sketch's merge below)
            left = codes.get(code, 0) + sign * n
            if left:
                codes[code] = left
            else:
                codes.pop(code, None)
        self.latency_count += sign * cell.latency_count
        self.latency_sum += sign * cell.latency_sum
        if self.latency_count == 0:
            self.latency_sum = 0.0  # no float residue once every latency has left
        # The sketch's merge, written out: this runs for every group a batch of cells touches in every window.
        sketch, other = self.sketch, cell.sketch
        bins = sketch.bins
        size, drops = len(bins), 0
        for key, n in other.bins.items():
            left = bins.get(key, 0) + sign * n
            if left:
                bins[key] = left
            else:
                bins.pop(key, None)
                drops += 1
        sketch.count += sign * other.count
        # No bin dropped and as many as before: no bin was added either, the sorted bins still hold.
        sketch.forget_order(keys=bool(drops) or len(bins) != size)
        self._stats = None

    def copy(self) -> Agg:
        """A new aggregate with the same requests (copied at C speed, not added one bin at a time)."""
        out = Agg()
        out.requests, out.latency_count, out.latency_sum = self.requests, self.latency_count, self.latency_sum
        out.status_codes = dict(self.status_codes)
        out.sketch = LatencySketch(self.sketch.bins)
        return out

    def stats(self) -> Stats:
        """Counts by class, latency count/sum and percentiles (from the sketch)."""
        if self._stats is None:
            codes = self.status_codes

            def between(low: int, high: int) -> int:
                return sum(n for code, n in codes.items() if low <= code <= high)

            self._stats = Stats(self.requests, between(200, 299), between(400, 499), between(500, 599),
                                self.latency_count, self.latency_sum,
                                percentile_triple(list(self.sketch.quantiles(PERCENTILES)))
                                if self.latency_count else (0.0, 0.0, 0.0))
        return self._stats
