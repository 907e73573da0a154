"""A client that never reads: its socket's send buffer stays bounded (read with ``ss``) and it is dropped in time."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import time

import pytest
import requests

from tests.waiting import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90),
              pytest.mark.skipif(shutil.which("ss") is None, reason="needs ss (iproute2)")]

DEFAULT_BUFFER = 65536  # FLEXGATE_SEND_BUFFER's default
SEGMENT = 65536  # the kernel may queue one segment past the buffer (loopback segments are up to 64 KiB)
PADDING = 20_000  # each snapshot ~21 KB, one every 0.2 s: ~100 KB/s
DEADLINE = 12.0  # 4 MB of autotuned buffer at 100 KB/s would take 40 s before the send timeout could start


def send_queue(server_port: int, client_port: int) -> tuple[int, int] | None:
    """(Send-Q, skmem tb) of the server side of the connection from ``client_port``, or None when it is gone."""
    out = subprocess.run(["ss", "-tmnH", "state", "established", f"( sport = :{server_port} and "
                          f"dport = :{client_port} )"], capture_output=True, text=True, check=True).stdout
    queued = re.match(r"\s*\d+\s+(\d+)\s", out)
    limit = re.search(r"\btb(\d+)\b", out)
    return (int(queued[1]), int(limit[1])) if queued and limit else None


def worker_streams(url: str) -> int:
    """Streams open in the answering worker."""
    return requests.get(url + "/api/stream/stats", timeout=5).json()["data"]["clients"]["worker"]


def test_a_client_that_never_reads_pins_a_bounded_buffer_and_is_dropped_in_time(start_web, nats_client):
    web = start_web({"FLEXGATE_SEND_TIMEOUT": "2", "FLEXGATE_HEARTBEAT_SECONDS": "30"}, workers=1)
    nats_client.publish_snapshot()
    wait_until(lambda: worker_streams(web.url) == 0, 10, "no streams open")
    with socket.create_connection(("127.0.0.1", web.port)) as sock:
        sock.sendall(b"GET /api/stream/metrics HTTP/1.1\r\nHost: x\r\n\r\n")  # then never reads, not even headers
        client_port = sock.getsockname()[1]
        wait_until(lambda: worker_streams(web.url) == 1, 10, "the stream to be open")
        opened = send_queue(web.port, client_port)
        assert opened is not None and opened[1] == 2 * DEFAULT_BUFFER  # SO_SNDBUF, doubled by the kernel

        started, peak = time.monotonic(), 0
        while worker_streams(web.url) == 1:
            assert time.monotonic() - started < DEADLINE, f"not dropped within {DEADLINE:g} s; Send-Q peaked at {peak}"
            nats_client.publish_snapshot(padding=PADDING)
            found = send_queue(web.port, client_port)
            if found is not None:
                assert found[1] == 2 * DEFAULT_BUFFER
                peak = max(peak, found[0])
            time.sleep(0.2)  # the pace of the snapshots, not a wait for a condition
        dropped_after = time.monotonic() - started

    print(f"dropped after {dropped_after:.1f} s; Send-Q peaked at {peak} bytes")
    assert 0 < peak <= 2 * DEFAULT_BUFFER + SEGMENT
    wait_until(lambda: send_queue(web.port, client_port) is None, 5, "the connection to be closed")
    assert "dropped a client that stopped reading" in web.log_text()
    assert "Traceback" not in web.log_text()
