from __future__ import annotations

import asyncio
import json
import logging
import re
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from flexgate_stream.backoff import Backoff, StateLog
from flexgate_stream.messages import Snapshot, Summary, encode
from flexgate_stream.settings import Settings
from flexgate_stream.tick.figures import Stats, WindowFigures
from flexgate_stream.tick.routes import fold_route
from flexgate_stream.tick.snapshot import summary_snapshot
from workers.publisher import publisher_id, window_end_for

ROOT = Path(__file__).resolve().parents[2]


def test_window_end_is_the_tick_boundary():
    assert window_end_for(1_700_000_000.003, 5) == datetime.fromtimestamp(1_700_000_000, UTC)
    assert window_end_for(1_700_000_003.9, 5) == datetime.fromtimestamp(1_700_000_000, UTC)
    assert window_end_for(1_699_999_999.9, 5) == datetime.fromtimestamp(1_700_000_000, UTC)  # fired a bit early
    assert window_end_for(1_700_000_000.6, 0.5) == datetime.fromtimestamp(1_700_000_000.5, UTC)


def test_backoff_doubles_up_to_its_cap():
    backoff = Backoff(0.5, 4)
    assert [backoff.next_delay() for _ in range(5)] == [0.5, 1, 2, 4, 4]
    backoff.reset()
    assert backoff.next_delay() == 0.5


def test_state_log_says_each_change_once(caplog):
    state = StateLog(logging.getLogger("workers.publisher"), "publisher[p1]", "PostgreSQL")
    with caplog.at_level(logging.INFO, logger="workers.publisher"):
        for _ in range(5):
            state.down(ConnectionRefusedError("connection refused"))
        state.up()
        state.up()
    assert [r.getMessage().split(": ", 1)[1].split(" (")[0] for r in caplog.records] == [
        "PostgreSQL is unavailable", "PostgreSQL is back after 0.0 s"]


def test_publisher_id_is_a_kv_key():
    ident = publisher_id()
    assert all(c.isalnum() or c in "-_" for c in ident)


def test_folding_examples():
    assert fold_route("/api/users/123") == "/api/users/:id"
    assert fold_route("/api/users/123?x=1#f") == "/api/users/:id"
    assert fold_route("/api/inventory/0b5f2a3c-1d2e-4f50-8a9b-0c1d2e3f4a5b") == "/api/inventory/:id"
    assert fold_route("/objects/5f8d0d55b54764421b7156c9/meta") == "/objects/:id/meta"
    assert fold_route("/api/v2/users") == "/api/v2/users"
    assert fold_route("/api/users/") == "/api/users"
    assert fold_route(None) == "/" and fold_route("") == "/"


def test_snapshot_has_every_field_as_json_numbers():
    end = datetime(2026, 1, 1, tzinfo=UTC)
    stats = Stats(10, 7, 2, 1, 9, 90.0, (5.0, 9.0, 9.9))
    snap = summary_snapshot(WindowFigures(end, stats, 12, {200: 7, 404: 2, 500: 1}, {11: stats}, {}, {}), 5)
    assert set(snap) == set(Snapshot.__annotations__)
    assert set(snap["summary"]) == set(Summary.__annotations__)
    decoded = json.loads(encode(snap))
    assert all(isinstance(v, int | float) for v in decoded["summary"].values())
    assert decoded["summary"]["errorRate"] == 10.0 and decoded["summary"]["availability"] == 70.0
    assert decoded["requestRate"]["data"][-1] == {"timestamp": "2025-12-31T23:55:00.000Z", "value": 0.033}


FORBIDDEN = "sorted({m.split('.')[0] for m in sys.modules} & {'flask', 'gevent', 'werkzeug'})"


def test_worker_process_imports_neither_flask_nor_gevent():
    code = f"import sys\nimport workers.publisher, flexgate_stream.liveness\nprint({FORBIDDEN})"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_a_closed_database_connection_is_one_line_and_retried_within_a_tick(caplog):
    import asyncio

    import psycopg2

    from flexgate_stream.settings import Settings
    from workers.connections import Database

    db = Database(Settings(database_url="postgresql://u@127.0.0.1:1/db", tick_seconds=5), "p1")
    # What a PostgreSQL restart raises: the first query on the old connection finds it already closed.
    failures = [psycopg2.InterfaceError("connection already closed"),
                psycopg2.OperationalError("connection refused")] * 4

    def lost(_window_end):
        raise failures.pop(0)

    db._aggregate = lost
    delays = []
    with caplog.at_level(logging.INFO, logger="workers.publisher"):
        for _ in range(8):
            db.retry_at = 0.0  # as if the next tick had come
            start = time.monotonic()
            assert asyncio.run(db.aggregate(datetime.now(UTC))) is None
            delays.append(db.retry_at - start)
    db.shutdown()
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    assert not caplog.records[0].exc_info and "Traceback" not in caplog.text
    assert max(delays) < 5  # the next tick always tries again


