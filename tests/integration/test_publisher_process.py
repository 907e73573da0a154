"""The real ``python -m workers.publisher`` process against real PostgreSQL and nats-server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg2
import pytest

from flexgate_stream.devstack.traffic import RowWriter, TrafficModel
from flexgate_stream.liveness import read_liveness
from flexgate_stream.messages import ALERTS_STREAM, METRICS_STREAM, ROUTES_STREAM
from flexgate_stream.requestlog import schema
from flexgate_stream.tick.stream_setup import ensure_streams
from flexgate_stream.timestamps import parse_iso
from tests.integration.expected_figures import assert_rollup_snapshot
from tests.integration.publishers import Worker, nats_call, purge, stored, tick_stuck_on_lock
from tests.integration.request_log import insert, make_rows, seeded
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.timeout(120), pytest.mark.slow(10)]


def test_two_publishers_store_each_window_once_and_figures_are_right(workers, db, database_url, nats_server):
    seeded(db, 1500)
    nats_call(nats_server.url, purge)
    first = workers(database_url, nats_server.url, FLEXGATE_TOP_ROUTES="3")
    second = workers(database_url, nats_server.url, FLEXGATE_TOP_ROUTES="3")
    pids = {first.proc.pid, second.proc.pid}

    def both_live():
        live = nats_call(nats_server.url, read_liveness)
        return {p["beat"]["pid"] for p in live["publishers"] if p["live"]} >= pids and live

    wait_until(both_live, 30, "both publishers to tick")
    wait_until(lambda: len(nats_call(nats_server.url, lambda js: stored(js, METRICS_STREAM))) >= 6, 30, "six windows")
    for worker in (first, second):
        worker.proc.send_signal(signal.SIGTERM)
    assert [w.proc.wait(10) for w in (first, second)] == [0, 0]

    summaries = nats_call(nats_server.url, lambda js: stored(js, METRICS_STREAM))
    ends = [body["windowEnd"] for _s, _h, body in summaries]
    assert len(ends) == len(set(ends)) >= 6
    assert all(h["Nats-Msg-Id"] == f"metrics.summary@{b['windowEnd']}" for _s, h, b in summaries)
    per_route = [m for m in nats_call(nats_server.url, lambda js: stored(js, ROUTES_STREAM))
                 if m[0].startswith("routes.")]
    keys = [(subject, body["windowEnd"]) for subject, _h, body in per_route]
    assert len(keys) == len(set(keys)) >= 6 and {b["route"] for _s, _h, b in per_route} <= {
        b["name"] for _s, _h, s in summaries for b in s["routes"]}
    assert first.count("already stored") + second.count("already stored") > 0  # both really published
    _s, _h, newest = summaries[-1]
    assert_rollup_snapshot(db, newest, parse_iso(newest["windowEnd"]))
    assert "Traceback" not in first.log() + second.log()
    liveness = nats_call(nats_server.url, read_liveness)
    assert liveness["newestWindowEnd"] == newest["windowEnd"] and liveness["snapshotAge"] is not None
    # Both warm stops removed their heartbeats (a publisher another test killed may still have its own, until TTL).
    ours = {first.proc.pid, second.proc.pid}
    assert [p for p in liveness["publishers"] if p["beat"].get("pid") in ours] == []


def test_the_first_snapshot_of_a_small_log_already_counts_it(workers, db, database_url, nats_server):
    seeded(db, 300)  # the demo's few hundred rows
    nats_call(nats_server.url, purge)
    worker = workers(database_url, nats_server.url)
    found = wait_until(lambda: nats_call(nats_server.url, lambda js: stored(js, METRICS_STREAM)), 30,
                       "the first snapshot")
    _s, _h, first = found[0]
    assert first["complete"] is True and first["summary"]["totalRequests"] > 0
    assert_rollup_snapshot(db, first, parse_iso(first["windowEnd"]))
    assert worker.count("up to 100 %") == 1 and "Traceback" not in worker.log()


def test_a_large_existing_log_is_built_although_its_chunks_run_past_the_statement_timeout(workers, db, database_url,
                                                                                          nats_server):
    """With a tick of 0.5 s the statement timeout is 0.25 s: chunks of 100,000 ids spread over a day take longer.
    They are made smaller, the log is still built, its figures are right, and ticks keep publishing."""
    schema.upgrade(db)
    end = datetime.now(UTC)
    RowWriter(db, None).write(list(TrafficModel(5).rows(end - timedelta(hours=24), end, 60_000)))
    nats_call(nats_server.url, purge)
    worker = workers(database_url, nats_server.url, FLEXGATE_TICK_SECONDS="0.5")

    def complete() -> dict | None:
        found = nats_call(nats_server.url, lambda js: stored(js, METRICS_STREAM))
        return next((body for _s, _h, body in reversed(found) if body["complete"]), None)

    snapshot = wait_until(complete, 100, "a complete snapshot")
    assert_rollup_snapshot(db, snapshot, parse_iso(snapshot["windowEnd"]))
    assert "Traceback" not in worker.log()


def _v(option) -> str:
    return getattr(option, "value", option)


def test_streams_have_the_original_limits(nats_server):
    async def configs(js):
        return {name: (await js.stream_info(name)).config for name in (METRICS_STREAM, ALERTS_STREAM)}

    nats_call(nats_server.url, lambda js: ensure_streams(js, 1))
    metrics, alerts = nats_call(nats_server.url, configs).values()
    assert (metrics.subjects, metrics.max_age, metrics.max_bytes, metrics.max_msgs, metrics.duplicate_window,
            _v(metrics.storage), _v(metrics.discard), _v(metrics.retention)) == (
        ["metrics.>"], 86400, 1 << 30, 100_000, 120, "file", "old", "limits")
    assert (alerts.subjects, alerts.max_age, alerts.max_bytes, alerts.max_msgs, _v(alerts.storage)) == (
        ["alerts.>"], 7 * 86400, 100 << 20, 10_000, "file")


def test_sigterm_finishes_quickly_and_exits_zero_even_with_a_stuck_query(workers, db, database_url, nats_server):
    seeded(db, 100)
    worker = workers(database_url, nats_server.url)
    wait_until(worker.ticked, 30, "the first tick")
    with tick_stuck_on_lock(database_url, waited=1.0):
        started = time.monotonic()
        worker.proc.send_signal(signal.SIGTERM)
        code = worker.proc.wait(10)
        elapsed = time.monotonic() - started
    assert code == 0
    assert elapsed < 5.0, f"warm stop took {elapsed:.2f} s"
    assert "warm stop" in worker.log() and "stopped" in worker.log()
    assert "Traceback" not in worker.log(), worker.log()
    live = nats_call(nats_server.url, read_liveness)
    assert worker.proc.pid not in {p["beat"]["pid"] for p in live["publishers"]}  # heartbeat removed


def test_second_sigterm_is_a_cold_stop(workers, db, database_url, nats_server):
    seeded(db, 100)
    worker = workers(database_url, nats_server.url)
    wait_until(worker.ticked, 30, "the first tick")
    with tick_stuck_on_lock(database_url, waited=1.0):
        worker.proc.send_signal(signal.SIGTERM)
        wait_until(lambda: "warm stop" in worker.log(), 5, "the warm stop to begin")
        started = time.monotonic()
        worker.proc.send_signal(signal.SIGTERM)
        code = worker.proc.wait(10)
        elapsed = time.monotonic() - started
    assert code == 1 and "cold stop" in worker.log()
    assert elapsed < 2.0, f"cold stop took {elapsed:.2f} s"


def test_alerts_fire_and_resolve_once_with_two_publishers(workers, db, database_url, nats_server):
    schema.upgrade(db)
    now = datetime.now(UTC)
    with db, db.cursor() as cur:
        cur.execute("INSERT INTO requests (\"timestamp\", method, path, status_code, response_time_ms, upstream)"
                    " SELECT %s - make_interval(secs => i), 'GET', '/api/orders/' || i,"
                    " CASE WHEN i %% 2 = 0 THEN 503 ELSE 200 END, 10, 'orders-svc' FROM generate_series(1, 60) AS i",
                    (now,))
    nats_call(nats_server.url, purge)
    pair = [workers(database_url, nats_server.url) for _ in range(2)]

    def alerts():
        return [body for _s, _h, body in nats_call(nats_server.url, lambda js: stored(js, ALERTS_STREAM))]

    wait_until(lambda: len(alerts()) >= 4, 30, "four firing alerts")
    _both_ticked_past(nats_server.url, pair, time.time() + 3)
    firing = alerts()
    assert sorted((a["rule"], a["route"] or "*", a["state"]) for a in firing) == [
        ("error-rate-critical", "*", "firing"), ("error-rate-critical", "/api/orders/:id", "firing"),
        ("error-rate-warning", "*", "firing"), ("error-rate-warning", "/api/orders/:id", "firing")]
    assert all(a["value"] == 50.0 for a in firing)
    with db, db.cursor() as cur:  # the log is append-only: new successful traffic brings the rate down
        cur.execute("INSERT INTO requests (\"timestamp\", method, path, status_code, response_time_ms, upstream)"
                    " SELECT now(), 'GET', '/api/orders/' || i, 200, 10, 'orders-svc'"
                    " FROM generate_series(1, 1000) AS i")
    wait_until(lambda: len(alerts()) >= 8, 30, "four resolved alerts")
    _both_ticked_past(nats_server.url, pair, time.time() + 3)
    resolved = [a for a in alerts() if a["state"] == "resolved"]
    assert len(alerts()) == 8 and len(resolved) == 4
    assert {a["startedAt"] for a in resolved} <= {a["startedAt"] for a in firing}


def _both_ticked_past(url: str, pair: list[Worker], instant: float) -> None:
    """Wait until every worker of ``pair`` published a window ending after ``instant`` (from its heartbeat)."""
    pids = {w.proc.pid for w in pair}

    def done() -> bool:
        beats = [p["beat"] for p in nats_call(url, read_liveness)["publishers"] if p["beat"]["pid"] in pids]
        return len(beats) == len(pids) and all(
            b["lastWindowEnd"] and parse_iso(b["lastWindowEnd"]).timestamp() > instant for b in beats)

    wait_until(done, 30, "both publishers to tick past the moment")


@pytest.mark.parametrize(("env", "variable"), [
    ({"DATABASE_URL": ""}, "DATABASE_URL"),
    ({"FLEXGATE_ALERT_OVERRIDES": "error-rate-warning.above=lots"}, "FLEXGATE_ALERT_OVERRIDES"),
    ({"FLEXGATE_TICK_SECONDS": "0"}, "FLEXGATE_TICK_SECONDS"),
])
def test_bad_configuration_stops_with_one_sentence(tmp_path, env, variable):
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("FLEXGATE_", "NATS_", "DATABASE_"))}
    done = subprocess.run([sys.executable, "-m", "workers.publisher"], cwd=ROOT, capture_output=True, text=True,
                          env={**clean, "DATABASE_URL": "postgresql://u@127.0.0.1:1/x", **env}, timeout=30)
    assert done.returncode == 2
    assert done.stderr.startswith(f"flexgate-stream: {variable}") and done.stderr.count("\n") == 1


def _rollup_version(database_url: str) -> int:
    with psycopg2.connect(database_url) as conn, conn.cursor() as cur:
        cur.execute("SELECT coalesce(max(version), 0) FROM rollup_state")
        return int(cur.fetchone()[0])


def test_rows_folded_between_ticks_are_counted_once(workers, db, database_url, nats_server):
    seeded(db, 300)
    nats_call(nats_server.url, purge)
    worker = workers(database_url, nats_server.url, FLEXGATE_TICK_SECONDS="3")  # folds every second in between
    wait_until(worker.ticked, 30, "the first tick")
    windows_before = len(nats_call(nats_server.url, lambda js: stored(js, METRICS_STREAM)))
    for batch in range(6):  # traffic keeps arriving; each batch is folded before the next comes
        before = _rollup_version(database_url)
        insert(db, make_rows(40 + batch, 40, end=datetime.now(UTC)))
        wait_until(lambda before=before: _rollup_version(database_url) > before, 10, f"batch {batch} folded")
    published = len(nats_call(nats_server.url, lambda js: stored(js, METRICS_STREAM)))
    assert published - windows_before < 5  # six batches folded in fewer ticks: folds ran between them
    wait_until(lambda: len(nats_call(nats_server.url, lambda js: stored(js, METRICS_STREAM))) >= published + 2, 15,
               "two more windows")
    worker.proc.send_signal(signal.SIGTERM)
    assert worker.proc.wait(10) == 0
    summaries = nats_call(nats_server.url, lambda js: stored(js, METRICS_STREAM))
    ends = [parse_iso(body["windowEnd"]).timestamp() for _s, _h, body in summaries]
    assert ends == sorted(set(ends)) and all(b - a == 3 for a, b in zip(ends, ends[1:], strict=False))
    _s, _h, newest = summaries[-1]
    assert_rollup_snapshot(db, newest, parse_iso(newest["windowEnd"]))  # every row counted once
    assert "Traceback" not in worker.log()


def test_sigterm_while_rows_are_folded_between_ticks_stops_without_a_traceback(workers, db, database_url,
                                                                                  nats_server):
    seeded(db, 100)
    worker = workers(database_url, nats_server.url, FLEXGATE_TICK_SECONDS="3")  # folds every second in between
    wait_until(worker.ticked, 30, "the first tick")
    with tick_stuck_on_lock(database_url):  # the fold after that tick waits on the lock
        worker.proc.send_signal(signal.SIGTERM)
        code = worker.proc.wait(10)
    assert code == 0
    assert "stopped" in worker.log()
    assert "Traceback" not in worker.log(), worker.log()
