"""Figures from the rollups against SQL over the same rows: every level, late commits, restarts, a second publisher.

Windows from the rollups are whole one-minute buckets: the 24 h window is the 1440 minutes ending
with the minute that holds windowEnd; the series are clock-aligned 5-minute groups. Counts must be
exact; percentiles within 1 % (relative) of ``percentile_cont``; other floats within half a published unit.
"""

from __future__ import annotations

from datetime import timedelta

import psycopg2
import pytest

from flexgate_stream.requestlog import schema
from flexgate_stream.tick.cell_store import CELLS, COLUMNS, cell_params, store_cells
from flexgate_stream.tick.incremental import KEEP_CHANGES, IncrementalAggregation
from flexgate_stream.tick.labels import Cardinality, Labeller
from flexgate_stream.tick.lock import locked
from flexgate_stream.tick.rollups import MINUTE_SECONDS, fold_rows, rows_sql
from flexgate_stream.tick.snapshot import busiest_routes, route_snapshot, summary_snapshot
from flexgate_stream.tick.time_column import TimeColumn
from tests.integration.expected_figures import (
    assert_rollup_snapshot,
    assert_route_snapshot,
    now_end,
)
from tests.integration.request_log import INSERT, insert, make_rows

pytestmark = pytest.mark.timeout(120)

def built(db) -> IncrementalAggregation:
    """An aggregation that has folded the whole existing log."""
    aggregation = IncrementalAggregation(TimeColumn(None))
    aggregation.tick(db, [])
    while aggregation.backfill_step(db):
        pass
    return aggregation


def test_every_figure_at_every_level_matches_sql_over_the_same_rows(db):
    schema.upgrade(db)
    end = now_end()
    insert(db, make_rows(21, 3000, end=end))
    aggregation = built(db)
    late = [(end - timedelta(seconds=s), "/api/users/77", 503, 12.5, "users-svc") for s in (1, 30, 59)]
    insert(db, make_rows(22, 600, end=end) + late)  # new rows, some timestamped up to an hour in the past
    (figures,) = aggregation.tick(db, [end])
    snap = summary_snapshot(figures, 3)
    assert snap["complete"] is True and snap["summary"]["totalRequests"] > 1500 and len(snap["routes"]) >= 5
    assert_rollup_snapshot(db, snap, end)
    for route, entry in busiest_routes(figures, 3):
        assert_route_snapshot(db, route_snapshot(figures, route, entry, 5), end)


def test_a_transaction_held_open_across_two_ticks_is_counted_once(db, database_url):
    schema.upgrade(db)
    end = now_end()
    insert(db, make_rows(23, 300, end=end))
    aggregation = built(db)
    held = psycopg2.connect(database_url)
    try:
        with held.cursor() as cur:  # ids are taken now, the commit comes two ticks later
            for i in range(40):
                cur.execute(INSERT, (end - timedelta(seconds=60), f"/api/held/{i}", 500, 42.0, "held-svc"))
        insert(db, make_rows(24, 200, end=end))  # later ids, committed at once
        aggregation.tick(db, [])
        aggregation.tick(db, [])
        held.commit()
    finally:
        held.close()
    for _ in range(3):
        (figures,) = aggregation.tick(db, [end])
    snap = summary_snapshot(figures, 3)
    by_route = {r["name"]: r["requests"] for r in snap["routes"]}
    assert by_route.get("/api/held/:id") == 40, "rows of the transaction held open were lost or counted twice"
    assert_rollup_snapshot(db, snap, end)


def test_a_restarted_or_second_publisher_resumes_from_the_rollups_without_rescanning(db):
    schema.upgrade(db)
    end = now_end()
    insert(db, make_rows(25, 2000, end=end))
    first = built(db)
    (before,) = first.tick(db, [end])
    with db, db.cursor() as cur:  # a second publisher that rescanned the log would now find nothing
        cur.execute("ALTER TABLE requests RENAME TO requests_kept")
        cur.execute("CREATE TABLE requests (LIKE requests_kept INCLUDING ALL)")
    second = IncrementalAggregation(TimeColumn(None))
    (again,) = second.tick(db, [end])
    with db, db.cursor() as cur:
        cur.execute("DROP TABLE requests")
        cur.execute("ALTER TABLE requests_kept RENAME TO requests")
    assert summary_snapshot(again, 3) == summary_snapshot(before, 3)
    insert(db, make_rows(26, 300, end=end))
    (one,) = first.tick(db, [end])  # the first folds the new rows; the second follows the change log
    (two,) = second.tick(db, [end])
    assert summary_snapshot(one, 3) == summary_snapshot(two, 3)
    assert_rollup_snapshot(db, summary_snapshot(two, 3), end)


