"""Fan-out benchmark: N SSE clients on one gunicorn gevent worker; prints memory per client and fan-out time.

    .venv/bin/python -m bench.stream_fanout --clients 5000 --snapshots 10

Starts its own nats-server and gunicorn (1 worker) on free loopback ports, opens N raw-socket SSE
clients from this process, publishes realistic snapshots (~6 KB) and measures, for each one, the time
from the publish acknowledgement until every client has read it.
"""

from __future__ import annotations

import argparse
import selectors
import socket
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from flexgate_stream.devstack.nats_client import NatsClient
from flexgate_stream.devstack.sample_messages import sample_snapshot
from flexgate_stream.devstack.servers import NatsServer
from flexgate_stream.devstack.web_server import WebServer
from flexgate_stream.messages import SUMMARY_SUBJECT, encode, message_id


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def realistic_snapshot(n: int) -> tuple[str, bytes]:
    """A snapshot with 20 routes and 8 status codes (~6 KB), and its windowEnd."""
    now = datetime.now(UTC)
    snap = sample_snapshot(n, end=now + timedelta(microseconds=n), taken=now,
                           routes={f"/api/route/{i}": 1000 + i for i in range(20)})
    snap["statusCodes"] = [{"code": c, "count": 100} for c in (200, 201, 204, 301, 400, 404, 500, 503)]
    return snap["windowEnd"], encode(snap)


class Clients:
    """N non-blocking SSE connections read with one selector."""

    def __init__(self, port: int, path: str = "/api/stream/metrics") -> None:
        self.port = port
        self.request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n".encode()
        self.selector = selectors.DefaultSelector()
        self.buffers: dict[socket.socket, bytearray] = {}

    def open(self, count: int, batch: int = 500) -> None:
        for start in range(0, count, batch):
            for _ in range(min(batch, count - start)):
                sock = socket.create_connection(("127.0.0.1", self.port))
                sock.sendall(self.request)
                sock.setblocking(False)
                self.selector.register(sock, selectors.EVENT_READ)
                self.buffers[sock] = bytearray()
            self.read_until(lambda: all(b"\n\n" in buf for buf in self.buffers.values()), 60)

    def read_until(self, done, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() > deadline:
                raise TimeoutError("clients did not receive in time")
            for key, _ in self.selector.select(0.5):
                try:
                    chunk = key.fileobj.recv(65536)
                except BlockingIOError:
                    continue
                self.buffers[key.fileobj] += chunk

    def all_have(self, marker: bytes) -> bool:
        return all(marker in buf for buf in self.buffers.values())

    def trim(self) -> None:
        for buf in self.buffers.values():
            del buf[:-64]

    def close(self) -> None:
        for sock in self.buffers:
            sock.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=2000)
    parser.add_argument("--snapshots", type=int, default=10)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="flexgate-bench-"))
    nats = NatsServer(base / "nats").start()
    publisher = NatsClient(nats.url)
    web = WebServer(nats.url, base, {"FLEXGATE_HEARTBEAT_SECONDS": "30", "FLEXGATE_LOG_LEVEL": "WARNING",
                                     "FLEXGATE_MAX_CLIENTS": str(args.clients + 100)}, workers=1)
    clients = Clients(web.start().port)
    try:
        worker = web.worker_pids()[0]
        end, payload = realistic_snapshot(0)
        publisher.run(publisher.js.publish(SUMMARY_SUBJECT, payload,
                                           headers={"Nats-Msg-Id": message_id(SUMMARY_SUBJECT, end)}))
        before = rss_kib(worker)
        started = time.monotonic()
        clients.open(args.clients)
        opened = time.monotonic() - started
        after = rss_kib(worker)
        print(f"snapshot size: {len(payload)} bytes")
        print(f"opened {args.clients} streams in {opened:.1f} s")
        print(f"worker RSS: {before / 1024:.1f} MiB idle -> {after / 1024:.1f} MiB with {args.clients} streams "
              f"= {(after - before) / args.clients:.1f} KiB per stream")
        timings = []
        for n in range(1, args.snapshots + 1):
            end, payload = realistic_snapshot(n)
            ack = publisher.run(publisher.js.publish(SUMMARY_SUBJECT, payload,
                                                     headers={"Nats-Msg-Id": message_id(SUMMARY_SUBJECT, end)}))
            sent = time.monotonic()
            marker = f"id: {ack.seq}\n".encode()
            clients.read_until(lambda m=marker: clients.all_have(m), 60)
            timings.append(time.monotonic() - sent)
            clients.trim()
            time.sleep(0.2)
        print(f"fan-out of one snapshot to all {args.clients} streams (publish ack -> last client read): "
              f"median {statistics.median(timings) * 1000:.0f} ms, max {max(timings) * 1000:.0f} ms "
              f"({len(payload) * args.clients / statistics.median(timings) / 1e6:.0f} MB/s)")
        print(f"worker RSS after: {rss_kib(worker) / 1024:.1f} MiB")
    finally:
        clients.close()
        web.stop()
        publisher.close()
        nats.stop()


if __name__ == "__main__":
    main()
