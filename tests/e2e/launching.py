"""``make run``'s launcher run as a user runs it, and a look into the database it started."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import psycopg2
import requests

from flexgate_stream.devstack.processes import dies_with_parent
from tests.e2e.support import ROOT
from tests.waiting import wait_until


class Launcher:
    def __init__(self, data_dir: Path, port: int, env: dict[str, str] | None = None) -> None:
        base = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "NATS_", "FLEXGATE_"))}
        env = {**base, "PORT": str(port), "FLEXGATE_DATA_DIR": str(data_dir), "FLEXGATE_DEMO_RPS": "100",
               # Ticks of 1 s (the default is 5): the first snapshot that counts the demo rows comes within a second.
               "FLEXGATE_TICK_SECONDS": "1",
               **(env or {})}
        self.data_dir = data_dir
        self.port = port
        self.log = data_dir.parent / f"launcher-{port}.log"
        # Appending, as supervisord's programs write to the same file through their own /dev/fd/1.
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "flexgate_stream.devstack"], cwd=ROOT, env=env,
                                         stdout=out, stderr=subprocess.STDOUT,
                                         preexec_fn=dies_with_parent(signal.SIGTERM))

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def every_log(self) -> dict[Path, bytes]:
        """The launcher's output (supervisord's programs write there: gunicorn, the publisher, demo traffic) and
        every file under the data folder's ``log/`` (supervisord, PostgreSQL, nats-server)."""
        found = {self.log: self.log.read_bytes()}
        found.update({path: path.read_bytes() for path in sorted((self.data_dir / "log").rglob("*")) if path.is_file()})
        return found

    def database_url(self) -> str:
        match = wait_until(lambda: re.search(r"DATABASE_URL\s+(\S+)", self.output()), 60, "the printed DATABASE_URL")
        return match.group(1)

    def healthy(self) -> bool:
        try:
            return requests.get(f"http://127.0.0.1:{self.port}/healthz", timeout=2).status_code == 200
        except requests.RequestException:
            return False


def row_count(url: str) -> int:
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM requests")
            return cur.fetchone()[0]
    finally:
        conn.close()