def test_a_bucket_without_requests_has_no_latency(db):
    schema.upgrade(db)
    end = now_end()
    insert(db, [(end - timedelta(minutes=50), "/a", 200, 10.0, None), (end - timedelta(seconds=5), "/a", 200, 20.0,
                                                                         None)])
    (figures,) = built(db).tick(db, [end])
    snap = summary_snapshot(figures, 3)
    values = [p["value"] for p in snap["latency"]["p50"]["data"]]
    assert values.count(None) >= 9 and 0 not in values and values[-1] == pytest.approx(20.0, rel=0.01)
    assert_rollup_snapshot(db, snap, end)


def test_first_start_builds_the_rollups_in_chunks_while_ticks_keep_publishing(db, monkeypatch, caplog):
    import flexgate_stream.tick.incremental as incremental

    monkeypatch.setattr(incremental, "BACKFILL_IDS", 500)
    schema.upgrade(db)
    end = now_end()
    insert(db, make_rows(27, 2000, end=end))
    aggregation = IncrementalAggregation(TimeColumn(None))
    caplog.set_level("INFO", logger="workers.publisher")
    (first,) = aggregation.tick(db, [end])
    assert first.complete is False and first.summary.requests == 0  # published at once, before the backfill
    insert(db, make_rows(28, 100, end=end))
    steps = 0
    while aggregation.backfill_step(db):
        steps += 1
        (partial,) = aggregation.tick(db, [end])  # ticks go on between chunks
        assert partial.complete is False
    (done,) = aggregation.tick(db, [end])
    assert steps >= 3 and done.complete is True
    assert [r.getMessage() for r in caplog.records if "up to 100 %" in r.getMessage()]
    assert_rollup_snapshot(db, summary_snapshot(done, 3), end)


def test_old_rollups_are_pruned_and_still_counted_in_the_all_time_total(db, monkeypatch):
    import flexgate_stream.tick.incremental as incremental

    schema.upgrade(db)
    end = now_end()
    old = [(end - timedelta(hours=h), "/api/old", 200, 5.0, None) for h in (30, 40, 50)]
    insert(db, old + make_rows(29, 300, end=end))
    aggregation = built(db)
    (before,) = aggregation.tick(db, [end])
    monkeypatch.setattr(incremental, "KEEP_MINUTES", 35 * 60)  # the 40 h and 50 h old minutes are now too old
    aggregation.tick(db, [])  # a fold between ticks prunes (a tick prunes only when no fold did for a while)
    (after,) = aggregation.tick(db, [end])
    with db.cursor() as cur:
        cur.execute("SELECT count(*) FROM request_rollups WHERE route = '/api/old'")
        assert cur.fetchone()[0] == 1
    db.rollback()
    assert after.all_time == before.all_time and summary_snapshot(after, 3)["summary"] == summary_snapshot(
        before, 3)["summary"]
    fresh = IncrementalAggregation(TimeColumn(None))  # a restart reads the pruned count back
    (again,) = fresh.tick(db, [end])
    assert again.all_time == before.all_time


