"""Benchmark the publisher's tick: incremental rollups against the full-scan reference, side by side.

For each size it starts from a fresh database holding ``rows`` requests over the last 24 h
(generated in SQL, indexes built after the load), then:
- cold start: first tick, backfill of the existing log in chunks, first complete snapshot;
- ``--ticks`` ticks with ``--new`` rows arriving before each (2 % of them timestamped up to 60 s back),
  timing the database work plus shaping and encoding every message of the tick;
- the full-scan reference tick (the previous implementation) ``--reference-runs`` times;
- percentile error of the published p50/p95/p99 (summary, every route, every upstream) against
  exact ``percentile_cont`` over the same rows and window.

    .venv/bin/python bench/bench_tick.py --rows 100000,1000000,10000000 [--ticks 60] [--new 10000] [--tick 5]
        [--fold 0.5]  (the publisher's FOLD_SECONDS by default; 0 folds only at ticks; folds run half a period off
        the tick's phase, as the publisher's) [--paths 0,1000,10000,100000] (the cardinality axis: 0 is the demo's
        12 routes, N > 0 that many distinct slug paths) [--no-reference]
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg2  # noqa: E402

from bench.full_scan import AllTimeCounter, aggregate_window  # noqa: E402
from bench.traffic_sql import arrive, seed  # noqa: E402
from flexgate_stream.devstack.servers import PostgresServer  # noqa: E402
from flexgate_stream.messages import encode  # noqa: E402
from flexgate_stream.settings import Settings  # noqa: E402
from flexgate_stream.tick.incremental import IncrementalAggregation  # noqa: E402
from flexgate_stream.tick.rollups import LATENCY, UNKNOWN_UPSTREAM  # noqa: E402
from flexgate_stream.tick.routes import route_sql  # noqa: E402
from flexgate_stream.tick.snapshot import summary_snapshot  # noqa: E402
from flexgate_stream.tick.time_column import TimeColumn  # noqa: E402
from workers.collector import Collector  # noqa: E402
from workers.outbox import Outbox  # noqa: E402
from workers.publisher import FOLD_SECONDS, FOLDS_FROM  # noqa: E402


def shape(figures, top: int) -> tuple[int, int]:
    """Every message of a tick, encoded: (all their bytes, the summary's bytes)."""
    out = Outbox(Settings(top_routes=top), [], "bench")
    sizes = [len(encode(message)) for _subject, message in out.messages(figures) + out.index_messages(figures)]
    return sum(sizes), sizes[0]


def rss_mb() -> float:
    """This process's resident memory now, in MB."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 1e6


def percentile_errors(conn, snapshot: dict) -> dict[str, float]:
    """Largest relative error per percentile over the summary, every route and every upstream."""
    end = datetime.fromisoformat(snapshot["windowEnd"].replace("Z", "+00:00"))
    top = (math.ceil(end.timestamp() / 60)) * 60
    published = {("*", "*"): snapshot["summary"]}
    published |= {("route", b["name"]): b for b in snapshot["routes"]}
    published |= {("upstream", b["name"]): b for b in snapshot["upstreams"]}
    worst = {"p50": 0.0, "p95": 0.0, "p99": 0.0}
    with conn, conn.cursor() as cur:
        upstream = f"coalesce(upstream, '{UNKNOWN_UPSTREAM}')"
        for kind, key in (("*", "'*'"), ("route", route_sql("path")), ("upstream", upstream)):
            cur.execute(f"SELECT {key}, percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY {LATENCY})"
                        ' FROM requests WHERE "timestamp" >= to_timestamp(%s) AND "timestamp" < to_timestamp(%s)'
                        " GROUP BY 1", (top - 86400, end.timestamp()))
            for name, exact in cur.fetchall():
                shown = published.get((kind, name))
                if shown is None:
                    continue  # outside the busiest listed (counted in "(other)" or "(overflow)")
                for p, value in zip(("p50", "p95", "p99"), exact, strict=True):
                    if value:
                        error = abs(shown[f"{p}Latency"] - value) / value
                        worst[p] = max(worst[p], error)
    return worst


class CpuClock:
    """CPU time of one tick: this thread (Python, psycopg2) plus the PostgreSQL backend serving it (ns)."""

    def __init__(self, conn) -> None:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_backend_pid()")
            self.stat = Path(f"/proc/{cur.fetchone()[0]}/schedstat")
        conn.rollback()

    def now(self) -> float:
        backend = int(self.stat.read_text().split()[0]) if self.stat.exists() else 0
        return time.thread_time_ns() + backend


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


def cold_start(conn, end: datetime, top: int) -> tuple[IncrementalAggregation, float, float]:
    """First tick, backfill of the existing log, first complete snapshot: (aggregation, first s, complete s)."""
    aggregation = IncrementalAggregation(TimeColumn(None), top=top)
    started = time.perf_counter()
    aggregation.tick(conn, [end])
    first_tick = time.perf_counter() - started
    while aggregation.backfill_step(conn):
        pass
    (figures,) = aggregation.tick(conn, [end], index=True)
    shape(figures, top)
    return aggregation, first_tick, time.perf_counter() - started


def segments(tick: float, fold: float) -> list[float]:
    """The spans (s) between the publisher's folds over one tick: it folds every ``fold`` s half a period off the
    tick's phase (``workers/publisher.py``), so the tick itself folds the last ``fold / 2`` s of rows."""
    if not fold or tick < FOLDS_FROM:
        return [tick]
    parts = round(tick / fold)
    return [fold / 2] + [fold] * (parts - 1) + [tick - fold / 2 - (parts - 1) * fold]


def timed_ticks(conn, aggregation, start: datetime, tick: float, new: int, args) -> dict:
    """``args.ticks`` ticks of ``tick`` s with ``new`` rows arriving before each (2 % up to 60 s late).

    As the publisher does, rows are folded every ``args.fold`` seconds between ticks, half a period off the tick's
    phase, so the timed tick folds only the rows of the last half period; the folds' CPU is reported apart."""
    times, cpu, fold_cpu, size, index_ms, index_bytes = [], [], [], 0, [], 0
    clock, collector = CpuClock(conn), Collector()
    spans = segments(tick, args.fold)
    for i in range(1, args.ticks + 1):
        at = start + timedelta(seconds=i * tick)
        aggregation.published = at - timedelta(seconds=tick)  # as the publisher tells it: slot cells from there on
        spent, elapsed, left = 0.0, 0.0, new
        for part, span in enumerate(spans):
            share = left if part == len(spans) - 1 else round(new * span / tick)
            left -= share
            late = share // 50
            arrive(conn, share - late, at, tick, args.kind, args.paths_now)
            arrive(conn, late, at, 60, args.kind, args.paths_now)  # rows timestamped up to 60 s in the past
            elapsed += span
            if part < len(spans) - 1:  # a fold between ticks, at its time (it may move the windows into a new minute)
                aggregation.ahead = at - timedelta(seconds=tick - elapsed)
                c0 = clock.now()
                aggregation.tick(conn, [])
                collector.between_ticks()  # as the publisher's fold does
                spent += (clock.now() - c0) / 1e6
        fold_cpu.append(spent)
        aggregation.ahead = None
        with collector.paused():  # as the publisher's tick runs
            t0, c0 = time.perf_counter(), clock.now()
            (figures,) = aggregation.tick(conn, [at])
            size, summary_size = shape(figures, args.top)
            times.append((time.perf_counter() - t0) * 1000)
            cpu.append((clock.now() - c0) / 1e6)
        if i % 3 == 0:  # the index of every route and upstream, published every three ticks, off the tick
            t0 = time.perf_counter()
            (indexed,) = aggregation.tick(conn, [at], index=True)
            index_bytes = shape(indexed, args.top)[0] - size
            index_ms.append((time.perf_counter() - t0) * 1000)
    return {"p50": statistics.median(times), "p99": pct(times, 0.99), "max": max(times),
            "cpu": (statistics.median(cpu), pct(cpu, 0.99)), "fold_cpu": statistics.median(fold_cpu), "bytes": size,
            "summary_bytes": summary_size, "end": at, "figures": figures,
            "index": (statistics.median(index_ms) if index_ms else 0.0, index_bytes)}


def reference_ms(conn, at: datetime, runs: int, top: int) -> float | None:
    """The previous full-scan tick on the same data: median ms over ``runs``."""
    counter, times = AllTimeCounter(TimeColumn(None)), []
    conn.autocommit = False
    for _ in range(runs):
        t0 = time.perf_counter()
        shape(aggregate_window(conn, at, TimeColumn(None), counter), top)
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times) if times else None


