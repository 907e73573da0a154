"""The load client of bench/fanout_vs_nchan.py: one process holding many SSE connections on non-blocking sockets.

Each event carries the wall-clock nanoseconds at which it was published. The kernel stamps every read
(``SO_TIMESTAMPNS``) with the time the data reached the socket, so an event's latency is that stamp minus
its publish time, whatever this process's own queueing: a busy client does not inflate the figures.
The parent drives it over a pipe: ``open``, ``measure``, ``storm``, ``close``.
"""

from __future__ import annotations

import array
import re
import resource
import select
import signal
import socket
import struct
import time
from multiprocessing.connection import Connection
from typing import Any

from flexgate_stream.devstack.processes import dies_with_parent

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
MARKER = re.compile(rb'"benchRun":"(\w+)","benchN":(\d+),"benchAt":(\d+)')
ANCILLARY = socket.CMSG_SPACE(16)
EVENTS = select.EPOLLIN | select.EPOLLERR | select.EPOLLHUP


class Stream:
    """One connection: whether its response has begun, the tail of its bytes, and the last event it got."""

    __slots__ = ("sock", "started", "tail", "last_n", "opened_at")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.started = False
        self.tail = b""
        self.last_n = 0
        self.opened_at = time.monotonic()


class LoadClient:
    """Many SSE connections to one server, read with one epoll."""

    def __init__(self, port: int, path: str) -> None:
        self.port = port
        self.request = (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n"
                        "Cache-Control: no-cache\r\n\r\n").encode()
        self.epoll = select.epoll()
        self.streams: dict[int, Stream] = {}
        self.run = b""
        self.latencies = array.array("q")
        self.delivered = 0
        self.out_of_order = 0
        self.refused = 0  # answered without a stream
        self.failed = 0  # connection errors

    def connect(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        sock.setblocking(False)
        try:
            sock.connect(("127.0.0.1", self.port))
        except BlockingIOError:
            pass
        self.streams[sock.fileno()] = Stream(sock)
        self.epoll.register(sock.fileno(), select.EPOLLOUT | EVENTS)

    def open(self, count: int, seconds: float, timeout: float) -> tuple[int, float, int, int]:
        """Open ``count`` streams spread over ``seconds``; (streaming, seconds until all streamed, refused, failed)."""
        self.refused = self.failed = 0
        started = time.monotonic()
        for i in range(count):
            due = started + seconds * i / count
            while time.monotonic() < due:
                self.poll(min(0.01, max(0.0, due - time.monotonic())))
            self.connect()
        deadline = started + seconds + timeout
        while not self.all_started() and time.monotonic() < deadline:
            self.poll(0.05)
        streaming = [s.opened_at for s in self.streams.values() if s.started]
        return len(streaming), max(streaming, default=started) - started, self.refused, self.failed

    def all_started(self) -> bool:
        return all(s.started for s in self.streams.values())

    def poll(self, timeout: float) -> None:
        for fd, mask in self.epoll.poll(timeout, 2048):
            stream = self.streams.get(fd)
            if stream is None:
                continue
            if mask & select.EPOLLOUT:
                self._send_request(fd, stream)
            if mask & (select.EPOLLIN | select.EPOLLHUP | select.EPOLLERR):
                self._read(fd, stream)

    def _send_request(self, fd: int, stream: Stream) -> None:
        try:
            stream.sock.send(self.request)
        except OSError:
            self._drop(fd)
            return
        self.epoll.modify(fd, EVENTS)

    def _read(self, fd: int, stream: Stream) -> None:
        try:
            data, ancdata, _flags, _addr = stream.sock.recvmsg(16384, ANCILLARY)
        except BlockingIOError:
            return
        except OSError:
            self.failed += 1
            self._drop(fd)
            return
        if not data:
            self.failed += not stream.started
            self._drop(fd)
            return
        stamp = 0
        for level, kind, cdata in ancdata:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                sec, nsec = struct.unpack("qq", cdata[:16])
                stamp = sec * 1_000_000_000 + nsec
        if not stream.started:
            head = stream.tail + data
            if b"\r\n\r\n" not in head:
                stream.tail = head[-256:]
                return
            if not head.startswith(b"HTTP/1.1 200 "):
                self.refused += 1  # answered, but not with a stream (503 at capacity or shutting down)
                self._drop(fd)
                return
            stream.started = True
            stream.opened_at = time.monotonic()
        text = stream.tail + data
        if self.run:
            for match in MARKER.finditer(text):
                if match.group(1) != self.run:
                    continue
                n = int(match.group(2))
                if n <= stream.last_n:
                    self.out_of_order += n < stream.last_n
                    continue
                stream.last_n = n
                self.delivered += 1
                self.latencies.append((stamp or time.time_ns()) - int(match.group(3)))
        stream.tail = text[-96:]

    def _drop(self, fd: int) -> None:
        stream = self.streams.pop(fd)
        try:
            self.epoll.unregister(fd)
        except OSError:
            pass
        stream.sock.close()

    def measure(self, run: str, messages: int, timeout: float) -> dict[str, Any]:
        """Read until every stream has event ``messages`` of ``run`` or ``timeout`` passes."""
        self.run = run.encode()
        self.latencies = array.array("q")
        self.delivered = self.out_of_order = 0
        for stream in self.streams.values():
            stream.last_n = 0
        cpu0 = time.process_time()
        started = time.monotonic()
        deadline = started + timeout
        while time.monotonic() < deadline:
            self.poll(0.05)
            if self.delivered and all(s.last_n >= messages for s in self.streams.values()):
                break
        return {"latencies": self.latencies.tobytes(), "delivered": self.delivered, "streams": len(self.streams),
                "out_of_order": self.out_of_order, "cpu": time.process_time() - cpu0,
                "seconds": time.monotonic() - started}

    def storm(self, seconds: float, timeout: float) -> tuple[int, float, int, int]:
        """Close every stream and open as many again within ``seconds`` (a deploy's reconnect storm)."""
        count = len(self.streams)
        self.close()
        return self.open(count, seconds, timeout)

    def close(self) -> None:
        for fd in list(self.streams):
            self._drop(fd)


def serve(conn: Connection, port: int, path: str) -> None:
    """The client process's loop: run the parent's commands until it says ``quit``."""
    dies_with_parent(signal.SIGTERM)()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    client = LoadClient(port, path)
    while True:
        command, *args = conn.recv()
        if command == "quit":
            client.close()
            conn.send(None)
            return
        if command == "open":
            conn.send(client.open(*args))
        elif command == "storm":
            conn.send(client.storm(*args))
        elif command == "measure":
            conn.send(client.measure(*args))
        elif command == "close":
            client.close()
            conn.send(None)


def ensure_timestamps() -> None:
    """Fail with one sentence when this kernel does not stamp TCP reads."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        except OSError as exc:
            raise SystemExit(f"this kernel does not offer SO_TIMESTAMPNS receive timestamps ({exc}).") from exc
