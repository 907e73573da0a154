"""A tick's held read: taking its cells back out of the running totals leaves them as if never counted."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from flexgate_stream.tick.held import HeldRead, negated
from flexgate_stream.tick.rollups import Cell
from flexgate_stream.tick.slots import per_route
from flexgate_stream.tick.tally import Tally
from tests.unit.test_tally import MINUTE, cells, same, summed

pytestmark = pytest.mark.timeout(60)


def test_held_cells_taken_back_out_leave_every_window_as_if_they_were_never_counted():
    rnd = random.Random(11)
    stored = cells(rnd, range(MINUTE - 70, MINUTE + 1), 2000)
    tally = Tally(MINUTE, stored, [c for c in stored if MINUTE - c.minute <= 60])
    held = cells(rnd, range(MINUTE - 2, MINUTE + 1), 400)
    tally.apply(held)
    for levels in (tally.day, tally.hour, tally.five):  # read while held: they count (a tick published them)
        assert levels.total.requests > 0
    tally.apply(negated(held))  # another publisher read the same rows: they leave
    tally.settle()
    tally.keep()
    for levels, length in ((tally.day, 1440), (tally.hour, 60), (tally.five, 5)):
        expected = summed([c for c in stored if 0 <= MINUTE - c.minute < length])
        assert same(levels.total, expected.total)
        for kind in ("routes", "upstreams"):
            groups = getattr(expected, kind)
            assert set(getattr(levels, kind)) == set(groups), "a group the held cells made is dropped again"
            assert all(same(getattr(levels, kind)[name], agg) for name, agg in groups.items())
            assert all(same(getattr(levels, kind)[name].copy(), agg) for name, agg in groups.items())
    assert tally.day.pairs is not None
    assert {k: a.requests for k, a in tally.day.pairs.items()} == _pairs(stored, MINUTE)


def _pairs(stored: list[Cell], minute: int) -> dict[tuple[str, str], int]:
    out: dict[tuple[str, str], int] = {}
    for c in stored:
        if 0 <= minute - c.minute < 1440:
            out[(c.route, c.upstream)] = out.get((c.route, c.upstream), 0) + c.requests
    return out


def test_the_held_slot_cells_after_a_window_end_join_the_stored_ones_of_its_minute():
    slot_ms = 5000
    minute = 29_000_000
    end = datetime.fromtimestamp(minute * 60 + 35, UTC)  # a window ending 35 s into its minute
    first_slot = (minute * 60 + 35) * 1000 // slot_ms
    # Slot cells before the end, at it, after it, and in the next minute.
    slot_cells = [Cell(first_slot - 1, "/a", "u", 1), Cell(first_slot, "/a", "u", 2),
                  Cell(first_slot + 4, "/b", "u", 3), Cell((minute + 1) * 60 * 1000 // slot_ms, "/a", "u", 7)]
    read = HeldRead((0, 0, 0, ""), None, [], slot_cells)  # type: ignore[arg-type]
    later = read.later(end, minute, slot_ms)
    assert sorted((c.route, c.requests) for c in later) == [("/a", 2), ("/b", 3)]
    stored = [Cell(first_slot + 1, "/a", "u", 10)]  # as read from the slots table
    joined = per_route([*stored, *later], minute)
    assert sorted((c.minute, c.route, c.requests) for c in joined) == [(minute, "/a", 12), (minute, "/b", 3)]
