"""Where a tick's time goes: the ticks of ``bench_tick`` under cProfile, with GC pauses and the slowest ticks.

    .venv/bin/python bench/profile_tick.py --rows 1000000 --paths 100000 [--ticks 30] [--top 30]

Prints each tick's wall time split into the aggregation (PostgreSQL and the figures) and the shaping and
encoding of its messages, the garbage collector's pauses during the ticks, and cProfile's busiest functions
over the timed spans only (folds between ticks are left out, as in ``bench_tick``).
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import gc
import pstats
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg2  # noqa: E402

from bench.bench_tick import cold_start, segments, shape  # noqa: E402
from bench.traffic_sql import arrive, seed  # noqa: E402
from flexgate_stream.devstack.servers import PostgresServer  # noqa: E402
from workers.collector import Collector  # noqa: E402
from workers.publisher import FOLD_SECONDS  # noqa: E402


class TimingCursor(psycopg2.extensions.cursor):
    """Wall time per statement kind (its first 60 characters), while ``on``."""

    on = False
    spent: dict[str, list[float]] = {}

    def execute(self, query, vars=None):  # noqa: A002 - psycopg2's name
        if not TimingCursor.on:
            return super().execute(query, vars)
        t0 = time.perf_counter()
        try:
            return super().execute(query, vars)
        finally:
            key = (query.decode() if isinstance(query, bytes) else query)[:60]
            TimingCursor.spent.setdefault(key, []).append((time.perf_counter() - t0) * 1000)


class GcPauses:
    """The garbage collector's pauses while ``on`` (ms, with the generation collected)."""

    def __init__(self) -> None:
        self.on, self.started, self.pauses = False, 0.0, []
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict) -> None:
        if phase == "start":
            self.started = time.perf_counter()
        elif self.on:
            self.pauses.append(((time.perf_counter() - self.started) * 1000, info["generation"]))


def ticks(conn, aggregation, end: datetime, args, profiler: cProfile.Profile | None) -> list[tuple[float, ...]]:
    """``args.ticks`` ticks as bench_tick times them (folds between, as the publisher); (total, aggregate, shape) ms."""
    out, pauses, collector = [], GcPauses(), Collector()
    for i in range(1, args.ticks + 1):
        at = end + timedelta(seconds=i * 5)
        aggregation.published = at - timedelta(seconds=5)
        spans, elapsed = segments(5, FOLD_SECONDS), 0.0
        for part, span in enumerate(spans):
            share = round(args.new * span / 5)
            arrive(conn, share - share // 50, at, 5, "demo", args.paths)
            arrive(conn, share // 50, at, 60, "demo", args.paths)
            elapsed += span
            if part < len(spans) - 1:
                aggregation.ahead = at - timedelta(seconds=5 - elapsed)
                aggregation.tick(conn, [])
                if not args.no_collector:
                    collector.between_ticks()
        aggregation.ahead = None
        pauses.on, before = True, len(pauses.pauses)
        TimingCursor.on = profiler is None
        if profiler:
            profiler.enable()
        with collector.paused() if not args.no_collector else contextlib.nullcontext():
            t0 = time.thread_time() if args.cpu else time.perf_counter()
            (figures,) = aggregation.tick(conn, [at])
            t1 = time.thread_time() if args.cpu else time.perf_counter()
            shape(figures, 20)
            t2 = time.thread_time() if args.cpu else time.perf_counter()
        TimingCursor.on = False
        if profiler:
            profiler.disable()
        pauses.on = False
        gc_ms = sum(ms for ms, _g in pauses.pauses[before:])
        out.append(((t2 - t0) * 1000, (t1 - t0) * 1000, (t2 - t1) * 1000, gc_ms,
                    max((g for _ms, g in pauses.pauses[before:]), default=-1)))
        if i % 3 == 0:
            aggregation.tick(conn, [at], index=True)
    return out


def main() -> None:
    """Seed, cold start, time ticks without then with the profiler, print both."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--paths", type=int, default=100_000)
    parser.add_argument("--ticks", type=int, default=30)
    parser.add_argument("--new", type=int, default=10_000)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--cpu", action="store_true", help="this thread's CPU, not wall time (no PostgreSQL)")
    parser.add_argument("--no-collector", action="store_true", help="leave the garbage collector as it is")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="flexgate-profile-pg-"))
    base.chmod(0o755)
    server = PostgresServer(base / "data", log_file=base / "postgres.log").start()
    try:
        conn = psycopg2.connect(server.admin_url(), cursor_factory=TimingCursor)
        end = datetime.fromtimestamp(time.time() // 5 * 5, UTC)
        seed(conn, args.rows, end, "demo", paths=args.paths)
        aggregation = cold_start(conn, end, 20)[0]
        plain = ticks(conn, aggregation, end, args, None)
        profiler = cProfile.Profile()
        ticks(conn, aggregation, end + timedelta(seconds=5 * args.ticks), args, profiler)
        conn.close()
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)
    print("every tick's total ms, in order:", " ".join(f"{r[0]:.0f}" for r in plain))
    print("tick ms: total / aggregate / shape / gc (gen), slowest first")
    for row in sorted(plain, reverse=True)[:8]:
        print(f"  {row[0]:.1f} / {row[1]:.1f} / {row[2]:.1f} / {row[3]:.1f} ({row[4]})")
    medians = [sorted(r[i] for r in plain)[len(plain) // 2] for i in range(3)]
    print(f"median {medians[0]:.1f} ms; median aggregate {medians[1]:.1f}, shape {medians[2]:.1f}")
    print("statements on the ticks (without the profiler): ms per tick, calls")
    for key, times in sorted(TimingCursor.spent.items(), key=lambda kv: -sum(kv[1])):
        print(f"  {sum(times) / len(plain):6.2f} {len(times):4d}  {key}")
    stats = pstats.Stats(profiler)
    stats.sort_stats("tottime").print_stats(args.top)
    stats.sort_stats("cumulative").print_stats(args.top)
    stats.print_callers("execute|commit|fetchall")


if __name__ == "__main__":
    main()
