"""Fan-out side by side: the web tier (gunicorn, 2 gevent workers) against nginx + Nchan (2 worker processes).

    .venv/bin/python -m bench.fanout_vs_nchan --setup          # as root: apt-get install nginx-light libnginx-mod-nchan
    .venv/bin/python -m bench.fanout_vs_nchan --streams 1000 5000 10000
    .venv/bin/python -m bench.fanout_vs_nchan --storm 10000    # reconnect storm against the web tier
    .venv/bin/python -m bench.fanout_vs_nchan --storm 10000 --deploy   # the same right after a worker reload
    .venv/bin/python -m bench.fanout_vs_nchan --streams 10000 --floor  # and the floor: gunicorn and Flask alone

For each stream count, each server in turn is started fresh on a free loopback port (ours with its own
nats-server), the same load client (bench/load_client.py, in separate processes) opens the streams, and
30 messages of ~2 KB are published at 2/s (ours through JetStream ``metrics.summary``, Nchan through its
publisher endpoint). Latency is kernel receive time minus the publish time written in the message.
Server CPU is read from /proc for the server processes (nats-server is reported apart), memory per stream
is the RSS the streams added divided by their number.

``--floor`` adds a third server, measured in the same run: the design with none of our code (bench/floor_app.py,
bench/floor_gunicorn.conf.py: gunicorn's stock gevent worker, 2 workers configured as conf/gunicorn.conf.py, a
minimal Flask view whose generator sends one small frame and then waits until the worker stops), twice: as
gunicorn and Flask come ("floor"), and with the cyclic collector set as our workers set it ("floor+gc", a
setting anyone may make). Only their opening is measured (server CPU to open the streams, memory per stream):
they deliver nothing. Ours minus a floor is what our own code adds to an opening; a floor over Nchan is what the
design costs at the least.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import tempfile
import time
from pathlib import Path

from bench import load_client
from bench.load_driver import Driver
from bench.servers import FloorServer, NchanServer, OurServer, cpu_seconds, rss_kib

Server = NchanServer | OurServer | FloorServer

FLOORS = {"floor": {}, "floor+gc": {"FLOOR_GC": "tuned"}}  # --floor: gunicorn and Flask alone (bench/floor_app.py)
MESSAGES = 30
RATE = 2.0


def raise_open_files() -> int:
    """Raise this process's (and so its children's) open-file soft limit to the hard limit."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def setup() -> None:
    """Install Debian's nginx and its Nchan module (needs root and the Debian mirror)."""
    if os.geteuid() != 0:
        raise SystemExit("--setup installs Debian packages: run it as root, or run "
                         "`apt-get install -y nginx-light libnginx-mod-nchan` yourself.")
    subprocess.run(["apt-get", "update", "-qq"], check=True)
    subprocess.run(["apt-get", "install", "-y", "-qq", "nginx-light", "libnginx-mod-nchan"], check=True,
                   env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})


def percentile(values: list[float], share: float) -> float:
    return values[min(len(values) - 1, int(len(values) * share))] if values else float("nan")


def publish_paced(server: Server, run: str, count: int, rate: float) -> None:
    """Publish messages 1..``count`` of ``run`` at ``rate`` per second, each on its own schedule (no drift)."""
    start = time.monotonic()
    for n in range(1, count + 1):
        while time.monotonic() < start + (n - 1) / rate:
            time.sleep(0.002)
        server.publish(run, n)


def open_streams(server: Server, driver: Driver, streams: int, open_rate: float) -> tuple[int, float, float, int, int]:
    """Open ``streams`` at ``open_rate`` a second; return how many opened, in how long, the server CPU that took
    (the burst's aftermath included) and the server's RSS in KiB before and after."""
    pids = server.pids()
    rss0 = sum(rss_kib(p) for p in pids)
    cpu0 = cpu_seconds(pids)
    opened, open_seconds, _, _ = driver.open(streams, streams / open_rate, 60)
    time.sleep(2)  # let the server settle after the opening burst
    open_cpu = cpu_seconds(pids) - cpu0
    return opened, open_seconds, open_cpu, rss0, sum(rss_kib(p) for p in server.pids())


