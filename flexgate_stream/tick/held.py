"""A tick's read, held in memory until the next step of the same publisher stores it: the tick writes nothing.

A tick that has nothing else to write (its windows in the running totals' minute, nothing to prune) keeps the
cells it read and the state it moved to; the next step, under the lock and before anything else, stores them as
the next version of the change log and the rollups. The rows stay in the log until then, so a publisher that
stops (or dies) in between loses nothing: the next read starts where the stored state says. If another publisher
moved the state in between, it read the same rows and logged them: the held cells are taken back out of the
running totals (``negated``) and that publisher's change log is followed instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import psycopg2.extensions

from flexgate_stream.tick import cell_store
from flexgate_stream.tick.rollup_state import RollupState
from flexgate_stream.tick.rollups import MINUTE_SECONDS, Cell
from flexgate_stream.tick.sketch import LatencySketch

Base = tuple[int, int, int, str]  # (version, max_id, low_id, visibility): where a read started


def base_of(state: RollupState) -> Base:
    """What a read starts from; a state stored by any other step differs in it."""
    return state.version, state.max_id, state.low_id, state.visibility


@dataclass
class HeldRead:
    """The cells (minute and slot cells) a tick read from ``base``, and the state after the read."""

    base: Base
    state: RollupState
    cells: list[Cell]
    slot_cells: list[Cell]

    def later(self, end: datetime, minute: int, slot_ms: int) -> list[Cell]:
        """The held slot cells of ``minute`` stamped at or after ``end``."""
        first, stop = end.timestamp() * 1000, (minute + 1) * MINUTE_SECONDS * 1000
        return [cell for cell in self.slot_cells if first <= cell.minute * slot_ms < stop]


def store(cur: psycopg2.extensions.cursor, state: RollupState, cells: list[Cell], slot_cells: list[Cell],
          slot_ms: int) -> None:
    """Log and add ``cells`` as the change of ``state.version``; add the slot cells."""
    cell_store.store_cells(cur, cells, state.version)
    cell_store.store_slots(cur, slot_cells, slot_ms)


def negated(cells: list[Cell]) -> list[Cell]:
    """Cells that take ``cells`` back out of running totals (every count negated)."""
    return [Cell(c.minute, c.route, c.upstream, -c.requests, {k: -n for k, n in c.status_codes.items()},
                 -c.latency_count, -c.latency_sum, LatencySketch({k: -n for k, n in c.sketch.bins.items()}))
            for c in cells]
