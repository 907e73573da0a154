"""Windows published late carry their own figures: after a NATS hang (SIGSTOP) and a publisher restart, every
stored ``metrics.summary`` equals SQL over the rows stamped inside the windows it declares (real publisher,
nats-server and PostgreSQL; rows arriving all along)."""

from __future__ import annotations

import os
import signal
import time

import pytest

from flexgate_stream.devstack.servers import NatsServer
from flexgate_stream.messages import METRICS_STREAM
from flexgate_stream.requestlog import schema
from flexgate_stream.timestamps import parse_iso
from tests.integration.expected_figures import assert_rollup_snapshot
from tests.integration.publishers import Worker, nats_call, stored
from tests.integration.request_log import Gateway
from tests.waiting import wait_until

pytestmark = [pytest.mark.timeout(150), pytest.mark.slow(15)]
HANG = 4.0  # seconds nats-server is stopped: longer than a publish's 2 s timeout, so windows are missed


def summaries(url: str) -> list[dict]:
    return [body for subject, _h, body in nats_call(url, lambda js: stored(js, METRICS_STREAM))
            if subject == "metrics.summary"]


def newest_end(url: str) -> float:
    found = summaries(url)
    return parse_iso(found[-1]["windowEnd"]).timestamp() if found else 0.0


def test_windows_published_after_a_nats_hang_and_a_restart_hold_their_own_figures(db, database_url, tmp_path):
    schema.upgrade(db)
    server = NatsServer(tmp_path / "nats", log_file=tmp_path / "nats.log").start()
    env = {"DATABASE_URL": database_url, "NATS_SERVERS": server.url, "FLEXGATE_TICK_SECONDS": "1"}
    worker = Worker(tmp_path / "publisher-1.log", env)
    gateway = Gateway(database_url)
    try:
        wait_until(lambda: newest_end(server.url) > 0, 30, "a first window")
        gateway.start()
        started = time.time()
        wait_until(lambda: newest_end(server.url) > started + 2, 30, "windows with rows")
        os.kill(server.proc.pid, signal.SIGSTOP)
        try:
            time.sleep(HANG)  # the outage itself: how long the server is stopped
        finally:
            os.kill(server.proc.pid, signal.SIGCONT)
        resumed = time.time()
        wait_until(lambda: newest_end(server.url) > resumed + 1, 30, "the windows of the hang, then live ones")
        worker.proc.send_signal(signal.SIGTERM)
        assert worker.proc.wait(10) == 0
        stopped = time.time()
        wait_until(lambda: time.time() > stopped + 3, 5, "three windows without a publisher")
        worker = Worker(tmp_path / "publisher-2.log", env)
        restarted = time.time()
        wait_until(lambda: newest_end(server.url) > restarted + 1, 30, "the missed windows, then live ones")
    finally:
        gateway.stop.set()
        gateway.join(5)
        worker.proc.terminate()
        worker.proc.wait(10)
    found = summaries(server.url)
    server.stop()
    ends = [parse_iso(s["windowEnd"]).timestamp() for s in found]
    assert ends == sorted(set(ends)) and all(b - a == 1.0 for a, b in zip(ends, ends[1:], strict=False))
    late = [s for s in found if stopped < parse_iso(s["windowEnd"]).timestamp() < restarted]
    assert late and gateway.count > 100
    for snapshot in found:
        assert_rollup_snapshot(db, snapshot, parse_iso(snapshot["windowEnd"]))


def test_two_publishers_side_by_side_store_windows_with_their_own_figures(db, database_url, tmp_path):
    schema.upgrade(db)
    server = NatsServer(tmp_path / "nats", log_file=tmp_path / "nats.log").start()
    env = {"DATABASE_URL": database_url, "NATS_SERVERS": server.url, "FLEXGATE_TICK_SECONDS": "1"}
    workers = [Worker(tmp_path / f"publisher-{i}.log", env) for i in (1, 2)]
    gateway = Gateway(database_url)
    try:
        wait_until(lambda: newest_end(server.url) > 0, 30, "a first window")
        gateway.start()
        started = time.time()
        wait_until(lambda: newest_end(server.url) > started + 6, 30, "six windows with rows")
    finally:
        gateway.stop.set()
        gateway.join(5)
        for worker in workers:
            worker.proc.terminate()
            worker.proc.wait(10)
    found = summaries(server.url)
    server.stop()
    assert sum(w.count("already stored") for w in workers) > 0  # both published
    for snapshot in found:
        assert_rollup_snapshot(db, snapshot, parse_iso(snapshot["windowEnd"]))