def open_only(server: FloorServer, streams: int, clients: int, open_rate: float) -> dict[str, float]:
    """Open ``streams`` on the floor and return the server CPU and memory that took."""
    time.sleep(0.5)
    driver = Driver(server.port, server.path, clients)
    try:
        opened, open_seconds, open_cpu, rss0, rss1 = open_streams(server, driver, streams, open_rate)
    finally:
        driver.close()
    return {"streams": streams, "opened": opened, "open_s": open_seconds, "open_cpu": open_cpu,
            "kib": (rss1 - rss0) / max(1, opened)}


def run_one(server: Server, streams: int, clients: int, open_rate: float) -> dict[str, float]:
    """Open ``streams`` on ``server``, publish MESSAGES at RATE, and return what was measured."""
    server.publish("warm", 0)  # as in production, a newest snapshot exists for new clients to get at once
    time.sleep(0.5)
    driver = Driver(server.port, server.path, clients)
    try:
        opened, open_seconds, open_cpu, rss0, rss1 = open_streams(server, driver, streams, open_rate)
        pids = server.pids()
        run = f"r{streams}{server.name}{int(time.time())}"
        driver.start_measure(run, MESSAGES, MESSAGES / RATE + 30)
        time.sleep(0.5)
        cpu0, aux0 = cpu_seconds(pids), server.aux_cpu()
        publish_paced(server, run, MESSAGES, RATE)
        result = driver.finish_measure()
        cpu = cpu_seconds(pids) - cpu0
        aux = server.aux_cpu() - aux0
    finally:
        driver.close()
    lat = sorted(v / 1e6 for v in result["latencies"])
    delivered = result["delivered"]
    return {"streams": streams, "opened": opened, "open_s": open_seconds, "p50": percentile(lat, 0.5),
            "p99": percentile(lat, 0.99), "max": lat[-1] if lat else float("nan"),
            "delivered": delivered, "delivery": 100.0 * delivered / (streams * MESSAGES),
            "out_of_order": result["out_of_order"],
            "cpu_us": 1e6 * cpu / max(1, delivered), "aux_us": 1e6 * aux / max(1, delivered),
            "kib": (rss1 - rss0) / max(1, opened), "open_cpu": open_cpu, "client_cpu": result["client_cpu"],
            "client_s": result["seconds"]}


def report_floor(results: dict[str, dict[str, float]]) -> None:
    """Server CPU to open the streams: Nchan, the floors and ours, in seconds and µs per stream."""
    print("server CPU to open the streams (µs per stream opened):")
    nchan_us = 1e6 * results["nchan"]["open_cpu"] / max(1, results["nchan"]["opened"])
    ours_us = 1e6 * results["ours"]["open_cpu"] / max(1, results["ours"]["opened"])
    for name in ("nchan", *FLOORS, "ours"):
        r = results[name]
        us = 1e6 * r["open_cpu"] / max(1, r["opened"])
        print(f"  {name:9} {r['open_cpu']:6.2f} s  {us:7.1f} µs  {us / max(0.01, nchan_us):5.1f}x Nchan  "
              f"({r['opened']:.0f} opened in {r['open_s']:.1f} s, {r['kib']:.1f} KiB per stream)"
              + (f"  ours minus it: {ours_us - us:.1f} µs" if name in FLOORS else ""))


