"""A group's running figures: counts and a latency sketch of any set of cells, with their Stats cached."""

from __future__ import annotations

from flexgate_stream.tick.figures import PERCENTILES, Stats
from flexgate_stream.tick.rollups import Cell
from flexgate_stream.tick.sketch import LatencySketch


class Agg:
    """Counts and a latency sketch of any set of cells; Stats (with percentiles) cached until it changes.

    A cell may be added later (``defer``): its counts at once (a ranking reads them), its status codes and bins
    when they are first read or the aggregate is settled (``settle``). Adding counts is commutative, so the
    figures are the same whenever the bins are added.
    """

    __slots__ = ("requests", "_codes", "latency_count", "latency_sum", "_sketch", "_stats", "_later")

    def __init__(self) -> None:
        self.requests = 0
        self._codes: dict[int, int] = {}
        self.latency_count = 0
        self.latency_sum = 0.0
        self._sketch = LatencySketch()
        self._stats: Stats | None = None
        self._later: list[tuple[Cell, int]] | None = None  # cells whose codes and bins are not yet added

    @property
    def status_codes(self) -> dict[int, int]:
        """Requests per status code."""
        if self._later is not None:
            self.settle()
        return self._codes

    @property
    def sketch(self) -> LatencySketch:
        """The latency sketch."""
        if self._later is not None:
            self.settle()
        return self._sketch

    def add(self, cell: Cell | Agg, sign: int = 1) -> None:
        """Add (sign 1) or remove (sign -1) the requests of ``cell``."""
        self._counts(cell, sign)
        self._bins(cell.status_codes, cell.sketch, sign)

    def defer(self, cell: Cell, sign: int, pending: list[Agg]) -> None:
        """Add or remove ``cell``'s counts now and its status codes and bins when next read or settled; the
        first deferred cell puts this aggregate on ``pending`` (its owner settles what is on it between ticks).
        ``cell`` must not change afterwards (a Cell read from the log or the rollups does not)."""
        self._counts(cell, sign)
        later = self._later
        if later is None:
            later = self._later = []
            pending.append(self)
        later.append((cell, sign))

    def defer_all(self, cells: list[Cell], sign: int, pending: list[Agg]) -> None:
        """``defer`` each of ``cells`` (the loop written out: it runs for every cell of a tick in every window)."""
        requests, count, total = self.requests, self.latency_count, self.latency_sum
        for cell in cells:
            requests += sign * cell.requests
            count += sign * cell.latency_count
            total += sign * cell.latency_sum
        self.requests, self.latency_count = requests, count
        self.latency_sum = total if count else 0.0  # no float residue once every latency has left
        self._stats = None
        later = self._later
        if later is None:
            later = self._later = []
            pending.append(self)
        later.extend([(cell, sign) for cell in cells])

    def settle(self) -> None:
        """Add the status codes and bins of the deferred cells."""
        later, self._later = self._later, None
        for cell, sign in later or ():
            self._bins(cell.status_codes, cell.sketch, sign)

    def _counts(self, cell: Cell | Agg, sign: int) -> None:
        self.requests += sign * cell.requests
        self.latency_count += sign * cell.latency_count
        self.latency_sum += sign * cell.latency_sum
        if self.latency_count == 0:
            self.latency_sum = 0.0  # no float residue once every latency has left
        self._stats = None

    def _bins(self, status_codes: dict[int, int], other: LatencySketch, sign: int) -> None:
        codes = self._codes
        for code, n in status_codes.items():  # add_counts, written out: this runs for every group a batch touches
            left = codes.get(code, 0) + sign * n
            if left:
                codes[code] = left
            else:
                codes.pop(code, None)
        self._sketch.merge_bins(other.bins, sign)
        self._sketch.count += sign * other.count

    def copy(self) -> Agg:
        """A new aggregate with the same requests (copied at C speed, not added one bin at a time)."""
        out = Agg()
        out.requests, out.latency_count, out.latency_sum = self.requests, self.latency_count, self.latency_sum
        out._codes = dict(self.status_codes)
        out._sketch = LatencySketch(self.sketch.bins)
        return out

    def stats(self) -> Stats:
        """Counts by class, latency count/sum and percentiles (from the sketch)."""
        if self._stats is None:
            success = client = server = 0
            for code, n in self.status_codes.items():  # one pass over the few codes
                if 200 <= code <= 299:
                    success += n
                elif 400 <= code <= 499:
                    client += n
                elif 500 <= code <= 599:
                    server += n
            p50, p95, p99 = self.sketch.quantiles(PERCENTILES) if self.latency_count else (0.0, 0.0, 0.0)
            self._stats = Stats(self.requests, success, client, server, self.latency_count, self.latency_sum,
                                (p50, p95, p99))
        return self._stats
