"""Benchmark the publisher's tick: aggregation SQL + message shaping at 1 M rows in the last 24 h.

Starts its own PostgreSQL (embedded, free port, temporary data), seeds demo traffic with COPY,
then runs the tick's database work and shaping ``--runs`` times and prints p50 / max in ms.

    .venv/bin/python bench/bench_tick.py [--rows 1000000] [--runs 20]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flexgate_stream.devstack.demo import RowWriter, TrafficModel  # noqa: E402
from flexgate_stream.devstack.servers import PostgresServer  # noqa: E402
from flexgate_stream.messages import encode  # noqa: E402
from flexgate_stream.requestlog import database, schema  # noqa: E402
from flexgate_stream.settings import Settings  # noqa: E402
from flexgate_stream.tick.snapshot import busiest_routes, route_snapshot, summary_snapshot  # noqa: E402
from workers.connections import Database  # noqa: E402

TICK = 5.0


def seed(url: str, rows: int, batch: int = 50_000) -> float:
    """COPY ``rows`` demo rows spread over the last 24 h; the seconds it took."""
    started = time.perf_counter()
    conn = database.connect(url)
    try:
        schema.upgrade(conn)
        model = TrafficModel(seed=42)
        end = datetime.now(UTC)
        start = end - timedelta(hours=24)
        model.plan_incidents(start, end)
        writer = RowWriter(conn, None)
        left = rows
        while left:
            n = min(batch, left)
            writer.write(list(model.rows(start, end, n)))
            left -= n
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("VACUUM ANALYZE requests")
    finally:
        conn.close()
    return time.perf_counter() - started


def tick_once(db: Database, top: int) -> tuple[float, float, int]:
    """One tick without NATS: (database ms, shaping+encoding ms, bytes)."""
    end = datetime.fromtimestamp(time.time() // TICK * TICK, UTC)
    started = time.perf_counter()
    figures = db._aggregate(end)
    queried = time.perf_counter()
    messages = [summary_snapshot(figures, top)]
    messages += [route_snapshot(figures, route, entry, top) for route, entry in busiest_routes(figures, top)]
    size = sum(len(encode(m)) for m in messages)
    return (queried - started) * 1000, (time.perf_counter() - queried) * 1000, size


def main() -> None:
    """Start PostgreSQL, seed, time the tick, print the figures, stop PostgreSQL."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--top", type=int, default=20)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="flexgate-bench-pg-"))
    base.chmod(0o755)  # the server runs as an unprivileged user when we are root
    server = PostgresServer(base / "data", log_file=base / "postgres.log").start()
    try:
        print(f"seeding {args.rows:,} rows over the last 24 h ...", flush=True)
        print(f"seeded in {seed(server.url, args.rows):.1f} s", flush=True)
        db = Database(Settings(database_url=server.url), "bench")
        cold_db, cold_shape, _ = tick_once(db, args.top)  # includes the one full all-time count
        runs = [tick_once(db, args.top) for _ in range(args.runs)]
        db.close()
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)
    totals = [a + b for a, b, _ in runs]
    print(f"first tick (connect + full all-time count): {cold_db + cold_shape:.1f} ms")
    print(f"tick over {args.runs} runs at {args.rows:,} rows: p50 {statistics.median(totals):.1f} ms,"
          f" max {max(totals):.1f} ms (database p50 {statistics.median(a for a, _, _ in runs):.1f} ms,"
          f" shaping p50 {statistics.median(b for _, b, _ in runs):.1f} ms, {runs[-1][2]:,} bytes per tick)")
    print(f"budget: one tick every {TICK:g} s -> p50 uses {statistics.median(totals) / (TICK * 10):.1f} % of it")


if __name__ == "__main__":
    main()
