"""Where one web worker's CPU goes while streams open: py-spy on a gunicorn gevent worker, in a ramp and a storm.

    .venv/bin/pip install py-spy                          # once; not a dependency of the service
    .venv/bin/python -m bench.profile_connect --streams 10000
    .venv/bin/python -m bench.profile_connect --streams 10000 --floor   # the floor's worker (bench/floor_app.py), ramp

The web tier as bench.fanout_vs_nchan starts it (2 gevent workers, their own nats-server, a newest snapshot
stored), ``py-spy record`` sampling one worker 250 times a second: first while the load client opens the streams
at ``--open-rate`` (the ramp), then while every client closes its stream and reconnects within 2 s (the storm;
a snapshot is published every second, so the server notices the closed streams as in bench.storm).
Each sample is put in one part of the connect path by the deepest frame on its stack that names one (PARTS);
idle samples are left out by py-spy. Prints, for each phase, the worker's CPU seconds and the share of each part.
``--floor`` profiles the ramp on a worker of the floor (gunicorn and Flask alone, the collector set as ours), with
the same parts: what the design costs without our code, part by part.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path

from bench import load_client
from bench.fanout_vs_nchan import raise_open_files
from bench.load_driver import Driver
from bench.profile_fanout import py_spy
from bench.servers import FloorServer, OurServer, cpu_seconds
from bench.storm import Ticker

RATE = 250  # samples a second

# (part, substrings of a py-spy frame "function (path:line)"): a sample belongs to the part of the deepest frame
# on its stack that matches one; parts listed later win over earlier ones at the same frame.
PARTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("accept, greenlet spawn, close", ("gevent/baseserver.py", "gevent/server.py", "gevent/pool.py",
                                       "ggevent.py", "gunicorn/workers/base_async.py")),
    ("gunicorn parsing (request, environ)", ("gunicorn/http/message.py", "gunicorn/http/parser.py",
                                             "gunicorn/http/unreader.py", "gunicorn/http/body.py",
                                             "create (gunicorn/http/wsgi.py")),
    ("Flask dispatch and hooks", ("flask/", "werkzeug/")),
    ("auth and CORS", ("flexgate_stream/web/auth.py",)),
    ("stream view, parameters", ("flexgate_stream/web/sse_views.py", "flexgate_stream/web/params.py")),
    ("admission (hub, writer, socket options)", ("admit (flexgate_stream/web/extension.py",
                                                 "flexgate_stream/fanout/hub.py", "bound_writes",
                                                 "__init__ (flexgate_stream/fanout/client_stream.py",
                                                 "_start (flexgate_stream/fanout/client_stream.py",
                                                 "attach (flexgate_stream/web/extension.py")),
    ("headers and first frames", ("send_headers", "write (gunicorn/http/wsgi.py", "_write_stream",
                                  "_opening (flexgate_stream/fanout/client_stream.py",
                                  "_frames (flexgate_stream/fanout/client_stream.py")),
    ("newest snapshot lookup", ("flexgate_stream/fanout/catch_up.py", "flexgate_stream/fanout/newest.py",
                                "call (flexgate_stream/fanout/bridge.py", "jetstream_api.py", "nats/",
                                "asyncio/")),
    ("socket duplication, rest", ("hold (flexgate_stream/fanout/stream_writer.py",
                                  "flexgate_stream/server/resting.py", "rest (flexgate_stream/fanout/client_stream.py",
                                  "rest (flexgate_stream/fanout/channel.py")),
    ("access log", ("gunicorn/glogging.py", "flexgate_stream/server/http_edge.py", "logging/",
                    "flexgate_stream/logs.py")),
    ("snapshots to open streams (channel)", ("publish (flexgate_stream/fanout/channel.py",
                                             "_deliver (flexgate_stream/fanout/channel.py")),
)
OTHER = "gevent hub loop, other"


def part_of(frames: list[str]) -> str:
    """The part of the connect path a sample (its frames, outermost first) belongs to."""
    for frame in reversed(frames):
        found = None
        for part, marks in PARTS:
            if any(mark in frame for mark in marks):
                found = part
        if found is not None:
            return found
    return OTHER


def breakdown(raw: Path) -> tuple[int, Counter[str]]:
    """Samples in py-spy's raw (collapsed) output, and how many fell in each part."""
    parts: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        samples = int(count)
        total += samples
        parts[part_of(stack.split(";"))] += samples
    return total, parts


