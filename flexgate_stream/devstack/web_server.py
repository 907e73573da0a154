"""gunicorn with the project's conf/gunicorn.conf.py on a free loopback port, started and stopped by PID.

For the test suite and the benchmarks: it waits until every worker answers ``/readyz`` from the master it
started, so a test never talks to another process that holds the port.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

from flexgate_stream.devstack.processes import dies_with_parent, free_port, process_parents, stop_process, wait_for

ROOT = Path(__file__).resolve().parents[2]

# Short timings so the suite runs in reasonable time; each test may override them.
FAST_ENV = {
    "FLEXGATE_HEARTBEAT_SECONDS": "1",
    "FLEXGATE_TICK_SECONDS": "1",
    "FLEXGATE_RETRY_MS": "500",
    "FLEXGATE_BODY_TIMEOUT": "1",
    "FLEXGATE_LOG_LEVEL": "INFO",
    "FLEXGATE_EVENTS_OPEN": "true",  # POST /api/events without a token: tests and benchmarks post gateway events
}


class WebServer:
    """gunicorn with conf/gunicorn.conf.py (gevent workers) on 127.0.0.1 and a free port."""

    def __init__(self, nats_url: str, workdir: Path, env: dict[str, str] | None = None, workers: int = 2) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workdir = Path(workdir)
        self.log = self.workdir / "gunicorn.log"
        metrics_dir = self.workdir / "prometheus"
        metrics_dir.mkdir(parents=True, exist_ok=True)
        self.env = {**os.environ, **FAST_ENV, "PORT": str(self.port), "WEB_CONCURRENCY": str(workers),
                    "NATS_SERVERS": nats_url, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir), **(env or {})}
        self.workers = workers
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 30.0, ready: bool = True) -> WebServer:
        """Start gunicorn and wait until all its workers answer /readyz (or, with ``ready=False``, answer at all)
        as our own processes."""
        self.need_ready = ready
        gunicorn = str(Path(sys.executable).parent / "gunicorn")
        args = [gunicorn, "-c", "conf/gunicorn.conf.py", "--bind", f"127.0.0.1:{self.port}"]
        with open(self.log, "ab") as out:
            # Its own session, so signals meant for pytest miss it; and SIGTERM when pytest dies, even by SIGKILL
            # (the workers notice their master is gone and exit too).
            self.proc = subprocess.Popen(args, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True, preexec_fn=dies_with_parent(signal.SIGTERM))
        wait_for(self._ready, timeout, f"gunicorn (log: {self.log})", self.proc)
        return self

    def _ready(self) -> bool:
        try:
            body = requests.get(self.url + "/readyz", timeout=2).json()
        except (requests.RequestException, ValueError):
            return False
        if body.get("server") != self.pid:
            raise RuntimeError(f"port {self.port} is served by another process (master {body.get('server')}).")
        return (bool(body.get("ready")) or not self.need_ready) and len(self.worker_pids()) == self.workers

    def worker_pids(self) -> list[int]:
        """The PIDs of the master's worker processes, read from /proc."""
        return sorted(pid for pid, parent in process_parents().items() if parent == self.pid)

    def kill_worker(self, pid: int | None = None) -> int:
        """SIGKILL one worker (the first, unless ``pid`` is given); gunicorn starts a new one."""
        pid = pid or self.worker_pids()[0]
        os.kill(pid, signal.SIGKILL)
        return pid

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> float:
        """Stop the master (and so its workers) by PID; the seconds it took."""
        started = time.monotonic()
        if self.proc is not None:
            stop_process(self.proc, sig, timeout)
        return time.monotonic() - started

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""
