"""What the web tier pays to answer a route outside the busiest: pages of the index and the lookup of one name.

    .venv/bin/python -m bench.bench_index_lookup [routes ...]   # default 1000 10000 50000

Starts nats-server and gunicorn (1 worker) on free ports; for each count publishes indexes of that many
routes (100 per page, as ``flexgate_stream.devstack.samples`` shapes them), then times from the client: one
page; the lookup of the last route after a new index (page 0 and its page of the last index) and again
(page 0 and its remembered page); the lookup of an untracked name after a new index (404: a scan of every
page), with the longest /healthz answer of the same worker meanwhile; and the worker's resident memory.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

from bench.stream_memory import rss_kib
from flexgate_stream.devstack.nats_client import NatsClient
from flexgate_stream.devstack.samples import sample_index_pages
from flexgate_stream.devstack.servers import NatsServer
from flexgate_stream.devstack.web_server import WebServer

PER_PAGE = 100
REPEATS = 30


def timed(url: str, status: int = 200, **params: str) -> float:
    """Milliseconds of one GET that must answer ``status``."""
    started = time.perf_counter()
    answer = requests.get(url, params=params, timeout=60)
    took = (time.perf_counter() - started) * 1000
    assert answer.status_code == status, answer.text[:200]
    return took


class Probe(threading.Thread):
    """GET /healthz of the same worker every 10 ms: the longest answer says how long the worker was blocked."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url, self.stop, self.longest = url, threading.Event(), 0.0

    def run(self) -> None:
        while not self.stop.wait(0.01):
            self.longest = max(self.longest, timed(self.url + "/healthz"))


def measure(client: NatsClient, web: WebServer, count: int) -> str:
    routes = {f"/shop/items/p-{i:08x}/reviews": 10 * count - i for i in range(count)}
    last = list(routes)[-1]
    timed(web.url + "/api/metrics/live", 404, route="/not/tracked")  # a first scan: names remembered
    hinted, scans, cached, pages, blocked = [], [], [], [], []
    for _ in range(5):  # each a new windowEnd
        client.publish_index(sample_index_pages("routes", routes, per_page=PER_PAGE))
        hinted.append(timed(web.url + "/api/metrics/live", route=last))  # on its page of the last index
        probe = Probe(web.url)
        probe.start()
        scans.append(timed(web.url + "/api/metrics/live", 404, route="/not/tracked"))  # only a scan proves it
        probe.stop.set()
        probe.join()
        blocked.append(probe.longest)
    for _ in range(REPEATS):
        cached.append(timed(web.url + "/api/metrics/live", route=last))
        pages.append(timed(web.url + "/api/metrics/routes", page=str(count // PER_PAGE // 2)))
    rss = rss_kib(web.worker_pids()[0]) / 1024
    med = statistics.median
    return (f"{count:>7,} routes {count // PER_PAGE:>4} pages | page {med(pages):5.1f} | lookup: next index "
            f"{med(hinted):5.1f}, same index {med(cached):5.1f}, untracked (scan) {med(scans):7.1f} | "
            f"longest /healthz during a scan {max(blocked):5.1f} | worker RSS {rss:5.1f} MiB")


def main(counts: list[int]) -> None:
    folder = Path(tempfile.mkdtemp(prefix="flexgate-bench-"))
    nats = NatsServer(folder / "nats").start()
    client = NatsClient(nats.url)
    web = WebServer(nats.url, folder / "web", workers=1).start()
    try:
        print(f"ms, medians of {REPEATS} requests (5 for those after a new index); 1 gunicorn worker; "
              f"load average {os.getloadavg()[0]:.1f}")
        for count in counts:
            print(measure(client, web, count), flush=True)
    finally:
        web.stop()
        client.close()
        nats.stop()


if __name__ == "__main__":
    main([int(arg) for arg in sys.argv[1:]] or [1000, 10_000, 50_000])
