"""Memory per open SSE stream in one gunicorn gevent worker (the sizing figure of docs/deployment.md).

    .venv/bin/python -m bench.stream_memory [streams]

Starts nats-server and gunicorn (1 worker) on free ports, publishes a snapshot, opens ``streams`` raw
HTTP/1.1 streams (as browsers and nginx send them), and prints the worker's resident memory before and after,
and per stream.
"""

from __future__ import annotations

import selectors
import socket
import sys
import tempfile
import time
from pathlib import Path

from flexgate_stream.devstack.nats_client import NatsClient
from flexgate_stream.devstack.servers import NatsServer
from flexgate_stream.devstack.web_server import WebServer


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def main(count: int) -> None:
    folder = Path(tempfile.mkdtemp(prefix="flexgate-bench-"))
    nats = NatsServer(folder / "nats").start()
    client = NatsClient(nats.url)
    web = WebServer(nats.url, folder / "web", {"FLEXGATE_HEARTBEAT_SECONDS": "30"}, workers=1)
    web.start()
    socks: list[socket.socket] = []
    try:
        client.publish_snapshot(padding=4000)
        worker = web.worker_pids()[0]
        time.sleep(1)
        before = rss_kib(worker)
        selector = selectors.DefaultSelector()
        for _ in range(count):
            sock = socket.create_connection(("127.0.0.1", web.port))
            sock.sendall(b"GET /api/stream/metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n")
            sock.setblocking(False)
            selector.register(sock, selectors.EVENT_READ)
            socks.append(sock)
        got: dict[socket.socket, bytes] = {}
        deadline = time.monotonic() + 120
        while len([s for s in socks if b"id: " in got.get(s, b"")]) < count and time.monotonic() < deadline:
            for key, _ in selector.select(0.5):
                got[key.fileobj] = got.get(key.fileobj, b"") + key.fileobj.recv(65536)
        client.publish_snapshot(padding=4000)
        time.sleep(2)
        after = rss_kib(worker)
        print(f"streams {count}: worker RSS {before / 1024:.1f} MiB -> {after / 1024:.1f} MiB, "
              f"{(after - before) / count:.1f} KiB per stream (snapshot ~5 KiB)")
    finally:
        for sock in socks:
            sock.close()
        web.stop()
        client.close()
        nats.stop()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000)
