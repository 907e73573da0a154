"""Every window counts exactly the rows stamped inside it: a window that ends inside a minute leaves out the
rows of that minute stamped after its end, for the live window and for windows shaped late."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from flexgate_stream.requestlog import schema
from flexgate_stream.tick.incremental import IncrementalAggregation
from flexgate_stream.tick.snapshot import summary_snapshot
from flexgate_stream.tick.time_column import TimeColumn

pytestmark = pytest.mark.timeout(60)


def _insert(db, stamps: list[datetime], path: str = "/api/users/1", status: int = 200) -> None:
    with db, db.cursor() as cur:
        for at in stamps:
            cur.execute('INSERT INTO requests ("timestamp", method, path, status_code, response_time_ms, upstream)'
                        " VALUES (%s, 'GET', %s, %s, 20, 'users-svc')", (at, path, status))


def _minute_start() -> datetime:
    """The start of a minute that began at least 40 s ago, so its first half is in the past."""
    now = datetime.now(UTC)
    start = now.replace(second=0, microsecond=0)
    return start if (now - start).total_seconds() >= 40 else start - timedelta(minutes=1)


def test_windows_ending_inside_a_minute_leave_out_its_rows_stamped_after_their_end(db):
    schema.upgrade(db)
    aggregation = IncrementalAggregation(TimeColumn(None), tick_seconds=5)
    minute = _minute_start()
    aggregation.published = minute - timedelta(seconds=5)  # windows of this minute are still to be published
    aggregation.tick(db, [minute - timedelta(seconds=5)])  # first start: rows from here on are read as they arrive
    before = [minute + timedelta(seconds=s) for s in (1, 4, 9, 14)]
    _insert(db, before)
    _insert(db, [minute + timedelta(seconds=s) for s in (15, 22, 31, 38)], path="/api/orders/7", status=503)
    ends = [minute + timedelta(seconds=s) for s in (5, 10, 15, 20, 25, 35)]
    figures = aggregation.tick(db, ends)  # shaped late: every row of the minute is folded already
    counted = [f.summary.requests for f in figures]
    assert counted == [2, 3, 4, 5, 6, 7]  # 1, 4 | 9 | 14 | 15 | 22 | 31 (38 is after 35)
    last = summary_snapshot(figures[-1], 20)
    assert last["summary"]["serverErrors"] == 3
    assert {e["name"]: e["requests"] for e in last["routes"]} == {"/api/users/:id": 4, "/api/orders/:id": 3}
    assert last["last5Minutes"]["summary"]["totalRequests"] == 7
    assert sum(p["value"] or 0 for p in last["requestRate"]["data"]) > 0
    # The tally is whole again: a window at the minute's end counts every row, once.
    (whole,) = aggregation.tick(db, [minute + timedelta(seconds=60)])
    assert whole.summary.requests == 8


def test_the_live_window_leaves_out_rows_stamped_after_its_end_that_were_folded_before_it(db):
    schema.upgrade(db)
    aggregation = IncrementalAggregation(TimeColumn(None), tick_seconds=5)
    minute = _minute_start()
    end = minute + timedelta(seconds=20)
    aggregation.published = end - timedelta(seconds=5)
    aggregation.tick(db, [end - timedelta(seconds=5)])
    _insert(db, [minute + timedelta(seconds=s) for s in (3, 12, 19.999)])
    aggregation.tick(db, [])  # a fold between ticks
    _insert(db, [minute + timedelta(seconds=s) for s in (20, 21.5)])  # stamped after the end, folded before it
    aggregation.tick(db, [])
    (figures,) = aggregation.tick(db, [end])
    assert figures.summary.requests == 3
    assert figures.all_time == 3


def test_a_fold_moves_the_windows_into_a_new_minute_and_the_next_window_still_counts_only_its_rows(db):
    schema.upgrade(db)
    aggregation = IncrementalAggregation(TimeColumn(None), tick_seconds=5)
    minute = _minute_start()
    aggregation.published = minute - timedelta(seconds=5)
    aggregation.tick(db, [minute - timedelta(seconds=5)])
    _insert(db, [minute - timedelta(seconds=10), minute + timedelta(seconds=2), minute + timedelta(seconds=8)])
    (before,) = aggregation.tick(db, [minute])  # the window ending on the minute: the old minute's rows only
    assert before.summary.requests == 1
    tally = aggregation.tally
    aggregation.ahead = minute + timedelta(seconds=3)  # a fold between ticks, 3 s into the new minute
    aggregation.tick(db, [])
    assert aggregation.tally is tally and tally.minute == int(minute.timestamp()) // 60  # moved, not rebuilt
    aggregation.ahead = None
    (figures,) = aggregation.tick(db, [minute + timedelta(seconds=5)])
    assert figures.summary.requests == 2 and aggregation.tally is tally