def report(ours: dict[str, float], nchan: dict[str, float]) -> None:
    n = int(ours["streams"])
    print(f"\n{n} streams, {MESSAGES} messages of ~2 KB at {RATE:g}/s")
    print(f"{'':8} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'CPU us/event':>13} {'KiB/stream':>11} "
          f"{'delivered':>10} {'open s':>7} {'open CPU s':>10}")
    for name, r in (("nchan", nchan), ("ours", ours)):
        print(f"{name:8} {r['p50']:8.1f} {r['p99']:8.1f} {r['max']:8.1f} {r['cpu_us']:13.1f} {r['kib']:11.1f} "
              f"{r['delivery']:9.2f}% {r['open_s']:7.1f} {r['open_cpu']:10.1f}")
    print(f"ratio ours/nchan: p50 {ours['p50'] / nchan['p50']:.2f}x, p99 {ours['p99'] / nchan['p99']:.2f}x, "
          f"CPU/event {ours['cpu_us'] / nchan['cpu_us']:.2f}x, memory/stream {ours['kib'] / nchan['kib']:.2f}x, "
          f"CPU to open the streams {ours['open_cpu'] / max(0.01, nchan['open_cpu']):.1f}x")
    print(f"(ours: nats-server {ours['aux_us']:.1f} us/event besides; out of order: ours {ours['out_of_order']:.0f}, "
          f"nchan {nchan['out_of_order']:.0f}; load client CPU: ours {ours['client_cpu']:.1f} s, "
          f"nchan {nchan['client_cpu']:.1f} s over {ours['client_s']:.0f} / {nchan['client_s']:.0f} s)")


def compare(args: argparse.Namespace) -> None:
    base = Path(tempfile.mkdtemp(prefix="flexgate-fanout-"))
    print(f"load average before: {os.getloadavg()}")
    for streams in args.streams:
        results = {}
        for kind in [*args.order, *(FLOORS if args.floor else [])]:
            server: Server = (NchanServer(base / f"nchan{streams}") if kind == "nchan"
                              else OurServer(base / f"ours{streams}", streams, args.workers) if kind == "ours"
                              else FloorServer(base / f"{kind}{streams}", streams, args.workers, FLOORS[kind], kind))
            server.start()
            try:
                if isinstance(server, FloorServer):
                    results[kind] = open_only(server, streams, args.clients, args.open_rate)
                else:
                    results[kind] = run_one(server, streams, args.clients, args.open_rate)
            finally:
                server.stop()
        report(results["ours"], results["nchan"])
        if args.floor:
            report_floor(results)
    print(f"load average after: {os.getloadavg()}")


def storm(args: argparse.Namespace) -> None:
    """Open ``--storm`` streams on the web tier, then have them all reconnect within 2 s."""
    from bench.storm import reconnect_storm

    base = Path(tempfile.mkdtemp(prefix="flexgate-storm-"))
    server = OurServer(base / "ours", args.storm, args.workers)
    server.start()
    try:
        reconnect_storm(server, args.storm, args.clients, args.open_rate, args.deploy)
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setup", action="store_true", help="install nginx-light and libnginx-mod-nchan (root)")
    parser.add_argument("--streams", type=int, nargs="+", default=[1000, 5000, 10000])
    parser.add_argument("--clients", type=int, default=2, help="load client processes")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers of ours (Nchan keeps 2)")
    parser.add_argument("--open-rate", type=float, default=1000.0, help="streams opened per second")
    parser.add_argument("--order", nargs=2, default=["nchan", "ours"], choices=["nchan", "ours"])
    parser.add_argument("--floor", action="store_true",
                        help="also open the streams on gunicorn and Flask alone (bench/floor_app.py)")
    parser.add_argument("--storm", type=int, default=0, help="reconnect storm of this many streams (ours)")
    parser.add_argument("--deploy", action="store_true", help="with --storm: reload the workers (SIGHUP) first")
    args = parser.parse_args()
    if args.setup:
        setup()
        return
    if not NchanServer.available() and not args.storm:
        raise SystemExit("nginx with the Nchan module is not installed: run with --setup (as root).")
    raise_open_files()
    load_client.ensure_timestamps()
    if args.storm:
        storm(args)
    else:
        compare(args)


if __name__ == "__main__":
    main()
