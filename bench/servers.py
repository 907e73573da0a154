"""The servers bench/fanout_vs_nchan.py compares (Nchan, ours, and with ``--floor`` gunicorn and Flask alone), each
on a free loopback port, checked to be its own, started and stopped by PID; and what /proc says about them."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from flexgate_stream.devstack.nats_client import NatsClient
from flexgate_stream.devstack.processes import dies_with_parent, free_port, stop_process, wait_for
from flexgate_stream.devstack.samples import sample_snapshot
from flexgate_stream.devstack.servers import NatsServer
from flexgate_stream.devstack.web_server import WebServer
from flexgate_stream.messages import SUMMARY_SUBJECT, encode, message_id

NCHAN_MODULE = Path("/usr/lib/nginx/modules/ngx_nchan_module.so")
NGINX = "/usr/sbin/nginx"
PAYLOAD_BYTES = 2048

NCHAN_CONF = """\
load_module {module};
worker_processes 2;
worker_rlimit_nofile {nofile};
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections {connections}; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location = /whoami {{ return 200 "$pid"; }}
        location = /pub {{ nchan_publisher; nchan_channel_id bench; nchan_message_buffer_length 64; }}
        location = /sub {{ nchan_subscriber eventsource; nchan_channel_id bench;
                          nchan_subscriber_first_message newest; }}
    }}
}}
"""


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds the processes have used."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / ticks


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError):
                continue
            if ppid == pid:
                found.append(int(entry.name))
    return sorted(found)


def payload(run: str, n: int) -> tuple[bytes, bytes, str]:
    """A ~2 KB snapshot split where the publish time goes, and its windowEnd."""
    now = datetime.now(UTC)
    snap = sample_snapshot(n, end=now + timedelta(microseconds=n), taken=now,
                           routes={f"/api/route/{i}": 1000 + i for i in range(4)})
    body = encode(snap)
    if len(body) < PAYLOAD_BYTES:
        snap["padding"] = "x" * (PAYLOAD_BYTES - len(body) - 60)
        body = encode(snap)
    head = b'{"benchRun":"%s","benchN":%d,"benchAt":' % (run.encode(), n)
    return head, b"," + body[1:], snap["windowEnd"]


class _MasterAndWorkers:
    """A server run as one process and its worker children, with nothing beside it to count."""

    proc: subprocess.Popen[bytes] | None = None

    def pids(self) -> list[int]:
        assert self.proc is not None
        return [self.proc.pid, *children_of(self.proc.pid)]

    def aux_cpu(self) -> float:
        return 0.0


class NchanServer(_MasterAndWorkers):
    """nginx with the Nchan module: 2 worker processes, its own prefix, pid and temp folders."""

    name = "nchan"
    path = "/sub"

    def __init__(self, prefix: Path) -> None:
        self.prefix = prefix
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.publisher: http.client.HTTPConnection | None = None

    @staticmethod
    def available() -> bool:
        return NCHAN_MODULE.exists() and Path(NGINX).exists()

    def start(self) -> NchanServer:
        self.prefix.mkdir(parents=True, exist_ok=True)
        os.chmod(self.prefix, 0o755)  # nginx workers run as nobody when started by root
        self.port = free_port()
        conf = self.prefix / "nginx.conf"
        conf.write_text(NCHAN_CONF.format(module=NCHAN_MODULE, prefix=self.prefix, port=self.port,
                                          nofile=20000, connections=15000))
        args = [NGINX, "-p", str(self.prefix), "-e", str(self.prefix / "error.log"), "-c", str(conf),
                "-g", "daemon off;"]
        self.proc = subprocess.Popen(args, start_new_session=True, preexec_fn=dies_with_parent(signal.SIGTERM))
        wait_for(self._answers, 15, "nginx", self.proc)
        self.publisher = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        return self

    def _answers(self) -> bool:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1)
            conn.request("GET", "/whoami")
            worker = int(conn.getresponse().read())
        except (OSError, ValueError):
            return False
        assert self.proc is not None
        if worker not in children_of(self.proc.pid):
            raise RuntimeError(f"port {self.port} is served by another nginx (worker {worker}).")
        return len(children_of(self.proc.pid)) >= 2

    def publish(self, run: str, n: int) -> None:
        head, rest, _ = payload(run, n)
        assert self.publisher is not None
        body = head + str(time.time_ns()).encode() + rest
        self.publisher.request("POST", "/pub", body=body, headers={"Content-Type": "application/json"})
        self.publisher.getresponse().read()

    def stop(self) -> None:
        if self.publisher is not None:
            self.publisher.close()
        if self.proc is not None:
            stop_process(self.proc)
        shutil.rmtree(self.prefix, ignore_errors=True)


class OurServer:
    """The web tier as deployed: gunicorn with conf/gunicorn.conf.py (2 gevent workers unless told) and its own
    nats-server."""

    name = "ours"
    path = "/api/stream/metrics"

    def __init__(self, workdir: Path, streams: int, workers: int = 2) -> None:
        self.workdir = workdir
        self.streams = streams
        self.workers = workers
        self.nats: NatsServer | None = None
        self.client: NatsClient | None = None
        self.web: WebServer | None = None
        self.port = 0

    def start(self) -> OurServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.nats = NatsServer(self.workdir / "nats").start()
        self.client = NatsClient(self.nats.url)
        env = {"FLEXGATE_HEARTBEAT_SECONDS": "30", "FLEXGATE_LOG_LEVEL": "WARNING",
               "FLEXGATE_MAX_CLIENTS": str(self.streams + 100), "WEB_CONCURRENCY": str(self.workers)}
        self.web = WebServer(self.nats.url, self.workdir, env, workers=self.workers).start()
        self.port = self.web.port
        return self

    def pids(self) -> list[int]:
        assert self.web is not None
        return [self.web.pid, *self.web.worker_pids()]

    def aux_cpu(self) -> float:
        assert self.nats is not None and self.nats.proc is not None
        return cpu_seconds([self.nats.proc.pid])

    def publish(self, run: str, n: int) -> None:
        head, rest, end = payload(run, n)
        assert self.client is not None
        body = head + str(time.time_ns()).encode() + rest
        self.client.run(self.client.js.publish(SUMMARY_SUBJECT, body,
                                               headers={"Nats-Msg-Id": message_id(SUMMARY_SUBJECT, end)}))

    def stop(self) -> None:
        for part in (self.web, self.client, self.nats):
            if part is None:
                continue
            try:
                part.stop() if not isinstance(part, NatsClient) else part.close()
            except Exception:  # noqa: BLE001 - a benchmark's teardown goes on with the next part
                pass
        shutil.rmtree(self.workdir, ignore_errors=True)


class FloorServer(_MasterAndWorkers):
    """The design with none of our code (bench/floor_app.py): gunicorn's stock gevent worker and a minimal Flask
    stream view, configured as conf/gunicorn.conf.py is. It only opens streams: nothing is published to it."""

    name = "floor"
    path = "/sub"

    def __init__(self, workdir: Path, streams: int, workers: int = 2, env: dict[str, str] | None = None,
                 name: str = "floor") -> None:
        self.workdir = workdir
        self.streams = streams
        self.workers = workers
        self.env = env or {}
        self.name = name
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> FloorServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        root = Path(__file__).resolve().parents[1]
        env = {**os.environ, "FLOOR_WORKERS": str(self.workers), "FLOOR_CONNECTIONS": str(self.streams + 1100),
               **self.env}
        args = [str(Path(sys.executable).parent / "gunicorn"), "-c", "bench/floor_gunicorn.conf.py",
                "--bind", f"127.0.0.1:{self.port}"]
        with open(self.workdir / "gunicorn.log", "ab") as out:
            self.proc = subprocess.Popen(args, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True, preexec_fn=dies_with_parent(signal.SIGTERM))
        wait_for(self._answers, 30, "the floor's gunicorn", self.proc)
        return self

    def _answers(self) -> bool:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1)
            conn.request("GET", "/whoami")
            master = json.loads(conn.getresponse().read())["server"]
        except (OSError, ValueError, KeyError):
            return False
        assert self.proc is not None
        if master != self.proc.pid:
            raise RuntimeError(f"port {self.port} is served by another gunicorn (master {master}).")
        return len(children_of(self.proc.pid)) == self.workers

    def publish(self, run: str, n: int) -> None:
        """Nothing to publish to: the floor's streams only open."""

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, signal.SIGQUIT)  # gunicorn's quick stop: its streams wait for nothing
        shutil.rmtree(self.workdir, ignore_errors=True)
