"""Clients that never read, at the default settings: the kernel memory their sockets pin, and when they are dropped.

    .venv/bin/python -m bench.stalled_clients [--clients 1000] [--snapshot-bytes 13500] [--tick 5]

Starts nats-server and gunicorn (1 worker, the default FLEXGATE_SEND_TIMEOUT and FLEXGATE_SEND_BUFFER) on free
ports, opens ``clients`` raw HTTP/1.1 streams that never read a byte, publishes a summary snapshot of about
``snapshot-bytes`` every ``tick`` seconds (13.5 KB every 5 s is the ~2.7 KB/s a demo stream carries), and prints
each tick the server side's send queues as ``ss -tm`` reads them (bytes queued, skmem w, tb), until every
stream is dropped or ``--max-seconds`` pass.
"""

from __future__ import annotations

import argparse
import re
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import requests

from flexgate_stream.devstack.nats_client import NatsClient
from flexgate_stream.devstack.samples import sample_snapshot
from flexgate_stream.devstack.servers import NatsServer
from flexgate_stream.devstack.web_server import WebServer
from flexgate_stream.messages import encode

SOCKET = re.compile(r"^\d+\s+(\d+)\s+\S+\s+\S+\s+skmem:\(\S*?,tb(\d+),\S*?,w(\d+),", re.M)


def send_queues(port: int) -> list[tuple[int, int, int]]:
    """(Send-Q, tb, w) of every established connection the server on ``port`` holds."""
    out = subprocess.run(["ss", "-tmnH", "state", "established", f"( sport = :{port} )"],
                         capture_output=True, text=True, check=True).stdout
    return [(int(q), int(tb), int(w)) for q, tb, w in SOCKET.findall(out.replace("\n\t", ""))]


def open_streams(port: int, count: int) -> list[socket.socket]:
    """``count`` streams whose clients send the request and never read."""
    socks = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(b"GET /api/stream/metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n")
        socks.append(sock)
    return socks


def open_in_worker(url: str) -> int:
    return int(requests.get(url + "/api/stream/stats", timeout=5).json()["data"]["clients"]["worker"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--snapshot-bytes", type=int, default=13_500)
    parser.add_argument("--tick", type=float, default=5.0)
    parser.add_argument("--max-seconds", type=float, default=300.0)
    args = parser.parse_args()
    padding = max(0, args.snapshot_bytes - len(encode(sample_snapshot(1))) - 14)
    folder = Path(tempfile.mkdtemp(prefix="flexgate-bench-"))
    nats = NatsServer(folder / "nats").start()
    client = NatsClient(nats.url)
    web = WebServer(nats.url, folder / "web", {"FLEXGATE_HEARTBEAT_SECONDS": "30", "FLEXGATE_TICK_SECONDS":
                                               str(args.tick)}, workers=1).start()
    socks: list[socket.socket] = []
    try:
        client.publish_snapshot(padding=padding)
        socks = open_streams(web.port, args.clients)
        while open_in_worker(web.url) < args.clients:
            time.sleep(0.2)
        started = time.monotonic()
        peak_total = peak_one = 0
        print(f"{args.clients} streams that never read; a {args.snapshot_bytes / 1000:g} KB snapshot every "
              f"{args.tick:g} s ({args.snapshot_bytes / args.tick / 1000:.1f} KB/s per stream)")
        while time.monotonic() - started < args.max_seconds:
            client.publish_snapshot(padding=padding)
            queues = send_queues(web.port)
            total = sum(w for _, _, w in queues)
            peak_total, peak_one = max(peak_total, total), max([peak_one, *(w for _, _, w in queues)])
            streams = open_in_worker(web.url)
            print(f"{time.monotonic() - started:6.1f} s: {streams} streams open, {len(queues)} connections; "
                  f"queued {sum(q for q, _, _ in queues) / 2**20:.1f} MiB, skmem w {total / 2**20:.1f} MiB, "
                  f"tb {max((tb for _, tb, _ in queues), default=0)}", flush=True)
            if not streams and not queues:
                break
            time.sleep(max(0.0, args.tick - (time.monotonic() - started) % args.tick))
        print(f"peak skmem w: {peak_total / 2**20:.1f} MiB in all, {peak_one / 1024:.0f} KiB on one connection; "
              f"at 10,000 such clients at most {10_000 * peak_one / 2**30:.2f} GiB")
    finally:
        for sock in socks:
            sock.close()
        web.stop()
        client.close()
        nats.stop()


if __name__ == "__main__":
    main()
