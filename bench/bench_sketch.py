"""Latency sketch choice: our log-binned counts (bins computed in SQL) against ddsketch and datasketches.

For each candidate: time to take one tick's 10,000 latencies, time to merge 1,440 one-minute sketches
(a 24 h window), bytes per sketch, and the largest relative error at p50/p95/p99 against the exact
``percentile_cont`` (linear interpolation) on 1 M demo-like (lognormal) and 1 M heavy-tailed (Pareto) values.

    .venv/bin/python bench/bench_sketch.py
"""

from __future__ import annotations

import math
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flexgate_stream.tick.sketch import LatencySketch, bin_of  # noqa: E402

FRACTIONS = (0.5, 0.95, 0.99)


def exact(values: list[float]) -> list[float]:
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return [cuts[49], cuts[94], cuts[98]]


class Ours:
    name = "log bins (a=0.9 %), counts from SQL"

    def __init__(self):
        self.s = LatencySketch()

    def add_tick(self, values):
        # In the tick the bins arrive from SQL already counted; only the per-bin adds run in Python.
        counts = {}
        for v in values:
            k = bin_of(v)
            counts[k] = counts.get(k, 0) + 1
        for k, n in counts.items():
            self.s.add_bin(k, n)

    def merge(self, other):
        self.s.merge(other.s)

    def quantiles(self):
        return list(self.s.quantiles(FRACTIONS))

    def size(self):
        return len(self.s.bins) * 12  # int4 bin + int8 count


class DD:
    name = "ddsketch 3.0.1 (DDSketch, a=1 %)"

    def __init__(self):
        from ddsketch import DDSketch
        self.s = DDSketch(relative_accuracy=0.01)

    def add_tick(self, values):
        for v in values:
            self.s.add(v)

    def merge(self, other):
        self.s.merge(other.s)

    def quantiles(self):
        return [self.s.get_quantile_value(q) for q in FRACTIONS]

    def size(self):
        # Its protobuf form needs the protobuf package; count stored bins the way we store ours.
        return sum(1 for n in self.s._store.bins if n) * 12


class KLL:
    name = "datasketches 5.2.0 KLL (k=200)"

    def __init__(self):
        from datasketches import kll_doubles_sketch
        self.s = kll_doubles_sketch(200)

    def add_tick(self, values):
        for v in values:
            self.s.update(v)

    def merge(self, other):
        self.s.merge(other.s)

    def quantiles(self):
        return [self.s.get_quantile(q) for q in FRACTIONS]

    def size(self):
        return len(self.s.serialize())


def data(kind: str, n: int, seed: int = 7) -> list[float]:
    rnd = random.Random(seed)
    if kind == "demo":
        return [round(30 * math.exp(0.5 * rnd.gauss(0, 1)), 2) for _ in range(n)]
    return [round(min(99_999_999.99, 5 / (1 - rnd.random()) ** (1 / 1.1)), 2) for _ in range(n)]


def main() -> None:
    tick = data("demo", 10_000, 1)
    print("| sketch | 10 k values in | merge 1,440 minutes | bytes (24 h) | demo p50/p95/p99 error |"
          " heavy-tailed p50/p95/p99 error |")
    print("| --- | --- | --- | --- | --- | --- |")
    sets = {kind: data(kind, 1_000_000) for kind in ("demo", "heavy")}
    truth = {kind: exact(values) for kind, values in sets.items()}
    for cls in (Ours, DD, KLL):
        one = cls()
        t0 = time.perf_counter()
        one.add_tick(tick)
        ingest = (time.perf_counter() - t0) * 1000
        minutes = []
        values = sets["demo"]
        for i in range(1440):
            m = cls()
            m.add_tick(values[i * 200:(i + 1) * 200])
            minutes.append(m)
        day = cls()
        t0 = time.perf_counter()
        for m in minutes:
            day.merge(m)
        merge = (time.perf_counter() - t0) * 1000
        errors = {}
        for kind, values in sets.items():
            s = cls()
            for start in range(0, len(values), 10_000):
                s.add_tick(values[start:start + 10_000])
            errors[kind] = " / ".join(f"{abs(g - e) / e * 100:.2f} %" for g, e in zip(s.quantiles(), truth[kind],
                                                                                     strict=True))
        print(f"| {cls.name} | {ingest:.1f} ms | {merge:.1f} ms | {day.size():,} | {errors['demo']} |"
              f" {errors['heavy']} |", flush=True)


if __name__ == "__main__":
    main()
