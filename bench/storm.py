"""The reconnect storm of bench/fanout_vs_nchan.py: every stream reconnecting within 2 s (optionally after a
deploy: gunicorn reloading its workers with SIGHUP, the old workers ending their streams once the new ones
serve), while /api/stream/stats and /healthz are polled and timed throughout, the reload included."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from pathlib import Path

import requests

from bench.load_driver import Driver
from bench.servers import OurServer


class Prober(threading.Thread):
    """Polls an endpoint every 0.2 s; keeps the slowest answer, counts answers by status, keeps the reasons of
    refusals."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.slowest = 0.0
        self.statuses: Counter[str] = Counter()
        self.reasons: Counter[str] = Counter()
        self.workers: set[str] = set()
        self.slow: list[tuple[float, str, bool]] = []  # over 0.5 s: seconds, worker, its first answer here?
        self.stopping = threading.Event()

    def run(self) -> None:
        session = requests.Session()
        while not self.stopping.is_set():
            started = time.monotonic()
            try:
                answer = session.get(self.url, timeout=5)
                status = str(answer.status_code)
                if answer.status_code != 200:
                    self.reasons[_reason(answer)] += 1
                worker = answer.headers.get("X-Flexgate-Worker", "?")
                if time.monotonic() - started > 0.5:
                    self.slow.append((time.monotonic() - started, worker, worker not in self.workers))
                self.workers.add(worker)
            except requests.RequestException as exc:
                status = type(exc).__name__
            self.slowest = max(self.slowest, time.monotonic() - started)
            self.statuses[status] += 1
            self.stopping.wait(0.2)


def _reason(answer: requests.Response) -> str:
    """Why an endpoint refused: its JSON error, else the start of its body."""
    try:
        body = answer.json()
        return str(body.get("error") or body.get("reason") or body)[:200]
    except ValueError:
        return answer.text[:200]


class Ticker(threading.Thread):
    """Publishes a snapshot every second, as the publisher would, so the stream stays fresh."""

    def __init__(self, server: OurServer) -> None:
        super().__init__(daemon=True)
        self.server = server
        self.stopping = threading.Event()

    def run(self) -> None:
        n = 0
        while not self.stopping.wait(1.0):
            n += 1
            self.server.publish("tick", n)


def cpu_with_children(pid: int) -> float:
    """CPU seconds of ``pid`` and of its children that have exited (a reloaded worker's)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def reconnect_storm(server: OurServer, streams: int, clients: int, open_rate: float, deploy: bool) -> None:
    """Open ``streams``; then (with ``deploy``, after reloading the workers) every client reconnects within 2 s."""
    assert server.web is not None
    ticker = Ticker(server)
    ticker.start()
    driver = Driver(server.port, server.path, clients)
    probes = [Prober(server.web.url + "/api/stream/stats"), Prober(server.web.url + "/healthz")]
    try:
        opened, seconds, refused, failed = driver.open(streams, streams / open_rate, 60)
        print(f"opened {opened}/{streams} streams at {open_rate:g}/s; the last began {seconds:.1f} s after the "
              f"first ({refused} refused, {failed} failed)")
        old = server.web.worker_pids()
        for probe in probes:
            probe.start()
        live = sum(cpu_with_children(p) for p in old)
        cpu0 = cpu_with_children(server.web.pid) + live
        if deploy:
            hup = time.monotonic()
            os.kill(server.web.pid, signal.SIGHUP)  # new workers start; the old ones end their streams once they serve
            while any(Path(f"/proc/{pid}").exists() for pid in old) and time.monotonic() < hup + 30:
                time.sleep(0.05)
            print(f"reload: the old workers ended their streams and exited {time.monotonic() - hup:.1f} s after SIGHUP")
        streaming, seconds, refused, failed = driver.storm(2.0, 30)
        time.sleep(1)
        new = server.web.worker_pids()
        cpu = cpu_with_children(server.web.pid) + sum(cpu_with_children(p) for p in new) - cpu0
        what = "workers reloaded, then every" if deploy else "every"  # as the ended streams' clients do
        print(f"storm ({what} client reconnects within 2 s): {streaming}/{streams} streaming, "
              f"the last began {seconds:.1f} s after the first reconnect (target: all within 10 s); "
              f"{refused} refused, {failed} failed; server CPU {cpu:.1f} s")
    finally:
        for probe in probes:
            probe.stopping.set()
        ticker.stopping.set()
        driver.close()
    for probe in probes:
        print(f"  {probe.url.rsplit('/', 1)[1]}: slowest answer {probe.slowest * 1000:.0f} ms "
              f"(target: within 1 s); answers {dict(probe.statuses)}")
        for reason, count in probe.reasons.items():
            print(f"    {count} refused: {reason}")
        for seconds, worker, first in probe.slow:
            print(f"    {seconds * 1000:.0f} ms from worker {worker}{' (its first answer)' if first else ''}")
