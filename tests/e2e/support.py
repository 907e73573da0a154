"""Helpers for end-to-end tests: a gunicorn web server we start and stop by PID, a NATS publisher,
and a small SSE client. The fixtures in conftest.py build on these."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import nats
import requests

from flexgate_stream.localstack import dies_with_parent, free_port, stop_process, wait_for
from flexgate_stream.messages import (
    ALERT_SUBJECT_PREFIX,
    METRICS_STREAM,
    SUMMARY_SUBJECT,
    encode,
    message_id,
    route_subject,
)
from flexgate_stream.streams import ensure_streams

ROOT = Path(__file__).resolve().parents[2]

# Short timings so the suite runs in reasonable time; each test may override them.
FAST_ENV = {
    "FLEXGATE_HEARTBEAT_SECONDS": "1",
    "FLEXGATE_TICK_SECONDS": "1",
    "FLEXGATE_RETRY_MS": "500",
    "FLEXGATE_LOG_LEVEL": "INFO",
    "FLEXGATE_EVENTS_OPEN": "true",  # POST /api/events without a token, as the tests post gateway events
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
        self.proc: subprocess.Popen | None = None

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


def process_parents() -> dict[int, int]:
    """Every process's parent PID, read from /proc."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    return parents


class NatsClient:
    """A NATS connection on its own thread and event loop, for tests that publish like the publisher."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.nc = self.run(nats.connect(url, connect_timeout=2, max_reconnect_attempts=-1, reconnect_time_wait=0.2,
                                        error_cb=_ignore))
        self.js = self.nc.jetstream()
        self.run(ensure_streams(self.js))
        self.counter = 0

    def run(self, coro, timeout: float = 10.0):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.run(self.nc.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)

    def publish_snapshot(self, route: str | None = None, age: float = 0.0, padding: int = 0) -> int:
        """Publish one snapshot (summary, or one route's, ``age`` seconds old, ``padding`` bytes bigger);
        its stream sequence."""
        self.counter += 1
        taken = datetime.now(UTC) - timedelta(seconds=age)
        window_end = (taken + timedelta(microseconds=self.counter)).isoformat().replace("+00:00", "Z")
        subject = route_subject(route) if route else SUMMARY_SUBJECT
        snapshot = make_snapshot(window_end, taken.isoformat().replace("+00:00", "Z"), route, self.counter)
        if padding:
            snapshot["padding"] = "x" * padding
        headers = {"Nats-Msg-Id": message_id(subject, window_end)}
        ack = self.run(self.js.publish(subject, encode(snapshot), headers=headers))
        return ack.seq

    def publish_alert(self, kind: str = "warning", rule: str = "test") -> int:
        self.counter += 1
        now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        alert = {"type": "alert", "id": f"a{self.counter}-{time.time_ns()}", "rule": rule, "severity": kind,
                 "state": "firing", "value": 1.0, "threshold": 0.5, "route": None, "startedAt": now, "at": now}
        ack = self.run(self.js.publish(ALERT_SUBJECT_PREFIX + kind, encode(alert),
                                       headers={"Nats-Msg-Id": alert["id"]}))
        return ack.seq

    def stream_bounds(self, stream: str = METRICS_STREAM) -> tuple[int, int]:
        info = self.run(self.js.stream_info(stream))
        return info.state.first_seq, info.state.last_seq


async def _ignore(exc: Exception) -> None:
    """Connection errors are expected while a test restarts nats-server."""


def make_snapshot(window_end: str, taken: str, route: str | None, n: int) -> dict:
    """A minimal Snapshot in the shape of flexgate_stream.messages.Snapshot."""
    series = {"name": "x", "data": [], "unit": "req/s"}
    return {
        "type": "metrics", "version": 1,
        "summary": {"totalRequests": n, "totalRequestsAllTime": n, "avgLatency": 1.0, "errorRate": 0.0,
                    "availability": 100.0, "p50Latency": 1.0, "p95Latency": 2.0, "p99Latency": 3.0,
                    "serverErrors": 0, "clientErrors": 0, "successfulRequests": n},
        "window": {"name": "24h", "start": window_end, "end": window_end}, "windowEnd": window_end,
        "requestRate": series, "latency": {"p50": series, "p95": series, "p99": series}, "errorRate": series,
        "statusCodes": [], "routes": [], "upstreams": [], "route": route, "timestamp": taken,
    }


@dataclass
class Event:
    """One SSE frame as a browser would see it (comments kept apart)."""

    event: str = "message"
    data: str = ""
    id: str | None = None
    retry: int | None = None
    comment: str | None = None

    def json(self) -> dict:
        return json.loads(self.data)


@dataclass
class SSEClient:
    """requests with stream=True and a small SSE parser."""

    url: str
    headers: dict = field(default_factory=dict)
    params: dict = field(default_factory=dict)
    read_timeout: float = 10.0

    def __post_init__(self) -> None:
        self.response = requests.get(self.url, headers=self.headers, params=self.params, stream=True,
                                     timeout=(5, self.read_timeout))
        self.status = self.response.status_code
        self.worker = self.response.headers.get("X-Flexgate-Worker")
        self.last_id: str | None = None
        self.last_retry: int | None = None
        self._buffer = b""
        self._chunks = self.response.iter_content(chunk_size=None) if self.status == 200 else iter(())

    def next(self, include_comments: bool = False) -> Event:
        """The next event (StopIteration when the server ended the stream)."""
        while True:
            while b"\n\n" not in self._buffer:
                self._buffer += next(self._chunks)
            raw, self._buffer = self._buffer.split(b"\n\n", 1)
            event = parse_frame(raw.decode())
            if event.id is not None:
                self.last_id = event.id
            if event.retry is not None:
                self.last_retry = event.retry
            if event.comment is None or include_comments:
                return event

    def data_events(self, count: int) -> list[Event]:
        """The next ``count`` unnamed (message) events, skipping status and other named events."""
        found = []
        while len(found) < count:
            event = self.next()
            if event.event == "message":
                found.append(event)
        return found

    def close(self) -> None:
        self.response.close()


def parse_frame(raw: str) -> Event:
    event = Event()
    data: list[str] = []
    for line in raw.split("\n"):
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "":
            event.comment = value
        elif name == "data":
            data.append(value)
        elif name == "event":
            event.event = value
        elif name == "id":
            event.id = value
        elif name == "retry":
            event.retry = int(value)
    event.data = "\n".join(data)
    return event


def open_spread(url: str, count: int, workers: int = 2, **kwargs) -> list[SSEClient]:
    """``count`` streams opened concurrently (as browsers would), each past its hello frame, on all ``workers``.

    The kernel hands connections to whichever worker accepts first, so a burst can land on one
    worker; then one stream at a time is reopened until every worker holds some.
    """
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=16) as pool:
        clients = list(pool.map(lambda _: SSEClient(url, **kwargs), range(count)))
    for _attempt in range(200):
        if len({c.worker for c in clients}) >= workers:
            break
        crowded = clients.pop(0)
        clients.append(SSEClient(url, **kwargs))
        crowded.close()
    for client in clients:
        assert client.status == 200, client.status
        assert client.next().json()["type"] == "connected"
    return clients
