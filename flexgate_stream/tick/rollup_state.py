"""How far the rollups have read the request log: the ``rollup_state`` row, read and saved only here."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import psycopg2.extensions

from flexgate_stream.tick.rollups import Visibility, scalar
from flexgate_stream.tick.time_column import TimeColumn
from flexgate_stream.tick.watermark import Read

FIRST_LATE_SECONDS = 60  # at first start, rows of the last minute are re-read if their transaction was open


@dataclass
class RollupState:
    """The ``rollup_state`` row (its columns, in their order), and what this transaction knows besides."""

    version: int  # the change-log version the rollups are at
    max_id: int  # the highest request id read
    low_id: int  # the watermark: ids at or below it are not read again
    visibility: str  # what the last read saw committed: its ``pg_current_snapshot()`` (column ``snapshot``)
    pending: list[Read]  # reads whose late commits are still waited for (``watermark.py``)
    requests_before: int  # requests older than the rollups keep, still counted in the all-time total
    backfill_below: int  # ids below it, from the log that existed at first start, are still to be folded
    backfill_visibility: str  # the visibility that log is read with (column ``backfill_snapshot``)
    logged: int | None  # the version whose cells a tick only logged, not yet added into request_rollups
    current: str  # not stored: this transaction's visibility
    fresh: bool = False  # not stored: made by this transaction (first start), so there is nothing new to read


COLUMNS = ("version, max_id, low_id, snapshot, pending, requests_before, backfill_below, backfill_snapshot,"
           " logged_version")


def load_state(cur: psycopg2.extensions.cursor, column: TimeColumn) -> RollupState:
    """The state as this transaction sees it (made at first start); must open the transaction, whose visibility
    it notes."""
    # The first statement: the transaction's visibility, with the row (one round trip; no row at first start).
    cur.execute(f"SELECT v.current, {COLUMNS} FROM (SELECT pg_current_snapshot()::text AS current) AS v"
                " LEFT JOIN rollup_state ON id = 1")
    first = cur.fetchone()
    if first is None:
        raise LookupError("the query returned no row")
    current, *row = first
    if row[0] is None:
        return _first_state(cur, column, current)
    version, max_id, low_id, visibility, pending, before, below, backfill, logged = row
    return RollupState(int(version), int(max_id), int(low_id), visibility, [(int(i), int(x)) for i, x in pending],
                       int(before), int(below), backfill, None if logged is None else int(logged), current)


def _first_state(cur: psycopg2.extensions.cursor, column: TimeColumn, current: str) -> RollupState:
    """First start: new rows are read from the current max id; older ones are backfilled in chunks."""
    cur.execute("SELECT coalesce(max(id), 0) FROM requests")
    top = int(scalar(cur))
    cur.execute(f"SELECT min(id) FROM requests WHERE {column.between('a', 'b')}",
                column.params(a=datetime.now(UTC) - timedelta(seconds=FIRST_LATE_SECONDS),
                              b=datetime.now(UTC) + timedelta(days=1)))
    recent = scalar(cur)
    low = min(top, int(recent) - 1) if recent is not None else top
    state = RollupState(0, top, low, current, [(top, Visibility(current).xmax)], 0, top, current, None, current, True)
    cur.execute(f"INSERT INTO rollup_state (id, {COLUMNS}) VALUES (1, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                _row(state))
    return state


def save_state(cur: psycopg2.extensions.cursor, state: RollupState) -> None:
    """Store ``state`` (in the transaction it was loaded in)."""
    cur.execute("UPDATE rollup_state SET version = %s, max_id = %s, low_id = %s, snapshot = %s, pending = %s,"
                " requests_before = %s, backfill_below = %s, backfill_snapshot = %s, logged_version = %s,"
                " updated_at = now() WHERE id = 1",
                _row(state))


def stored_version(cur: psycopg2.extensions.cursor) -> int:
    """The change-log version the stored rollups are at (0 before the first start)."""
    cur.execute("SELECT version FROM rollup_state WHERE id = 1")
    row = cur.fetchone()
    return int(row[0]) if row else 0


def _row(state: RollupState) -> tuple[object, ...]:
    """The stored columns' values, in the order of COLUMNS."""
    return (state.version, state.max_id, state.low_id, state.visibility, json.dumps(state.pending),
            state.requests_before, state.backfill_below, state.backfill_visibility, state.logged)
