"""A gevent process with one Bridge, as a gunicorn worker has, probing JetStream as /api/stream/stats does while
many greenlets are runnable (as in a reconnect storm): run by test_bridge_busy.py.

Arguments: the NATS URL, how many busy greenlets, and how long each works per turn (ms). Once connected, prints one
JSON line per probe: {"seconds": how long it took, "passes": turns of the busy greenlets meanwhile, "error": why
it failed, or null}; then {"hang": true}, waits for a line on stdin (the test stops NATS meanwhile), probes once
more and prints its line; then exits.
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import gevent  # noqa: E402
from gevent.fileobject import FileObject  # noqa: E402

from flexgate_stream.errors import NatsUnavailable  # noqa: E402
from flexgate_stream.fanout import jetstream_api  # noqa: E402
from flexgate_stream.fanout.bridge import Bridge  # noqa: E402
from flexgate_stream.fanout.hub import StreamHub  # noqa: E402
from flexgate_stream.settings import Settings  # noqa: E402
from flexgate_stream.web.extension import PROBE_TIMEOUT  # noqa: E402

PROBES = 5
passes = 0


def busy(index: int, work: float) -> None:
    """One runnable greenlet: works ``work`` seconds, gives way, again (as an opening stream does)."""
    global passes
    while True:
        until = time.perf_counter() + work
        while time.perf_counter() < until:
            pass
        if index == 0:
            passes += 1
        gevent.sleep(0)


def probe(bridge: Bridge) -> None:
    """One probe as /api/stream/stats makes it, and its line."""
    began, before = time.monotonic(), passes
    error = None
    try:
        bridge.call(jetstream_api.overview, timeout=PROBE_TIMEOUT)
    except NatsUnavailable as exc:
        error = str(exc)
    print(json.dumps({"seconds": round(time.monotonic() - began, 3), "passes": passes - before, "error": error}),
          flush=True)


def main(url: str, count: int, work_ms: float) -> None:
    bridge = Bridge(Settings(nats_servers=(url,)), StreamHub(16, 100))
    bridge.start()
    deadline = time.monotonic() + 20
    while not bridge.connected and time.monotonic() < deadline:
        gevent.sleep(0.05)
    bridge.call(jetstream_api.overview, timeout=5)  # the first request also sets up nats-py's reply inbox
    workers = [gevent.spawn(busy, i, work_ms / 1000) for i in range(count)]
    gevent.sleep(0.5)
    for _ in range(PROBES):
        probe(bridge)
    print(json.dumps({"hang": True}), flush=True)
    FileObject(sys.stdin.fileno(), "r", close=False).readline()
    probe(bridge)
    gevent.killall(workers)
    bridge.stop()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]))
