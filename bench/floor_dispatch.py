"""Flask's dispatch of a stream request in a worker opening thousands of streams, and in one idle process.

    .venv/bin/python -m bench.floor_dispatch --streams 10000          # gunicorn and Flask as they come
    .venv/bin/python -m bench.floor_dispatch --streams 10000 --gc     # the collector set as our workers set it

Starts the floor (bench/floor_app.py with FLOOR_TIMING=1), opens the streams (1,000 a second unless told) with the load
client of bench/fanout_vs_nchan.py, then asks each worker for its requests' dispatch time (``app.wsgi_app``, in
thread CPU time, which the collector's runs inside it are part of). Then times the same dispatch of the same
request in this process, with nothing else running: back to back (the processor's caches hold Flask's code and
data from the dispatch before), after a pause (the processor idles or runs others meanwhile), and after copying
a buffer larger than the caches between dispatches.
"""

from __future__ import annotations

import argparse
import gc
import http.client
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from werkzeug.test import EnvironBuilder

from bench.fanout_vs_nchan import raise_open_files
from bench.floor_app import YOUNG_COLLECTION_AFTER, create_app
from bench.load_driver import Driver
from bench.servers import FloorServer, cpu_seconds

HEADERS = {"Host": "127.0.0.1", "Accept": "text/event-stream", "Cache-Control": "no-cache"}


def worker_totals(port: int, workers: int) -> list[dict[str, Any]]:
    """``/timing`` of every worker (each answer comes from whichever worker accepted the connection)."""
    found: dict[int, dict[str, Any]] = {}
    for _ in range(200):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", "/timing")
        body = json.loads(conn.getresponse().read())
        conn.close()
        found[body["worker"]] = body
        if len(found) == workers:
            break
    return list(found.values())


def in_worker(streams: int, tuned: bool, rate: float) -> None:
    env = {"FLOOR_TIMING": "1", **({"FLOOR_GC": "tuned"} if tuned else {})}
    server = FloorServer(Path(tempfile.mkdtemp(prefix="flexgate-floor-")), streams, 2, env)
    server.start()
    driver = Driver(server.port, server.path, 2)
    try:
        cpu0 = cpu_seconds(server.pids())
        opened = driver.open(streams, streams / rate, 60)[0]
        time.sleep(2)
        cpu = cpu_seconds(server.pids()) - cpu0
        totals = worker_totals(server.port, 2)
    finally:
        driver.close()
        server.stop()
    print(f"floor{' (collector tuned)' if tuned else ''}: {opened} streams opened, server CPU {cpu:.2f} s "
          f"({1e6 * cpu / max(1, opened):.0f} µs a stream)")
    for t in totals:
        n = max(1, t["requests"])
        print(f"  worker {t['worker']}: {t['requests']} dispatches, {t['cpu_ns'] / n / 1e3:.1f} µs each "
              f"({(t['cpu_ns'] - t['gc_ns']) / n / 1e3:.1f} µs without the collector's runs inside, "
              f"which {t['with_gc']} of them had); the collector in all: {t['gc_total_ns'] / n / 1e3:.1f} µs "
              f"per stream")


def in_process(tuned: bool) -> None:
    app = create_app()
    if tuned:
        gc.freeze()
        gc.set_threshold(YOUNG_COLLECTION_AFTER, *gc.get_threshold()[1:])
    environ = EnvironBuilder(path="/sub", headers=HEADERS).get_environ()
    print("one idle process, the same dispatch:")
    for label, count, between in (("back to back", 20000, lambda: None),
                                  ("after a 1 ms pause", 1000, lambda: time.sleep(0.001)),
                                  ("after a 10 ms pause", 300, lambda: time.sleep(0.01)),
                                  ("after copying 16 MiB", 1000, copier(16)),
                                  ("after copying 64 MiB", 300, copier(64))):
        took = []
        for _ in range(count):
            between()
            env = dict(environ)
            t0 = time.thread_time_ns()
            body = app.wsgi_app(env, lambda status, headers, exc_info=None: None)
            took.append(time.thread_time_ns() - t0)
            body.close()  # type: ignore[attr-defined]
        took.sort()
        print(f"  {label:22} mean {sum(took) / count / 1e3:6.1f} µs, median {took[count // 2] / 1e3:6.1f} µs "
              f"({count} dispatches)")


def copier(mib: int) -> Callable[[], None]:
    """Copies a buffer of ``mib`` MiB (more than the processor's caches hold) each time it is called."""
    source, target = bytearray(mib << 20), bytearray(mib << 20)

    def copy() -> None:
        target[:] = source

    return copy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=10000)
    parser.add_argument("--gc", action="store_true", help="the collector set as our workers set it")
    parser.add_argument("--open-rate", type=float, default=1000.0, help="streams opened per second")
    args = parser.parse_args()
    raise_open_files()
    in_worker(args.streams, args.gc, args.open_rate)
    in_process(args.gc)


if __name__ == "__main__":
    main()