def run_size(url: str, rows: int, args) -> dict:
    """Seed a fresh database with ``rows`` and measure everything for that size."""
    name = f"bench_{rows}_{args.kind}_{args.paths_now}"
    admin = psycopg2.connect(url)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
        cur.execute(f'CREATE DATABASE "{name}"')
    conn = psycopg2.connect(url.rsplit("/", 1)[0] + "/" + name)
    end = datetime.fromtimestamp(time.time() // args.tick * args.tick, UTC)
    started = time.perf_counter()
    seed(conn, rows, end, args.kind, paths=args.paths_now)
    seeded = time.perf_counter() - started
    rss_before = rss_mb()
    print(f"  {rows:,} rows seeded in {seeded:.1f} s", flush=True)
    aggregation, first_tick, cold = cold_start(conn, end, args.top)
    print(f"  cold start: first (partial) snapshot {first_tick * 1000:.0f} ms, complete after {cold:.1f} s",
          flush=True)
    result = timed_ticks(conn, aggregation, end, args.tick, args.new, args)
    fast = None
    if args.fast_tick:  # the same arrival rate, ticking every --fast-tick seconds
        fast = timed_ticks(conn, aggregation, result["end"], args.fast_tick,
                           round(args.new * args.fast_tick / args.tick), args)
    last = fast or result
    rss = rss_mb()
    errors = percentile_errors(conn, summary_snapshot(last["figures"], args.top))
    reference = None if args.no_reference else reference_ms(
        conn, last["end"], args.reference_runs if rows < 5_000_000 else min(1, args.reference_runs), args.top)
    conn.close()
    with admin.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.close()
    return result | {"rows": rows, "seed": seeded, "first": first_tick * 1000, "cold": cold, "errors": errors,
                     "reference": reference, "fast": (fast["p50"], fast["p99"]) if fast else None,
                     "paths": args.paths_now, "rss": rss, "rss_growth": rss - rss_before}


def main() -> None:
    """Start PostgreSQL, measure each size, print the table, stop PostgreSQL."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="100000,1000000")
    parser.add_argument("--ticks", type=int, default=60)
    parser.add_argument("--new", type=int, default=10_000, help="rows arriving before each tick")
    parser.add_argument("--tick", type=float, default=5.0)
    parser.add_argument("--top", type=int, default=20)
    parser.add_argument("--kind", choices=("demo", "heavy"), default="demo")
    parser.add_argument("--reference-runs", type=int, default=3)
    parser.add_argument("--fast-tick", type=float, default=0.0, help="also tick every N s at the same arrival rate")
    parser.add_argument("--fold", type=float, default=FOLD_SECONDS,
                        help="fold new rows every N s between ticks, as the publisher does (0: only at ticks)")
    parser.add_argument("--paths", default="0", help="distinct paths: 0 the demo's 12 routes, N slug paths")
    parser.add_argument("--no-reference", action="store_true", help="skip the full-scan reference")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="flexgate-bench-pg-"))
    base.chmod(0o755)  # the server runs as an unprivileged user when we are root
    server = PostgresServer(base / "data", log_file=base / "postgres.log").start()
    results = []
    try:
        for rows in (int(r) for r in args.rows.split(",")):
            for paths in (int(p) for p in args.paths.split(",")):
                args.paths_now = paths
                print(f"{rows:,} rows ({args.kind}, {_paths(paths)}), {args.new:,} new rows per {args.tick:g} s"
                      " tick:", flush=True)
                results.append(run_size(server.admin_url(), rows, args))
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)
    print("\n| rows | paths | tick p50 | tick p99 | tick max | CPU p50 / p99 | CPU of folds between ticks |"
          " full-scan reference | cold start (complete) | p50 / p95 / p99 max rel. error | summary bytes |"
          " tick's messages bytes | index (every 3 ticks, off the tick) | RSS (growth) | seeding |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in results:
        ref = f"{r['reference']:.0f} ms" if r["reference"] is not None else "n/a"
        err = " / ".join(f"{r['errors'][p] * 100:.2f} %" for p in ("p50", "p95", "p99"))
        print(f"| {r['rows']:,} | {_paths(r['paths'])} | {r['p50']:.1f} ms | {r['p99']:.1f} ms | {r['max']:.1f} ms |"
              f" {r['cpu'][0]:.1f} / {r['cpu'][1]:.1f} ms | {r['fold_cpu']:.1f} ms | {ref} |"
              f" {r['cold']:.1f} s | {err} | {r['summary_bytes']:,} | {r['bytes']:,} |"
              f" {r['index'][0]:.0f} ms, {r['index'][1]:,} bytes |"
              f" {r['rss']:.0f} MB ({r['rss_growth']:+.0f}) | {r['seed']:.0f} s |")
    for r in results:
        if r["fast"]:
            print(f"{r['rows']:,} rows, a tick every {args.fast_tick:g} s"
                  f" ({round(args.new * args.fast_tick / args.tick):,} new rows each):"
                  f" p50 {r['fast'][0]:.1f} ms, p99 {r['fast'][1]:.1f} ms")
    if len(results) > 1:
        print(f"\ntick p50 ratio {results[-1]['rows']:,} / {results[0]['rows']:,}:"
              f" {results[-1]['p50'] / results[0]['p50']:.2f}; p99 ratio {results[-1]['p99'] / results[0]['p99']:.2f}")
    print(f"budget: one tick every {args.tick:g} s; {results[-1]['bytes']:,} bytes of messages per tick;"
          f" load average at the end {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


def _paths(paths: int) -> str:
    return "demo (12 routes)" if not paths else f"{paths:,} slug paths"


if __name__ == "__main__":
    main()
