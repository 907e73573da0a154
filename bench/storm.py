"""The reconnect storm of bench/fanout_vs_nchan.py: every stream reconnects within 2 s (as after a deploy),
while /api/stream/stats and /healthz are polled and timed."""

from __future__ import annotations

import threading
import time

import requests

from bench.load_driver import Driver
from bench.servers import OurServer, cpu_seconds


class Prober(threading.Thread):
    """Polls an endpoint every 0.2 s and keeps the slowest answer (and any failure)."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.slowest = 0.0
        self.failures = 0
        self.count = 0
        self.stopping = threading.Event()

    def run(self) -> None:
        session = requests.Session()
        while not self.stopping.is_set():
            started = time.monotonic()
            try:
                ok = session.get(self.url, timeout=5).status_code < 500
            except requests.RequestException:
                ok = False
            self.slowest = max(self.slowest, time.monotonic() - started)
            self.failures += not ok
            self.count += 1
            self.stopping.wait(0.2)


def reconnect_storm(server: OurServer, streams: int, clients: int, open_rate: float) -> None:
    """Open ``streams``, then close and reopen them all within 2 s; print how long until all stream again."""
    assert server.web is not None
    driver = Driver(server.port, server.path, clients)
    try:
        opened, seconds, _ = driver.open(streams, streams / open_rate, 60)
        print(f"opened {opened}/{streams} streams in {seconds:.1f} s")
        probes = [Prober(server.web.url + "/api/stream/stats"), Prober(server.web.url + "/healthz")]
        for probe in probes:
            probe.start()
        cpu0 = cpu_seconds(server.pids())
        streaming, seconds, _ = driver.storm(2.0, 30)
        cpu = cpu_seconds(server.pids()) - cpu0
        time.sleep(1)
        for probe in probes:
            probe.stopping.set()
            probe.join(10)
        print(f"storm: {streaming}/{streams} streaming again {seconds:.1f} s after the first reconnect "
              f"(target: all within 10 s); server CPU {cpu:.1f} s")
        for probe in probes:
            print(f"  {probe.url.rsplit('/', 1)[1]}: slowest answer {probe.slowest * 1000:.0f} ms over "
                  f"{probe.count} polls, {probe.failures} failures (target: within 1 s)")
    finally:
        driver.close()