@pytest.mark.parametrize(("tick", "folds"), [(5.0, True), (2.0, True), (1.0, False)])
def test_rows_are_folded_twice_a_second_between_ticks_of_two_seconds_or_more(tick, folds):
    from workers.publisher import FOLD_SECONDS, Publisher

    publisher = Publisher(Settings(database_url="postgresql://u@127.0.0.1:1/db", tick_seconds=tick), [])
    loop = asyncio.new_event_loop()
    try:
        jobs = {job.id: job for job in publisher._scheduler(loop).get_jobs()}
    finally:
        loop.close()
        publisher.db.shutdown()
    assert set(jobs) == ({"tick", "fold"} if folds else {"tick"})
    if folds:
        assert jobs["fold"].trigger.interval.total_seconds() == FOLD_SECONDS
        # half a period off the tick's phase
        assert (jobs["fold"].trigger.start_date - jobs["tick"].trigger.start_date).total_seconds() == FOLD_SECONDS / 2


def test_a_tick_that_overruns_is_one_line_and_back_on_time_is_another(caplog):
    """The scheduler the publisher runs, with a tick that takes 1.6 s once on a 0.5 s period."""
    from workers.publisher import Publisher

    publisher = Publisher(Settings(database_url="postgresql://u@127.0.0.1:1/db", tick_seconds=0.5), [])
    durations = [0.01, 1.6]  # the second run covers three later ones; the rest are quick

    async def tick() -> None:
        await asyncio.sleep(durations.pop(0) if durations else 0.01)

    def said(text: str) -> list[logging.LogRecord]:
        return [r for r in caplog.records if text in r.getMessage()]

    async def run() -> None:
        scheduler = publisher._scheduler(asyncio.get_running_loop())
        scheduler.start()
        deadline = time.monotonic() + 6
        while not said("back on time") and time.monotonic() < deadline:  # or the assertions below say what lacked
            await asyncio.sleep(0.05)
        scheduler.shutdown(wait=False)

    publisher.tick = tick
    scheduler_logger = logging.getLogger("apscheduler")
    level = scheduler_logger.level
    try:
        with caplog.at_level(logging.INFO):
            asyncio.run(run())
    finally:
        scheduler_logger.setLevel(level)
        publisher.db.shutdown()
    noisy = [r.getMessage() for r in caplog.records
             if r.name.startswith("apscheduler") and r.levelno >= logging.WARNING]
    assert noisy == []
    overran, back = said("overran"), said("back on time")
    assert [r.levelname for r in overran] == ["WARNING"] and [r.levelname for r in back] == ["INFO"]
    assert re.search(r"tick overran: 1\.[6-9] s \(it runs every 0\.5 s; [2-4] runs skipped", overran[0].getMessage())
    assert overran[0].created < back[0].created


def test_a_fold_is_told_as_overrunning_only_once_it_runs_past_a_tick(caplog):
    """A fold past its half second delays only the next fold's rows; past a tick's period it delays ticks."""
    from types import SimpleNamespace

    from workers.publisher import Publisher

    publisher = Publisher(Settings(database_url="postgresql://u@127.0.0.1:1/db", tick_seconds=5.0), [])
    runs = publisher.overruns
    runs.scheduler = SimpleNamespace(get_job=lambda _job: SimpleNamespace(
        trigger=SimpleNamespace(interval=timedelta(seconds=0.5))))
    try:
        with caplog.at_level(logging.INFO, logger="workers.publisher"):
            runs._ended("fold", 0.6, 1)
            runs._ended("fold", 4.9, 9)
            runs._ended("fold", 5.4, 10)
            runs._ended("tick", 0.6, 1)
    finally:
        publisher.db.shutdown()
    told = [r.getMessage() for r in caplog.records if "overran" in r.getMessage()]
    assert len(told) == 2
    assert "fold overran: 5.4 s (it runs every 0.5 s; 10 runs skipped" in told[0]
    assert "tick overran: 0.6 s" in told[1]
