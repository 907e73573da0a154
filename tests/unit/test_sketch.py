"""The latency sketch: quantiles within 1 % of the exact percentile_cont, exact merge and subtraction."""

from __future__ import annotations

import random
import statistics

import pytest

from flexgate_stream.tick.sketch import RELATIVE_ACCURACY, ZERO_BIN, LatencySketch, bin_of, bin_value

pytestmark = pytest.mark.timeout(30)
FRACTIONS = (0.5, 0.95, 0.99)


def exact(values: list[float]) -> tuple[float, ...]:
    """percentile_cont (linear interpolation between order statistics)."""
    if len(values) == 1:
        return (values[0],) * 3
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return cuts[49], cuts[94], cuts[98]


def sketch_of(values: list[float]) -> LatencySketch:
    sketch = LatencySketch()
    for v in values:
        sketch.add_bin(bin_of(v), 1)
    return sketch


@pytest.mark.parametrize("seed", range(6))
def test_quantiles_are_within_one_percent_of_percentile_cont(seed):
    rnd = random.Random(seed)
    draws = [lambda: round(rnd.lognormvariate(3.5, 1.0), 2), lambda: round(rnd.paretovariate(1.1) * 5, 2),
             lambda: round(rnd.random() * 2000, 2), lambda: rnd.choice([0.0, 0.01, 1e6])]
    draw = draws[seed % len(draws)]
    values = [draw() for _ in range(rnd.choice([1, 2, 7, 1000, 20000]))]
    got = sketch_of(values).quantiles(FRACTIONS)
    for g, e in zip(got, exact(values), strict=True):
        assert g == pytest.approx(e, rel=RELATIVE_ACCURACY, abs=1e-12)


def test_every_bin_value_is_within_one_percent_of_its_members():
    for v in (0.01, 0.5, 1, 3.14, 99.99, 12345.67, 99_999_999.99):
        assert bin_value(bin_of(v)) == pytest.approx(v, rel=RELATIVE_ACCURACY + 1e-12)
    assert bin_of(0.0) == ZERO_BIN and bin_value(ZERO_BIN) == 0.0


def test_merge_then_subtract_gives_back_the_same_bins():
    a, b = sketch_of([1.0, 2.0, 3.0]), sketch_of([2.0, 500.0])
    a.merge(b)
    assert a.count == 5
    a.merge(b, sign=-1)
    assert a.bins == sketch_of([1.0, 2.0, 3.0]).bins and a.count == 3
    assert LatencySketch.from_arrays(*a.to_arrays()).bins == a.bins


def test_empty_sketch_gives_zeros():
    assert LatencySketch().quantiles(FRACTIONS) == (0.0, 0.0, 0.0)


@pytest.mark.parametrize("seed", range(4))
def test_quantiles_read_after_every_merge_equal_those_of_the_same_bins_counted_afresh(seed):
    rnd = random.Random(seed)
    sketch, merged = LatencySketch(), []
    for step in range(600):
        if merged and rnd.random() < 0.45:  # take out something added before (all of it, at times)
            part, sign = merged.pop(rnd.randrange(len(merged))), -1
        else:  # one latency (a cell), a few (a batch), or many bins at once (a minute's sum)
            size = rnd.choice([1, 1, 1, 3, 20, 150])
            part, sign = sketch_of([round(rnd.lognormvariate(3, 1.2), 2) for _ in range(size)]), 1
            merged.append(part)
        sketch.merge(part, sign)
        fractions = FRACTIONS if step % 50 else (0.0, 0.25, 1.0)
        assert sketch.quantiles(fractions) == LatencySketch(sketch.bins).quantiles(fractions)
    assert sketch.count == sum(sketch.bins.values())
