"""Where a tick's wall time goes, without a profiler: the ticks of ``bench_tick`` with the tick's parts timed.

    .venv/bin/python bench/tick_phases.py --rows 1000000 --paths 1000 [--ticks 20]

Wraps the parts of a tick (reading the new rows, storing the cells, counting them, the figures and their parts,
shaping and encoding the messages) with a clock, and prints each part's median ms per tick (inclusive: a part
holds the parts it calls) and the slowest ticks part by part. A profiler's cost per call distorts the small
functions of a tick; a clock around a few dozen calls per tick does not.
"""

from __future__ import annotations

import argparse
import functools
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg2  # noqa: E402

import bench.bench_tick as bench_tick  # noqa: E402
import bench.profile_tick as profile_tick  # noqa: E402
from bench.traffic_sql import seed  # noqa: E402
from flexgate_stream.devstack.servers import PostgresServer  # noqa: E402
from flexgate_stream.tick import cell_store, incremental, levels, slots, tally, window_figures  # noqa: E402
from flexgate_stream.tick.aggregate import Agg  # noqa: E402
from workers import outbox  # noqa: E402

PARTS: list[tuple[Any, str, str]] = [
    (incremental.IncrementalAggregation, "_read_new", "read new rows"),
    (incremental, "fold_rows", "  fold rows"),
    (cell_store, "store_cells", "store cells"),
    (cell_store, "cell_params", "  cell parameters"),
    (incremental.IncrementalAggregation, "_apply", "count cells"),
    (tally.Tally, "advance", "  move windows"),
    (slots, "after", "slot cells after the end"),
    (incremental, "figures_of", "figures"),
    (Agg, "stats", "  Agg.stats"),
    (window_figures, "_members", "  members"),
    (window_figures, "_ranking", "  rankings"),
    (levels.Levels, "rest", "    rest"),
    (window_figures, "_group", "  groups"),
    (window_figures, "ranked", "  ranked"),
    (outbox.Outbox, "messages", "shape messages"),
    (bench_tick, "encode", "encode messages"),
]


class Clock:
    """Wall ms per part, per tick, while ``on``."""

    def __init__(self) -> None:
        self.on = False
        self.now: dict[str, float] = {}
        self.ticks: list[dict[str, float]] = []

    def wrap(self, owner: Any, name: str, label: str) -> None:
        """Time every call of ``owner.name`` under ``label``."""
        function = getattr(owner, name)

        @functools.wraps(function)
        def timed(*args: Any, **kwargs: Any) -> Any:
            if not self.on:
                return function(*args, **kwargs)
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.now[label] = self.now.get(label, 0.0) + (time.perf_counter() - started) * 1000

        setattr(owner, name, timed)

    def start(self) -> None:
        self.on, self.now = True, {}

    def stop(self) -> None:
        self.on = False
        self.ticks.append(self.now)


def main() -> None:
    """Seed, cold start, a few ticks to warm up, then the timed ticks; print the parts."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--paths", type=int, default=1000)
    parser.add_argument("--ticks", type=int, default=20)
    parser.add_argument("--new", type=int, default=10_000)
    args = parser.parse_args()
    args.cpu, args.no_collector, args.top = False, False, 20
    clock = Clock()
    for owner, name, label in PARTS:
        clock.wrap(owner, name, label)
    shape = profile_tick.shape

    def timed_shape(figures: Any, top: int) -> Any:
        try:
            return shape(figures, top)
        finally:
            clock.stop()

    base = Path(tempfile.mkdtemp(prefix="flexgate-phases-pg-"))
    base.chmod(0o755)  # the server runs as an unprivileged user when we are root
    server = PostgresServer(base / "data", log_file=base / "postgres.log").start()
    try:
        conn = psycopg2.connect(server.admin_url())
        end = datetime.fromtimestamp(time.time() // 5 * 5, UTC)
        seed(conn, args.rows, end, "demo", paths=args.paths)
        aggregation = bench_tick.cold_start(conn, end, 20)[0]
        profile_tick.ticks(conn, aggregation, end, argparse.Namespace(**{**vars(args), "ticks": 5}), None)
        tick = aggregation.tick

        def timed_tick(conn: Any, window_ends: list[datetime], index: bool = False) -> Any:
            if window_ends and not index:
                clock.start()
            return tick(conn, window_ends, index)

        aggregation.tick = timed_tick  # type: ignore[method-assign]
        profile_tick.shape = timed_shape
        totals = profile_tick.ticks(conn, aggregation, end + timedelta(seconds=25), args, None)
        conn.close()
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)
    report(totals, clock.ticks)


def report(totals: list[tuple[float, ...]], parts: list[dict[str, float]]) -> None:
    """Median ms per part, then the slowest ticks part by part."""
    print(f"tick median {statistics.median(t[0] for t in totals):.1f} ms (aggregation"
          f" {statistics.median(t[1] for t in totals):.1f}, shaping {statistics.median(t[2] for t in totals):.1f})")
    labels = [label for _o, _n, label in PARTS]
    for label in labels:
        print(f"  {statistics.median(p.get(label, 0.0) for p in parts):7.2f}  {label}")
    top = [label for label in labels if not label.startswith(" ")]
    print("slowest ticks, ms: total | " + " | ".join(top))
    for i in sorted(range(len(totals)), key=lambda i: -totals[i][0])[:5]:
        print(f"  {totals[i][0]:6.1f} | " + " | ".join(f"{parts[i].get(label, 0.0):5.1f}" for label in top))


if __name__ == "__main__":
    main()
