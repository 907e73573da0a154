"""The running totals against the same figures summed from scratch, as cells arrive and minutes leave."""

from __future__ import annotations

import random

import pytest

from flexgate_stream.tick.aggregate import Agg
from flexgate_stream.tick.figures import PERCENTILES
from flexgate_stream.tick.levels import Levels
from flexgate_stream.tick.rollups import Cell
from flexgate_stream.tick.sketch import LatencySketch, bin_of
from flexgate_stream.tick.tally import Tally

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
        # A few rows of the minutes about to leave the 24 h window and the hour, before or after a fold read them
        # ahead.
        old = [*cells(rnd, range(tally.minute + 1 - 1440, tally.minute + 3 - 1440), 20),
               *cells(rnd, range(tally.minute + 1 - 60, tally.minute + 3 - 60), 20)]
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


def test_deferred_cells_count_at_once_and_give_the_same_figures_as_cells_added_at_once():
    rnd = random.Random(11)
    deferred, eager, pending = Agg(), Agg(), []
    added: list[Cell] = []
    for step in range(300):
        if added and rnd.random() < 0.3:
            cell, sign = added.pop(rnd.randrange(len(added))), -1
        else:
            cell, sign = cells(rnd, range(MINUTE, MINUTE + 1), 1)[0], 1
            added.append(cell)
        if step % 5 == 0:
            deferred.add(cell, sign)  # some at once, between deferred ones
        elif step % 5 == 1:
            deferred.defer_all([cell], sign, pending)
        else:
            deferred.defer(cell, sign, pending)
        eager.add(cell, sign)
        assert (deferred.requests, deferred.latency_count) == (eager.requests, eager.latency_count)
        if step % 9 == 0:
            assert deferred.stats() == eager.stats()
    assert same(deferred, eager)
    assert deferred.stats() == eager.stats()


def test_a_tick_defers_the_bins_of_its_cells_and_the_fold_between_ticks_settles_them():
    rnd = random.Random(13)
    stored = cells(rnd, range(MINUTE - 70, MINUTE + 1), 2000)
    tally = Tally(MINUTE, stored, [c for c in stored if MINUTE - c.minute <= 60])
    assert not tally.pending

    def load(first: int, last: int) -> list[Cell]:
        return [c for c in stored if first <= c.minute <= last]

    new = cells(rnd, range(MINUTE - 1, MINUTE + 1), 200)
    stored.extend(new)
    tally.apply(new)
    assert tally.pending  # the windows' groups hold the new cells' bins for later
    for levels, length in ((tally.day, 1440), (tally.hour, 60), (tally.five, 5)):
        expected = summed([c for c in stored if 0 <= MINUTE - c.minute < length])
        for kind in ("routes", "upstreams"):  # counts (what rankings read) are exact before any bin is added
            assert {k: a.requests for k, a in getattr(levels, kind).items()} == {
                k: a.requests for k, a in getattr(expected, kind).items()}
    tally.between_ticks(MINUTE + 1, load)
    assert not tally.pending
    groups = [*tally.day.routes.values(), *tally.day.pairs.values(), *tally.hour.routes.values()]
    assert all(agg._later is None for agg in groups)
    for levels, length in ((tally.day, 1440), (tally.hour, 60), (tally.five, 5)):
        expected = summed([c for c in stored if 0 <= MINUTE + 1 - c.minute < length])
        assert all(same(levels.routes[name], agg) for name, agg in expected.routes.items())
