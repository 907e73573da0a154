"""The publisher's links to PostgreSQL and NATS: each outage is one log line, and it comes back by itself
(real ``python -m workers.publisher`` processes against real PostgreSQL and nats-server)."""

from __future__ import annotations

import os
import time

import psycopg2
import pytest

from flexgate_stream.devstack.processes import free_port, stop_process
from flexgate_stream.devstack.servers import NatsServer
from flexgate_stream.liveness import read_liveness
from flexgate_stream.messages import METRICS_STREAM
from flexgate_stream.requestlog import schema
from tests.integration.publishers import nats_call, stored
from tests.integration.request_log import seeded
from tests.waiting import wait_until

pytestmark = pytest.mark.timeout(120)


def test_database_down_is_one_log_line_then_recovers(workers, postgres_server, nats_server):
    name = f"late_{os.getpid()}_{int(time.time())}"
    worker = workers(postgres_server.admin_url(name), nats_server.url, FLEXGATE_TICK_SECONDS="0.5")
    admin = psycopg2.connect(postgres_server.admin_url())
    admin.autocommit = True
    try:
        wait_until(lambda: worker.count("PostgreSQL is unavailable"), 20, "the database-down line")
        time.sleep(3)  # several ticks pass while it is down: the assertion below is about them
        assert worker.count("PostgreSQL is unavailable") == 1 and worker.proc.poll() is None
        beats = [p for p in nats_call(nats_server.url, read_liveness)["publishers"]
                 if p["beat"]["pid"] == worker.proc.pid]
        assert [(p["live"], p["beat"]["database"], p["beat"]["lastTickAt"]) for p in beats] == [
            (True, "unavailable", None)]  # alive, says why nothing is published
        with admin.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
        conn = psycopg2.connect(postgres_server.admin_url(name))
        schema.upgrade(conn)
        conn.close()
        wait_until(lambda: worker.count("PostgreSQL is back"), 30, "the database-back line")
        wait_until(worker.ticked, 30, "a tick after recovery")
        assert worker.count("PostgreSQL is unavailable") == 1
    finally:
        stop_process(worker.proc)
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()
    assert worker.proc.returncode == 0


@pytest.mark.own_servers
def test_nats_down_at_start_and_restarted_later(workers, db, database_url, tmp_path):
    seeded(db, 100)
    port = free_port()
    server = NatsServer(tmp_path / "nats-store", port=port, log_file=tmp_path / "nats.log")
    worker = workers(database_url, server.url, FLEXGATE_TICK_SECONDS="0.5")
    try:
        wait_until(lambda: worker.count("NATS is unavailable"), 20, "the NATS-down line")
        time.sleep(2)  # several ticks while NATS is down must not add log lines
        assert worker.count("NATS is unavailable") == 1 and worker.proc.poll() is None
        server.start()
        wait_until(worker.ticked, 30, "a tick once NATS is up")
        server.kill()
        wait_until(lambda: worker.count("NATS is unavailable") == 2, 20, "the second NATS-down line")
        ticks = worker.count("took")
        server.start()
        wait_until(lambda: worker.count("NATS is back") == 2, 30, "the reconnection")
        newest = wait_until(lambda: nats_call(server.url, lambda js: stored(js, METRICS_STREAM)), 30, "a snapshot")
        wait_until(lambda: nats_call(server.url, lambda js: stored(js, METRICS_STREAM))[-1][2]["windowEnd"]
              > newest[-1][2]["windowEnd"] or None, 30, "snapshots after the restart")
        assert worker.count("NATS is unavailable") == 2 and ticks >= 1
        assert worker.proc.poll() is None and "Traceback" not in worker.log() and "failed" not in worker.log()
    finally:
        stop_process(worker.proc)
        server.stop()
    assert worker.proc.returncode == 0



def test_database_connections_cut_is_one_line_and_reconnects_within_a_tick(workers, db, database_url, nats_server,
                                                                          postgres_server):
    """What a PostgreSQL restart does to the publisher: its connection is cut, new ones are refused for a while."""
    seeded(db, 100)
    worker = workers(database_url, nats_server.url, FLEXGATE_TICK_SECONDS="0.5")
    wait_until(worker.ticked, 30, "the first tick")
    name = database_url.rsplit("/", 1)[1]
    admin = psycopg2.connect(postgres_server.admin_url())
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name = 'flexgate-publisher' AND datname = %s", (name,))
    wait_until(lambda: worker.count("PostgreSQL is unavailable"), 10, "the database-down line")
    # Ten ticks pass while it is down: a backoff growing past a tick (0.5 s, doubling) would wait 3 s or more.
    time.sleep(5)
    with admin.cursor() as cur:
        cur.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
    admin.close()
    back_at = time.monotonic()
    wait_until(lambda: worker.count("PostgreSQL is back"), 15, "the database-back line")
    assert time.monotonic() - back_at < 0.5 + 1.5  # one tick, and some time to connect (a grown backoff: 3.5 s)
    log = worker.log()
    assert log.count("PostgreSQL is unavailable") == 1 and "Traceback" not in log



def test_a_database_without_the_schema_is_one_line_saying_to_run_the_release_step(workers, db, database_url,
                                                                                     nats_server):
    # The pod starts the publishers alongside the release step: they may tick before the tables exist.
    worker = workers(database_url, nats_server.url, FLEXGATE_TICK_SECONDS="0.5")
    try:
        wait_until(lambda: worker.count("PostgreSQL is unavailable"), 20, "the database-unavailable line")
        time.sleep(2)  # several ticks pass without the schema: the assertions below are about them
        assert worker.count("PostgreSQL is unavailable") == 1 and worker.proc.poll() is None
        assert "db upgrade" in worker.log() and "Traceback" not in worker.log(), worker.log()
        schema.upgrade(db)  # the release step
        wait_until(lambda: worker.count("PostgreSQL is back"), 30, "the database-back line")
        wait_until(worker.ticked, 30, "a tick once the schema exists")
    finally:
        stop_process(worker.proc)
    assert worker.proc.returncode == 0 and "Traceback" not in worker.log()