def spy(worker: int, seconds: float, out: Path) -> subprocess.Popen[bytes]:
    # --gil: only samples holding the GIL, so a send's wait for the scheduler (the receiving client wakes on the
    # same cores) is not counted as work; system time is reported apart by /proc.
    command = [py_spy(), "record", "--gil", "-r", str(RATE), "-f", "raw", "-o", str(out), "-p", str(worker),
               "-d", str(max(1, round(seconds)))]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def show(phase: str, raw: Path, cpu: float, streams: str) -> None:
    total, parts = breakdown(raw)
    print(f"\n{phase}: {streams}; profiled worker {cpu:.2f} s CPU, {total} samples")
    for part, samples in parts.most_common():
        print(f"{100 * samples / max(1, total):6.1f} %  {part}")
    print(f"raw samples: {raw}")


def ramp(driver: Driver, worker: int, args: argparse.Namespace, out: Path) -> None:
    """Open the streams at ``--open-rate`` while py-spy samples ``worker``; print the breakdown."""
    ramp_s = args.streams / args.open_rate
    cpu0, proc = cpu_seconds([worker]), spy(worker, ramp_s + 2, out / "ramp.txt")
    opened, seconds, _, _ = driver.open(args.streams, ramp_s, 60)
    proc.wait()
    show("ramp", out / "ramp.txt", cpu_seconds([worker]) - cpu0,
         f"{opened} streams opened at {args.open_rate:g}/s, the last {seconds:.1f} s after the first")


def floor_ramp(args: argparse.Namespace, out: Path) -> None:
    server = FloorServer(out / "floor", args.streams, 2, {"FLOOR_GC": "tuned"}, "floor+gc")
    server.start()
    try:
        time.sleep(0.5)
        driver = Driver(server.port, server.path, args.clients)
        try:
            ramp(driver, server.pids()[1], args, out)
        finally:
            driver.close()
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=10000)
    parser.add_argument("--clients", type=int, default=2, help="load client processes")
    parser.add_argument("--open-rate", type=float, default=1000.0, help="streams opened per second in the ramp")
    parser.add_argument("--floor", action="store_true", help="profile the floor's worker (bench/floor_app.py)")
    args = parser.parse_args()
    py_spy()
    raise_open_files()
    load_client.ensure_timestamps()
    out = Path(tempfile.mkdtemp(prefix="flexgate-connect-"))
    if args.floor:
        floor_ramp(args, out)
        return
    server = OurServer(out / "ours", args.streams)
    server.start()
    try:
        server.publish("warm", 0)  # a newest snapshot exists, as in production
        time.sleep(0.5)
        assert server.web is not None
        worker = server.web.worker_pids()[0]
        driver = Driver(server.port, server.path, args.clients)
        try:
            ramp(driver, worker, args, out)
            time.sleep(1)
            ticker = Ticker(server)  # as in bench.storm: a snapshot a second, so the ended streams are noticed
            ticker.start()
            cpu0, proc = cpu_seconds([worker]), spy(worker, 6, out / "storm.txt")
            streaming, seconds, _, _ = driver.storm(2.0, 30)
            proc.wait()
            ticker.stopping.set()
            show("storm", out / "storm.txt", cpu_seconds([worker]) - cpu0,
                 f"{streaming} streams reconnected within 2 s, the last began {seconds:.1f} s after the first")
        finally:
            driver.close()
    finally:
        server.stop()


if __name__ == "__main__":
    main()
