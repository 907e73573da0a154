"""Real publisher processes (``python -m workers.publisher``) for integration tests, and what they stored."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import nats
import psycopg2
from nats.js.errors import NotFoundError

from flexgate_stream.devstack.processes import dies_with_parent
from flexgate_stream.messages import ALERT_STATE_BUCKET, ALERTS_STREAM, METRICS_STREAM, ROUTES_STREAM
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]


class Worker:
    """One publisher subprocess, its log file, stopped by PID at the end."""

    def __init__(self, log_path: Path, env: dict) -> None:
        self.log_path = log_path
        clean = {k: v for k, v in os.environ.items() if not k.startswith(("FLEXGATE_", "NATS_", "DATABASE_"))}
        with open(log_path, "wb") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "workers.publisher"], cwd=ROOT,
                                         env={**clean, "FLEXGATE_LOG_LEVEL": "INFO", **env},
                                         stdout=subprocess.DEVNULL, stderr=out,
                                         preexec_fn=dies_with_parent(signal.SIGTERM))

    def log(self) -> str:
        return self.log_path.read_text()

    def count(self, text: str) -> int:
        return self.log().count(text)

    def ticked(self) -> bool:
        """Whether it has logged a tick."""
        return self.count("took") > 0


def nats_call(url: str, work):
    """Run ``work(js)`` on a short-lived connection."""
    async def main():
        nc = await nats.connect(url, connect_timeout=2, max_reconnect_attempts=0)
        try:
            return await work(nc.jetstream())
        finally:
            await nc.close()

    return asyncio.run(main())


async def stored(js, stream: str) -> list[tuple[str, dict, dict]]:
    """(subject, headers, body) of every message in ``stream``."""
    try:
        info = await js.stream_info(stream)
    except Exception:  # noqa: BLE001 - not created yet
        return []
    found = []
    if not info.state.messages:
        return found
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        try:
            msg = await js.get_msg(stream, seq)
        except NotFoundError:
            continue  # removed by a limit
        found.append((msg.subject, msg.headers or {}, json.loads(msg.data)))
    return found


async def purge(js) -> None:
    """Empty the streams and the shared alert state left by earlier tests."""
    for stream in (METRICS_STREAM, ROUTES_STREAM, ALERTS_STREAM, f"KV_{ALERT_STATE_BUCKET}"):
        try:
            await js.purge_stream(stream)
        except Exception:  # noqa: BLE001 - not created yet
            pass


@contextlib.contextmanager
def tick_stuck_on_lock(database_url: str, waited: float = 0.0) -> Iterator[None]:
    """Hold an exclusive lock on requests until a tick's query has waited on it ``waited`` seconds; release it on
    leaving.

    The publisher's lock timeout is shorter than its tick, and twice as long at each next try that times out:
    a query that has waited one second with a one-second tick will wait another second at least.
    """
    blocker = psycopg2.connect(database_url)
    try:
        with blocker.cursor() as cur:
            cur.execute("LOCK TABLE requests IN ACCESS EXCLUSIVE MODE")
        wait_until(lambda: query_waits_on_lock(database_url, waited), 10 + waited, "a tick waiting on the lock")
        yield
    finally:
        blocker.rollback()
        blocker.close()


def query_waits_on_lock(database_url: str, waited: float = 0.0) -> bool:
    with psycopg2.connect(database_url) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'flexgate-publisher'"
                    " AND wait_event_type = 'Lock' AND clock_timestamp() - query_start >= make_interval(secs => %s)",
                    (waited,))
        return cur.fetchone()[0] > 0
