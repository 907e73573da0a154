"""No missing window: after a publisher killed mid-tick, NATS down or PostgreSQL down for several ticks, or
PostgreSQL hung,
``metrics.summary`` holds every window, each once, in order (real publisher, nats-server, PostgreSQL).

The outages are the scenario itself (how long the part is down), not a wait for a condition.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator

import psycopg2
import pytest

from flexgate_stream.devstack.processes import free_port, process_parents
from flexgate_stream.devstack.servers import NatsServer, PostgresServer
from flexgate_stream.messages import METRICS_STREAM, PUBLISHERS_BUCKET
from flexgate_stream.timestamps import parse_iso
from tests.integration.expected_figures import assert_rollup_snapshot
from tests.integration.publishers import nats_call, purge, stored, tick_stuck_on_lock
from tests.integration.request_log import Gateway, seeded
from tests.servers import temporary_postgres
from tests.waiting import wait_until

pytestmark = [pytest.mark.timeout(180), pytest.mark.slow(12)]
# Six ticks of 1 s: long enough for the NATS reconnect delay (0.25 s, doubling) to grow past a tick (4 s)
# and for the publisher's PostgreSQL retries to fail on several ticks: longer outages only repeat the same steps.
OUTAGE = 6.0


def windows(url: str) -> list[tuple[str, str]]:
    """(windowEnd, Nats-Msg-Id) of every stored summary snapshot, in stream order."""
    return [(body["windowEnd"], headers.get("Nats-Msg-Id", ""))
            for subject, headers, body in nats_call(url, lambda js: stored(js, METRICS_STREAM))
            if subject == "metrics.summary"]


def assert_contiguous(found: list[tuple[str, str]], tick: float, covering: float) -> None:
    """Every tick boundary from the first stored window to the last, each once, in order, with its own id."""
    ends = [parse_iso(end).timestamp() for end, _id in found]
    assert len(ends) == len(set(ends)), "a window was stored twice"
    assert ends == sorted(ends), "windows out of order"
    gaps = [(found[i][0], found[i + 1][0]) for i in range(len(ends) - 1) if ends[i + 1] - ends[i] != tick]
    assert gaps == [], f"missing windows between {gaps}"
    assert ends[-1] - ends[0] >= covering, "the run does not cover the outage"
    assert all(msg_id == f"metrics.summary@{end}" for end, msg_id in found)


def newer_than(url: str, instant: float, count: int = 1) -> bool:
    return sum(parse_iso(end).timestamp() > instant for end, _id in windows(url)) >= count


@pytest.fixture
def forget_beats(nats_server):
    """Requested before ``workers``, so it runs after their teardown: a SIGKILLed publisher leaves its KV
    heartbeat until the TTL, which other tests on the shared nats-server would count as a live publisher."""
    yield
    nats_call(nats_server.url, lambda js: js.purge_stream(f"KV_{PUBLISHERS_BUCKET}"))


def test_publisher_killed_mid_tick_leaves_no_missing_window(forget_beats, workers, db, database_url,  # noqa: F811
                                                           nats_server):
    seeded(db, 300, seed=31)
    nats_call(nats_server.url, purge)
    first = workers(database_url, nats_server.url)
    wait_until(lambda: len(windows(nats_server.url)) >= 3, 30, "three windows")
    with tick_stuck_on_lock(database_url):  # the tick is inside its transaction, waiting
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait(10)
        killed_at = time.time()
    second = workers(database_url, nats_server.url)
    back = time.time()
    wait_until(lambda: newer_than(nats_server.url, back + 2), 40, "windows after the restart")
    assert_contiguous(windows(nats_server.url), 1.0, time.time() - killed_at - 3)
    assert second.count("published missed window") >= 1


@pytest.mark.own_servers
def test_nats_down_leaves_no_missing_window(workers, db, database_url, tmp_path):  # noqa: F811
    seeded(db, 300, seed=31)
    server = NatsServer(tmp_path / "nats-store", port=free_port(), log_file=tmp_path / "nats.log").start()
    try:
        worker = workers(database_url, server.url)
        wait_until(lambda: len(windows(server.url)) >= 3, 30, "three windows")
        server.kill()
        time.sleep(OUTAGE)
        server.start()
        back = time.time()
        wait_until(lambda: newer_than(server.url, back + 2), 40, "windows after NATS is back")
        assert_contiguous(windows(server.url), 1.0, OUTAGE)
        assert worker.count("published missed window") >= OUTAGE - 2  # all but the windows in flight
    finally:
        server.stop()


@pytest.fixture
def own_postgres():
    """A PostgreSQL server this test may stop and start (on the same port and data)."""
    with temporary_postgres("flexgate-test-pg-down-") as server:
        yield server


@pytest.mark.own_servers
def test_postgres_down_leaves_no_missing_window(forget_beats, workers, own_postgres, nats_server):  # noqa: F811
    conn = psycopg2.connect(own_postgres.url)
    seeded(conn, 300, seed=31)
    conn.close()
    nats_call(nats_server.url, purge)
    worker = workers(own_postgres.url, nats_server.url)
    wait_until(lambda: len(windows(nats_server.url)) >= 3, 30, "three windows")
    own_postgres.stop()
    time.sleep(OUTAGE)
    own_postgres.start()
    back = time.time()
    wait_until(lambda: newer_than(nats_server.url, back + 2), 60, "windows after PostgreSQL is back")
    assert_contiguous(windows(nats_server.url), 1.0, OUTAGE)
    assert worker.count("PostgreSQL is unavailable") == 1 and worker.count("published missed window") >= OUTAGE - 2


@contextlib.contextmanager
def hung(server: PostgresServer) -> Iterator[None]:
    """The server's postmaster and its children stopped (SIGSTOP), as a frozen host leaves them; SIGCONT on leaving.

    Its kernel still accepts connections and acknowledges packets: only the processes do not answer.
    """
    assert server.proc is not None
    pids = [server.proc.pid] + sorted(pid for pid, parent in process_parents().items() if parent == server.proc.pid)
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


HANG = 4.0  # seconds, with a tick of one second


@pytest.mark.own_servers
def test_postgres_hung_is_one_line_each_way_within_a_tick_and_its_windows_follow(  # noqa: F811
        forget_beats, workers, own_postgres, nats_server):
    conn = psycopg2.connect(own_postgres.url)
    seeded(conn, 300, seed=31)
    conn.close()
    nats_call(nats_server.url, purge)
    worker = workers(own_postgres.url, nats_server.url)
    wait_until(lambda: len(windows(nats_server.url)) >= 3, 30, "three windows")
    gateway = Gateway(own_postgres.url)  # rows all along (its inserts wait out the hang, as a gateway's would)
    gateway.start()
    with hung(own_postgres):
        stopped_at = time.monotonic()
        wait_until(lambda: worker.count("PostgreSQL is unavailable"), 10, "the unavailable line during the hang")
        told_after = time.monotonic() - stopped_at
        time.sleep(max(0.0, HANG - told_after))  # the scenario: the hang lasts HANG seconds
    back = time.time()
    wait_until(lambda: worker.count("PostgreSQL is back"), 15, "the back line")
    wait_until(lambda: newer_than(nats_server.url, back + 2), 30, "windows after the hang")
    gateway.stop.set()
    gateway.join(5)
    log = worker.log()
    # The windows of the hang, published afterwards, hold their own figures, as every other window does.
    check = psycopg2.connect(own_postgres.url)
    try:
        for _s, _h, snapshot in nats_call(nats_server.url, lambda js: stored(js, METRICS_STREAM)):
            assert_rollup_snapshot(check, snapshot, parse_iso(snapshot["windowEnd"]))
    finally:
        check.close()
    # The tick under way when it hung, or the next one, says so before its own end.
    assert told_after < 2.0 + 0.5, f"the unavailable line came {told_after:.1f} s after the hang began"
    assert log.count("PostgreSQL is unavailable") == 1 and log.count("PostgreSQL is back") == 1, log
    assert "apscheduler" not in log and "skipped: maximum number" not in log and "was missed by" not in log, log
    assert_contiguous(windows(nats_server.url), 1.0, HANG)
    assert worker.count("published missed window") >= HANG - 2 and "Traceback" not in log, log
