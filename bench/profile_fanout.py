"""Where one web worker's CPU goes while its streams receive snapshots: py-spy on a gunicorn gevent worker.

    .venv/bin/pip install py-spy                          # once; not a dependency of the service
    .venv/bin/python -m bench.profile_fanout --streams 5000

The web tier as bench.fanout_vs_nchan starts it (2 gevent workers, their own nats-server), the same load
client opening the streams, then MESSAGES snapshots of ~2 KB at RATE/s while ``py-spy record`` samples one
worker 200 times a second. Prints the functions with the most samples, on their own and with what they
call (idle samples are left out by py-spy), and how many deliveries were made.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from bench import load_client
from bench.fanout_vs_nchan import publish_paced, raise_open_files
from bench.load_driver import Driver
from bench.servers import OurServer

MESSAGES = 60
RATE = 2.0
TOP = 12


def py_spy() -> str:
    """The py-spy next to this Python, or on PATH."""
    found = Path(sys.executable).with_name("py-spy")
    if found.exists():
        return str(found)
    on_path = shutil.which("py-spy")
    if on_path is None:
        raise SystemExit("py-spy is not installed: run `.venv/bin/pip install py-spy` first.")
    return on_path


def record(streams: int, clients: int, out: Path) -> tuple[int, int]:
    """Profile one worker while ``streams`` receive MESSAGES snapshots; (deliveries made, deliveries due)."""
    server = OurServer(out.parent / "ours", streams)
    server.start()
    try:
        server.publish("warm", 0)  # a newest snapshot exists, as in production
        driver = Driver(server.port, server.path, clients)
        try:
            driver.open(streams, streams / 1000, 60)
            time.sleep(2)  # let the opening burst settle
            assert server.web is not None
            worker = server.web.worker_pids()[0]
            driver.start_measure("profile", MESSAGES, MESSAGES / RATE + 30)
            time.sleep(0.5)
            spy = subprocess.Popen([py_spy(), "record", "-r", "200", "-f", "raw", "-o", str(out), "-p", str(worker),
                                    "-d", str(int(MESSAGES / RATE) + 2)], stdout=subprocess.DEVNULL)
            publish_paced(server, "profile", MESSAGES, RATE)
            spy.wait()
            result = driver.finish_measure()
        finally:
            driver.close()
    finally:
        server.stop()
    return int(result["delivered"]), streams * MESSAGES


def top(raw: Path) -> tuple[int, list[tuple[str, int]], list[tuple[str, int]]]:
    """Samples in py-spy's raw (collapsed) output: the total, the most frequent innermost frames, and the frames
    most often on the stack."""
    own: Counter[str] = Counter()
    within: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        frames, samples = stack.split(";"), int(count)
        total += samples
        own[frames[-1]] += samples
        for frame in set(frames):
            within[frame] += samples
    return total, own.most_common(TOP), within.most_common(TOP * 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=5000)
    parser.add_argument("--clients", type=int, default=2, help="load client processes")
    args = parser.parse_args()
    py_spy()
    raise_open_files()
    load_client.ensure_timestamps()
    raw = Path(tempfile.mkdtemp(prefix="flexgate-profile-")) / "worker.txt"
    delivered, due = record(args.streams, args.clients, raw)
    total, own, within = top(raw)
    print(f"{args.streams} streams (about half on the profiled worker), {MESSAGES} snapshots at {RATE:g}/s: "
          f"{delivered} of {due} deliveries made; {total} samples")
    print("\non their own:")
    for frame, samples in own:
        print(f"{100 * samples / max(1, total):6.1f} %  {frame}")
    print("\nwith what they call:")
    for frame, samples in within:
        print(f"{100 * samples / max(1, total):6.1f} %  {frame}")
    print(f"\nraw samples: {raw}")


if __name__ == "__main__":
    main()
