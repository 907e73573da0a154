"""The running totals against the same figures summed from scratch, as cells arrive and minutes leave."""

from __future__ import annotations

import random

import pytest

from flexgate_stream.tick.aggregate import Agg
from flexgate_stream.tick.figures import PERCENTILES
from flexgate_stream.tick.rollups import Cell
from flexgate_stream.tick.sketch import LatencySketch, bin_of
from flexgate_stream.tick.tally import Levels, Tally

pytestmark = pytest.mark.timeout(60)

MINUTE = 29_000_000


def cells(rnd: random.Random, minutes: range, count: int) -> list[Cell]:
    out = []
    for _ in range(count):
        latency = rnd.lognormvariate(3, 1)
        made = Cell(rnd.choice(minutes), f"/r/{rnd.randrange(30)}", f"u{rnd.randrange(4)}", 1,
                    {rnd.choice([200, 503]): 1}, 1, latency)
        made.sketch.add_bin(bin_of(latency), 1)
        out.append(made)
    return out


def summed(chosen: list[Cell]) -> Levels:
    levels = Levels()
    for cell in chosen:
        levels.add(cell)
    return levels


def same(a: Agg, b: Agg) -> bool:
    return (a.requests, a.status_codes, a.latency_count, a.sketch.bins) == (b.requests, b.status_codes,
                                                                               b.latency_count, b.sketch.bins)


def test_windows_and_the_rest_of_their_lists_equal_the_same_cells_summed_from_scratch():
    rnd = random.Random(5)
    stored = cells(rnd, range(MINUTE - 70, MINUTE + 1), 3000)
    tally = Tally(MINUTE, stored, [c for c in stored if MINUTE - c.minute <= 60])

    def load(first: int, last: int) -> list[Cell]:
        return [c for c in stored if first <= c.minute <= last]

    for step in range(1, 8):
        minute = MINUTE + step // 2
        new = cells(rnd, range(minute - 2, minute + 1), 300)
        # A few rows of the minutes about to leave the 24 h window, before or after a fold read them ahead.
        old = cells(rnd, range(tally.minute + 1 - 1440, tally.minute + 3 - 1440), 20)
        if step % 2:
            tally.prepare(load)
        stored.extend(new + old)
        tally.apply(new + old)
        tally.prepare(load)
        tally.advance(minute, load)
        for levels, length in ((tally.day, 1440), (tally.hour, 60), (tally.five, 5)):
            expected = summed([c for c in stored if 0 <= minute - c.minute < length])
            assert same(levels.total, expected.total)
            for kind in ("routes", "upstreams"):
                groups = getattr(expected, kind)
                assert set(getattr(levels, kind)) == set(groups)
                assert all(same(getattr(levels, kind)[name], agg) for name, agg in groups.items())
                # The same names for a few ticks (their sum kept up to date as they change), then others.
                names = sorted(groups)[:3] if step % 3 else rnd.sample(sorted(groups), 3)
                rest = summed([c for c in stored if 0 <= minute - c.minute < length
                               and (c.route if kind == "routes" else c.upstream) not in names])
                assert same(levels.rest(kind, names), rest.total)


def test_percentiles_follow_every_addition_and_removal_although_the_sorted_bins_are_kept():
    rnd = random.Random(7)
    agg, added = Agg(), []
    for step in range(400):
        if added and rnd.random() < 0.4:
            agg.add(added.pop(rnd.randrange(len(added))), -1)
        else:
            cell = cells(rnd, range(MINUTE, MINUTE + 1), 1)[0]
            agg.add(cell)
            added.append(cell)
        if step % 7 == 0:
            expected = LatencySketch(dict(agg.sketch.bins)).quantiles(PERCENTILES)
            assert agg.sketch.quantiles(PERCENTILES) == expected