def test_a_naive_gateway_column_is_bucketed_in_its_own_zone(db):
    """A gateway table with ``timestamp without time zone`` in Europe/Berlin: the same figures as SQL reads."""
    with db, db.cursor() as cur:
        cur.execute("CREATE TABLE requests (id BIGSERIAL PRIMARY KEY, timestamp TIMESTAMP NOT NULL DEFAULT NOW(),"
                    " method VARCHAR(10), path TEXT, status_code INT, response_time_ms NUMERIC(10,2),"
                    " upstream VARCHAR(255))")
    schema.upgrade(db)
    end = now_end()
    insert(db, make_rows(30, 1500, end=end), zone="Europe/Berlin")
    aggregation = IncrementalAggregation(TimeColumn("Europe/Berlin"))
    aggregation.tick(db, [])
    while aggregation.backfill_step(db):
        pass
    insert(db, make_rows(31, 300, end=end), zone="Europe/Berlin")
    (figures,) = aggregation.tick(db, [end])
    with db, db.cursor() as cur:
        cur.execute("SET TIME ZONE 'Europe/Berlin'")  # so the checks compare wall-clock values in that zone
    assert_rollup_snapshot(db, summary_snapshot(figures, 3), end)


def test_names_with_quotes_backslashes_braces_and_commas_are_stored_and_read_back_as_written(db):
    """Cells travel to PostgreSQL as array literals: no upstream name may be split, unquoted or read as NULL."""
    schema.upgrade(db)
    end = now_end()
    names = ['a"b', "c\\d", "{e,f}", "NULL", " sp ace ", "ünï ✓", "g'h", '\\"', ""]
    rows = [(end - timedelta(seconds=5 + i), "/api/users", 200 + i, 10.0 + i, name) for i, name in enumerate(names)]
    aggregation = built(db)
    insert(db, rows + rows[:3])
    (figures,) = aggregation.tick(db, [end])  # folded, stored, then read back by a second publisher
    (again,) = IncrementalAggregation(TimeColumn(None)).tick(db, [end])
    for shown in (figures, again):
        snap = summary_snapshot(shown, 20)
        by_name = {u["name"]: u["requests"] for u in snap["upstreams"]}
        assert by_name == {name: 2 if i < 3 else 1 for i, name in enumerate(names)}
        assert_rollup_snapshot(db, snap, end)


def _stored(db) -> tuple[int, int, int, int | None]:
    """(requests in the rollups, rows in the log, the state's version, the version only logged)."""
    with db.cursor() as cur:
        cur.execute("SELECT (SELECT sum(requests) FROM request_rollups), (SELECT count(*) FROM requests),"
                    " version, logged_version FROM rollup_state")
        stored, rows, version, logged = cur.fetchone()
    db.rollback()
    return int(stored), int(rows), int(version), None if logged is None else int(logged)


def _after_a_tick_that_held_its_read(db, seed: int):
    """A publisher built on 1,500 rows that ticked once, then once more after 400 new rows (holding what it read):
    (the publisher, the window's end, the second tick's figures)."""
    schema.upgrade(db)
    end = now_end()
    insert(db, make_rows(seed, 1500, end=end))
    aggregation = built(db)
    aggregation.tick(db, [end])
    insert(db, make_rows(seed + 1, 400, end=end))
    (figures,) = aggregation.tick(db, [end])
    return aggregation, end, figures


def test_a_tick_writes_nothing_and_the_next_step_stores_what_it_read(db):
    aggregation, end, figures = _after_a_tick_that_held_its_read(db, 41)
    stored, rows, version, logged = _stored(db)
    assert stored < rows and logged is None, "the tick's own rows are not in the rollups yet"
    assert_rollup_snapshot(db, summary_snapshot(figures, 3), end)  # but they are in its figures
    aggregation.tick(db, [])  # its next step (a fold) stores them before anything else
    assert _stored(db) == (rows, rows, version + 1, None)
    insert(db, make_rows(47, 100, end=end))
    aggregation.tick(db, [end])
    assert _stored(db)[0] == rows
    aggregation.settle(db)  # a warm stop stores what the last tick held
    assert _stored(db) == (rows + 100, rows + 100, version + 2, None)
    (again,) = IncrementalAggregation(TimeColumn(None)).tick(db, [end])  # the next publisher reads the rollups
    assert_rollup_snapshot(db, summary_snapshot(again, 3), end)


