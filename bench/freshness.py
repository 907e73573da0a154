"""Freshness end to end on the real stack: embedded PostgreSQL with demo traffic, nats-server, one publisher
(``python -m workers.publisher``), gunicorn (conf/gunicorn.conf.py, 2 workers) and ``--streams`` SSE streams.

After ``--seconds`` it prints what ``/api/stream/stats`` says of the last minute in each worker (window end ->
stored, stored -> written, p50 and p99) and the same quantiles from the /metrics histograms over the whole run.

    .venv/bin/python -m bench.freshness [--seconds 120] [--streams 1000] [--tick 5] [--rps 50]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

from bench.load_driver import Driver
from flexgate_stream.devstack.processes import dies_with_parent, stop_process
from flexgate_stream.devstack.servers import NatsServer, PostgresServer
from flexgate_stream.devstack.web_server import ROOT, WebServer
from flexgate_stream.requestlog import database, schema

HISTOGRAMS = {"window end -> stored": "flexgate_stream_window_to_stored_seconds",
              "stored -> written": "flexgate_stream_stored_to_written_seconds"}


def start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("FLEXGATE_", "NATS_", "DATABASE_"))}
    with open(log, "wb") as out:
        return subprocess.Popen(args, cwd=ROOT, env={**clean, **env}, stdout=out, stderr=subprocess.STDOUT,
                                preexec_fn=dies_with_parent(signal.SIGTERM))


def buckets(url: str, name: str) -> list[tuple[float, float]]:
    """(upper bound, cumulative count) of a histogram in one scrape, all label sets added up."""
    found: dict[float, float] = {}
    for line in requests.get(url + "/metrics", timeout=10).text.splitlines():
        if line.startswith(name + "_bucket{"):
            bound = line.split('le="', 1)[1].split('"', 1)[0]
            le = float("inf") if bound == "+Inf" else float(bound)
            found[le] = found.get(le, 0.0) + float(line.rsplit(" ", 1)[1])
    return sorted(found.items())


def quantile(cumulative: list[tuple[float, float]], q: float) -> float | None:
    """As Prometheus's histogram_quantile: linear within the bucket the rank falls in."""
    total = cumulative[-1][1] if cumulative else 0
    if not total:
        return None
    rank, low, below = q * total, 0.0, 0.0
    for le, count in cumulative:
        if count >= rank:
            if le == float("inf"):
                return low
            return low + (le - low) * (rank - below) / max(count - below, 1e-9)
        low, below = le, count
    return low


def per_worker(url: str, workers: int) -> dict[int, dict]:
    """Each worker's ``freshness`` from /api/stream/stats (new connections land on either worker)."""
    seen: dict[int, dict] = {}
    for _attempt in range(200):
        data = requests.get(url + "/api/stream/stats", timeout=10).json()["data"]
        seen[data["clients"]["workerPid"]] = data["freshness"]
        if len(seen) == workers:
            break
    return seen


def shown(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.1f} ms"


def run(opts: argparse.Namespace, base: Path) -> None:
    postgres = PostgresServer(base / "pg", log_file=base / "postgres.log").start()
    nats = NatsServer(base / "nats", log_file=base / "nats.log").start()
    procs: list[subprocess.Popen[bytes]] = []
    web = driver = None
    try:
        conn = database.connect(postgres.url)
        schema.upgrade(conn)
        conn.close()
        env = {"DATABASE_URL": postgres.url, "NATS_SERVERS": nats.url, "FLEXGATE_TICK_SECONDS": str(opts.tick)}
        procs.append(start([sys.executable, "-m", "workers.publisher"], env, base / "publisher.log"))
        procs.append(start([sys.executable, "-m", "flask", "--app", "flexgate_stream", "demo", "traffic", "--rps",
                            str(opts.rps)], env, base / "traffic.log"))
        (base / "web").mkdir()
        web = WebServer(nats.url, base / "web", {"FLEXGATE_TICK_SECONDS": str(opts.tick),
                                                 "FLEXGATE_HEARTBEAT_SECONDS": "15"}).start(timeout=60)
        driver = Driver(web.port, "/api/stream/metrics", 2)
        streaming, _took, refused, failed = driver.open(opts.streams, 5.0, 30.0)
        print(f"{streaming} streams open ({refused} refused, {failed} failed); tick {opts.tick:g} s, "
              f"{opts.rps:g} rows/s; measuring {opts.seconds} s")
        time.sleep(opts.seconds)
        for pid, freshness in sorted(per_worker(web.url, web.workers).items()):
            for key, title in (("windowToStored", "window end -> stored"), ("storedToWritten", "stored -> written")):
                figures = freshness[key]
                print(f"worker {pid} last minute  {title:22} p50 {shown(figures['p50']):>10}  "
                      f"p99 {shown(figures['p99']):>10}  n={figures['count']}")
        for title, name in HISTOGRAMS.items():
            cumulative = buckets(web.url, name)
            print(f"/metrics whole run         {title:22} p50 {shown(quantile(cumulative, 0.5)):>10}  "
                  f"p99 {shown(quantile(cumulative, 0.99)):>10}  n={int(cumulative[-1][1]) if cumulative else 0}")
    finally:
        if driver is not None:
            driver.close()
        if web is not None:
            web.stop()
        for proc in procs:
            stop_process(proc)
        nats.stop()
        postgres.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=120)
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--tick", type=float, default=5.0)
    parser.add_argument("--rps", type=float, default=50.0)
    opts = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="flexgate-bench-freshness-"))
    base.chmod(0o755)  # as root, PostgreSQL runs as an unprivileged user who must reach its data
    try:
        run(opts, base)
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
