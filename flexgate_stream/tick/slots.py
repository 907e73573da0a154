"""Slot cells in PostgreSQL (``request_rollup_slots``): the recent rows per tick-long slot, so a window that ends
inside a minute counts exactly the rows stamped before its end.

The rollups hold whole minutes. A window ending at 12:00:05 is shaped from the minute cells up to 12:00 less
the slot cells of 12:00:05 and later, folded from the same rows under the same labels. Slot cells are kept
only for minutes that may still be published (from the minute of the newest published window on).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import datetime

import psycopg2.extensions

from flexgate_stream.tick.rollups import (
    CELL_COLUMNS,
    MINUTE_SECONDS,
    Cell,
    cell_from_row,
    merge_cell,
)


def slot_ms(tick_seconds: float) -> int:
    """The slot length: the longest that every window end (a multiple of the tick) falls on a boundary of."""
    return math.gcd(round(tick_seconds * 1000), MINUTE_SECONDS * 1000) or 1000


def after(cur: psycopg2.extensions.cursor, end: datetime, minute: int, held: Iterable[Cell] = ()) -> list[Cell]:
    """The rows of ``minute`` stamped at or after ``end``, one cell per route and upstream (minute ``minute``);
    ``held``: slot cells of them not stored yet (a tick's own read)."""
    cur.execute(f"SELECT {CELL_COLUMNS.replace('bucket_start', 'slot_start', 1)} FROM request_rollup_slots"
                " WHERE slot_start >= %s AND slot_start < to_timestamp(%s)", (end, (minute + 1) * MINUTE_SECONDS))
    return per_route([*map(cell_from_row, cur.fetchall()), *held], minute)


def per_route(cells: Iterable[Cell], minute: int) -> list[Cell]:
    """``cells`` summed by route and upstream, as cells of ``minute``."""
    merged: dict[tuple[str, str], Cell] = {}
    for cell in cells:
        into = merged.get((cell.route, cell.upstream))
        if into is None:
            into = merged[(cell.route, cell.upstream)] = Cell(minute, cell.route, cell.upstream)
        merge_cell(into, cell)  # the sketch's count too
    return list(merged.values())


def prune_slots(cur: psycopg2.extensions.cursor, before_minute: int) -> None:
    """Drop the slot cells of minutes before ``before_minute`` (no window ending in them is published again)."""
    cur.execute("DELETE FROM request_rollup_slots WHERE slot_start < to_timestamp(%s)",
                (before_minute * MINUTE_SECONDS,))
