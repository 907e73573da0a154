"""``make run``'s launcher as a user runs it: real PostgreSQL, nats-server, supervisord, gunicorn."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import requests

from flexgate_stream.devstack.processes import free_port
from tests.e2e.launching import Launcher, row_count
from tests.e2e.support import SSEClient, alive, descendants
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180), pytest.mark.slow(10)]


def _counted_snapshot(stream: SSEClient) -> dict | None:
    message = json.loads(stream.data_events(1)[0].data)  # the first is {"type": "connected", ...}
    return message if message.get("type") == "metrics" and message["summary"]["totalRequests"] > 0 else None


@pytest.fixture
def data_dir():
    base = Path(tempfile.mkdtemp(prefix="flexgate-run-"))
    base.chmod(0o755)
    yield base / "var"
    shutil.rmtree(base, ignore_errors=True)


def test_run_serves_grows_and_stops_everything_on_ctrl_c(data_dir):
    launcher = Launcher(data_dir, free_port())
    try:
        url = launcher.database_url()
        assert "NATS_SERVERS  nats://127.0.0.1:" in launcher.output()
        assert f"http://127.0.0.1:{launcher.port}/" in launcher.output()
        wait_until(launcher.healthy, 60, "/healthz to answer 200")
        first = wait_until(lambda: row_count(url), 30, "demo rows")
        wait_until(lambda: row_count(url) > first, 30, "the requests table to grow")
        # The whole pipeline: demo rows -> publisher -> JetStream -> gunicorn -> an SSE client.
        stream = SSEClient(f"http://127.0.0.1:{launcher.port}/api/stream/metrics", read_timeout=30)
        try:
            assert stream.status == 200
            snapshot = wait_until(lambda: _counted_snapshot(stream), 60, "a snapshot that counts the demo rows")
        finally:
            stream.close()
        assert snapshot["type"] == "metrics" and snapshot["window"]["name"] == "24h"
        assert snapshot["summary"]["successfulRequests"] > 0 and snapshot["routes"]
        stats = requests.get(f"http://127.0.0.1:{launcher.port}/api/stream/stats", timeout=10)
        assert stats.status_code == 200 and stats.json()["data"]["stale"] is False
        started = descendants(launcher.proc.pid)
        assert len(started) >= 5  # postgres, nats-server, supervisord, gunicorn, demo traffic at least
        launcher.proc.send_signal(signal.SIGINT)  # what Ctrl-C delivers
        assert launcher.proc.wait(60) == 0
        left = [pid for pid in started if alive(pid)]
        assert left == [], f"processes left running: {left}"
    finally:
        if launcher.proc.poll() is None:
            launcher.proc.kill()

    # The data survives: a second run finds the first run's rows.
    again = Launcher(data_dir, free_port())
    try:
        url = again.database_url()
        wait_until(again.healthy, 60, "/healthz after restart")
        assert row_count(url) >= first
        again.proc.send_signal(signal.SIGTERM)
        assert again.proc.wait(60) == 0
    finally:
        if again.proc.poll() is None:
            again.proc.kill()


def _server_pid(launcher: Launcher, name: str) -> int:
    """The PID of the launcher's own ``name`` server (nats-server, or PostgreSQL's postmaster)."""
    for pid in descendants(launcher.proc.pid):
        try:
            parent = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
            program = Path(Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()).name
        except (OSError, IndexError, ValueError):
            continue
        if parent == launcher.proc.pid and program == name:
            return pid
    raise AssertionError(f"no {name} started by the launcher")


def _web_back(output: str) -> int:
    """How many "NATS is back" lines the web workers wrote (the publisher's are left out)."""
    return sum(1 for line in output.splitlines() if "NATS is back after" in line and "publisher[" not in line)


WARNED = re.compile(r"\b(WARNING|WARN|ERROR|CRIT|CRITICAL)\b|unavailable|connection lost|Traceback")


def test_an_ordinary_stop_logs_no_warning_even_after_the_servers_were_started_again(data_dir):
    launcher = Launcher(data_dir, free_port())
    try:
        launcher.database_url()
        wait_until(launcher.healthy, 60, "/healthz to answer 200")
        wait_until(lambda: re.search(r"publisher\[.*\]: tick .* took", launcher.output()), 30,
                   "the publisher's first tick")
        # Both web workers on NATS before it dies: one still booting would connect only once, and never be "back".
        wait_until(lambda: len(set(re.findall(r"bridge\[(\d+)\]: NATS connected", launcher.output()))) >= 2, 30,
                   "both web workers connected to NATS")
        # A server the launcher's keeper started again is what a stop used to end before the programs using it.
        killed_at = len(launcher.output())
        for name, sig in (("nats-server", signal.SIGKILL), ("postgres", signal.SIGINT)):
            pid = _server_pid(launcher, name)
            os.kill(pid, sig)
            wait_until(lambda pid=pid: f"(pid {pid}) exited" in launcher.output(), 10, f"{name} started again")
        wait_until(lambda: "NATS is back" in launcher.output() and "PostgreSQL is back" in launcher.output(), 60,
                   "the publisher to be back on both servers")
        wait_until(lambda: _web_back(launcher.output()[killed_at:]) >= 2, 30, "both web workers connected again")
        mark = len(launcher.output())
        launcher.proc.send_signal(signal.SIGINT)  # what Ctrl-C delivers
        assert launcher.proc.wait(60) == 0
    finally:
        if launcher.proc.poll() is None:
            launcher.proc.kill()
    stop = launcher.output()[mark:]
    assert "publisher[" in stop and "stopped" in stop, stop  # the publisher's warm stop ran, and said so
    assert [line for line in stop.splitlines() if WARNED.search(line)] == [], stop


def test_bad_database_url_stops_with_one_sentence():
    env = dict(os.environ, DATABASE_URL="nonsense")
    done = subprocess.run([sys.executable, "-m", "flexgate_stream.devstack"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "flexgate-stream: DATABASE_URL must be a postgresql://user@host:port/database URL, got 'nonsense'."
    ]
