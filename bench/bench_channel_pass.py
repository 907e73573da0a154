"""One channel's pass over its waiting clients, in process: what each client costs per frame.

    .venv/bin/python -m bench.bench_channel_pass [clients]

``clients`` resting subscribers of one channel, each with a writer that owns a socket, take 300 frames of
~2 KB each. Twice: with sockets that take everything and do nothing (the Python of the pass alone: the
channel's loop and ``StreamWriter.offer``), and with real non-blocking socketpairs (the pass as it runs, send
calls included; the peers are drained between frames, outside the timing). Prints the median and the best
nanoseconds per client per frame.
"""

from __future__ import annotations

import socket
import sys
import time
from collections.abc import Callable
from typing import Any

from flexgate_stream.fanout.hub import Policy, StreamHub

FRAMES = 300
DATA = b'{"x":"' + b"y" * 2000 + b'"}'


class NullSocket:
    """A socket that takes every byte at once."""

    def send(self, data: bytes) -> int:
        return len(data)


def pass_ns(clients: int, make: Callable[[], Any], drain: Callable[[], None]) -> tuple[float, float]:
    """Median and best nanoseconds per client of ``Channel.publish`` over ``FRAMES`` frames."""
    hub = StreamHub(8, clients + 1)
    channel, _ = hub.channel("bench", Policy.LATEST)
    for _ in range(clients):
        sub = hub.attach(channel, channel.next_index)
        sub.writer.own(make())
        sub.rest(None, lambda: None)
    took = []
    for seq in range(1, FRAMES + 1):
        started = time.perf_counter()
        channel.publish(seq, DATA)
        took.append(time.perf_counter() - started)
        drain()
    assert len(channel.parked) == clients, "every client must have taken every frame whole"
    took.sort()
    return took[len(took) // 2] / clients * 1e9, took[0] / clients * 1e9


def main() -> None:
    clients = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    pairs: list[tuple[socket.socket, socket.socket]] = []

    def pair() -> socket.socket:
        ours, theirs = socket.socketpair()
        ours.setblocking(False)
        theirs.setblocking(False)
        pairs.append((ours, theirs))
        return ours

    def drain() -> None:
        for _, theirs in pairs:
            try:
                while theirs.recv(1 << 16):
                    pass
            except BlockingIOError:
                pass

    median, best = pass_ns(clients, NullSocket, lambda: None)
    print(f"{clients} clients, {FRAMES} frames of {len(DATA)} bytes: ns per client per frame, median / best")
    print(f"  the pass's Python alone:      {median:7.0f} / {best:7.0f}")
    median, best = pass_ns(clients, pair, drain)
    print(f"  with socketpair send calls:   {median:7.0f} / {best:7.0f}")
    for ours, theirs in pairs:
        ours.close()
        theirs.close()


if __name__ == "__main__":
    main()