def test_a_publisher_whose_held_rows_another_one_stored_first_counts_every_row_once(db):
    aggregation, end, _figures = _after_a_tick_that_held_its_read(db, 42)
    # A publisher side by side (or the next after a crash) takes its turn first: it reads the same rows.
    IncrementalAggregation(TimeColumn(None)).tick(db, [end])
    stored, rows, version, _logged = _stored(db)
    assert stored == rows
    insert(db, make_rows(48, 100, end=end))
    (again,) = aggregation.tick(db, [end])  # takes its held rows back out and follows the other's change log
    assert_rollup_snapshot(db, summary_snapshot(again, 3), end)
    aggregation.tick(db, [])
    assert _stored(db) == (rows + 100, rows + 100, version + 1, None)


def _older_release_step(db) -> None:
    """One step of a publisher of the release before the deferred merge, as it ran: it folds the new rows, logs
    AND adds them into the rollups as the next version, prunes the change log its way and saves the state's
    columns it knows (not logged_version)."""
    column = TimeColumn(None)
    with locked(db) as cur:
        cur.execute("SELECT version, max_id FROM rollup_state")
        version, max_id = cur.fetchone()
        cells = fold_rows(cur, rows_sql(column.instant(), "id > %(max)s"), column.params(max=max_id), Labeller(),
                          Cardinality(1000, 200).filters)
        cur.execute("SELECT coalesce(max(id), 0), pg_current_snapshot()::text FROM requests")
        top, seen = cur.fetchone()
        store_cells(cur, cells, version + 1)
        cur.execute("DELETE FROM rollup_changes WHERE version < %s", (version + 1 - KEEP_CHANGES,))
        cur.execute("UPDATE rollup_state SET version = %s, max_id = %s, low_id = %s, snapshot = %s, pending = '[]',"
                    " updated_at = now() WHERE id = 1", (version + 1, top, top, seen))


def test_a_tick_the_release_before_only_logged_is_added_into_the_rollups_by_the_next_step(db):
    aggregation, end, _figures = _after_a_tick_that_held_its_read(db, 44)
    aggregation.settle(db)
    insert(db, make_rows(49, 250, end=end))
    column = TimeColumn(None)
    with locked(db) as cur:  # that release's tick: it logs its cells as the next version and names it
        cur.execute("SELECT version, max_id FROM rollup_state")
        version, max_id = cur.fetchone()
        cells = fold_rows(cur, rows_sql(column.instant(), "id > %(max)s"), column.params(max=max_id), Labeller(),
                          Cardinality(1000, 200).filters)
        cur.execute(f"INSERT INTO rollup_changes SELECT %(version)s, v.start, {COLUMNS} FROM ({CELLS}) AS v",
                    cell_params(cells, lambda c: c.minute * MINUTE_SECONDS) | {"version": version + 1})
        cur.execute("UPDATE rollup_state SET version = %s, max_id = (SELECT max(id) FROM requests),"
                    " low_id = (SELECT max(id) FROM requests), snapshot = pg_current_snapshot()::text,"
                    " pending = '[]', logged_version = %s WHERE id = 1", (version + 1, version + 1))
    stored, rows, _version, logged = _stored(db)
    assert (stored, logged) == (rows - 250, version + 1)
    (again,) = IncrementalAggregation(TimeColumn(None)).tick(db, [end])  # this release, next
    assert _stored(db) == (rows, rows, version + 1, None)
    assert_rollup_snapshot(db, summary_snapshot(again, 3), end)


def test_publishers_of_this_and_the_older_release_taking_turns_count_every_row_once(db):
    aggregation, end, _figures = _after_a_tick_that_held_its_read(db, 43)
    assert _stored(db)[0] < _stored(db)[1]
    # A deploy or a rollback: the older release takes a turn right after (the newer one crashed, or overlaps).
    insert(db, make_rows(45, 300, end=end))
    _older_release_step(db)
    stored, rows, _version, logged = _stored(db)
    assert (stored, logged) == (rows, None), "the older release's step reads the held rows too"
    insert(db, make_rows(46, 200, end=end))
    aggregation.tick(db, [end])  # the newer release again
    _older_release_step(db)
    aggregation.tick(db, [end])
    aggregation.tick(db, [])
    stored, rows, _version, _logged = _stored(db)
    assert stored == rows, "every request is in the rollups exactly once"
    (again,) = IncrementalAggregation(TimeColumn(None)).tick(db, [end])  # a publisher that reads the rollups
    assert_rollup_snapshot(db, summary_snapshot(again, 3), end)
