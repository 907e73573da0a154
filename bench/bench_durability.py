"""Cost of a durable embedded PostgreSQL (fsync on, as ``make run`` runs it) on the demo load.

Starts two embedded servers side by side in one run, one durable and one with ``fsync=off``, and
writes the demo traffic's shape to each: one COPY transaction of ``--rps`` rows per second of
traffic, as ``demo traffic`` does. Prints the time per transaction and the server CPU per second
of traffic for both, and the ratios.

    .venv/bin/python bench/bench_durability.py [--seconds 300] [--rps 50]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flexgate_stream.devstack.servers import PostgresServer  # noqa: E402
from flexgate_stream.devstack.traffic import RowWriter, TrafficModel  # noqa: E402
from flexgate_stream.requestlog import database, schema  # noqa: E402


def server_cpu(pid: int) -> float:
    """CPU seconds of a server and all its processes: the postmaster, its backends, WAL writer, checkpointer."""
    ticks = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if stat.parent.name == str(pid) or fields[1] == str(pid):
            ticks += sum(int(v) for v in fields[11:15])  # utime, stime, cutime, cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def run(server: PostgresServer, seconds: int, rps: int) -> tuple[list[float], float]:
    conn = database.connect(server.url)
    schema.upgrade(conn)
    writer = RowWriter(conn, None)
    model = TrafficModel(seed=7)
    start = datetime.now(UTC) - timedelta(seconds=seconds)
    model.plan_incidents(start, start + timedelta(seconds=seconds))
    times = []
    cpu_before = server_cpu(server.proc.pid)
    for second in range(seconds):
        at = start + timedelta(seconds=second)
        rows = list(model.rows(at, at + timedelta(seconds=1), rps))
        began = time.perf_counter()
        writer.write(rows)
        times.append((time.perf_counter() - began) * 1000)
    cpu = server_cpu(server.proc.pid) - cpu_before  # before closing: the backend is still counted
    conn.close()
    return times, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=300, help="seconds of demo traffic to write to each")
    parser.add_argument("--rps", type=int, default=50)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="flexgate-bench-durability-"))
    base.chmod(0o755)
    servers = {
        "fsync on (make run)": PostgresServer(base / "durable", durable=True),
        "fsync off": PostgresServer(base / "fast", durable=False),
    }
    results = {}
    try:
        for server in servers.values():
            server.start()
        for name, server in servers.items():
            results[name] = run(server, args.seconds, args.rps)
    finally:
        for server in servers.values():
            server.stop()
        shutil.rmtree(base, ignore_errors=True)
    print(f"{args.seconds} one-second COPY transactions of {args.rps} demo rows each")
    print(f"{'':22} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'server CPU ms/s of traffic':>28}")
    for name, (times, cpu) in results.items():
        q = statistics.quantiles(times, n=100)
        print(f"{name:22} {q[49]:8.2f} {q[98]:8.2f} {max(times):8.2f} {cpu * 1000 / args.seconds:28.3f}")
    (on, cpu_on), (off, cpu_off) = results.values()
    print(f"ratio on/off: p50 {statistics.median(on) / statistics.median(off):.2f}x, "
          f"server CPU {cpu_on / cpu_off if cpu_off else float('nan'):.2f}x")


if __name__ == "__main__":
    main()
