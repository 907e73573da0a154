"""Clients that stop reading: memory stays bounded, snapshots are skipped, alerts never silently."""

from __future__ import annotations

import os
import re
import socket
import threading
from pathlib import Path

import pytest
import requests

from flexgate_stream.messages import ALERT_SUBJECT_PREFIX, encode
from tests.e2e.support import SSEClient
from tests.waiting import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

BIG = "x" * 200_000  # enough frames of this size fill the socket buffers, so the server's writes block


def read_to_end(client: SSEClient) -> list:
    events = []
    try:
        while True:
            events.append(client.next())
    except StopIteration:
        return events


def stalled_streams(url: str) -> int:
    """Streams the answering worker has been stuck writing to for a while (/api/stream/stats)."""
    return requests.get(url + "/api/stream/stats", timeout=5).json()["data"]["clients"]["stalled"]


def summary_pending(url: str) -> float | None:
    """Summary snapshots the stream holds that the answering worker has not received yet (/metrics)."""
    text = requests.get(url + "/metrics", timeout=5).text
    found = re.search(r'^flexgate_stream_consumer_pending\{channel="metrics"\} (\S+)$', text, re.M)
    return float(found[1]) if found else None


@pytest.fixture(scope="module")
def small_rings(nats_server, nats_client, tmp_path_factory):
    from tests.e2e.support import WebServer

    # Send buffers as large as the kernel's autotuning makes them (~4 MB), so the reading witness never falls a
    # ring behind while the stalled client's 12 MB of alerts still fill its buffers.
    server = WebServer(nats_server.url, tmp_path_factory.mktemp("slow"),
                       {"FLEXGATE_CLIENT_QUEUE": "4", "FLEXGATE_HEARTBEAT_SECONDS": "30",
                        "FLEXGATE_SEND_BUFFER": str(2 * 1024 * 1024)}, workers=1).start()
    yield server
    server.stop()


def test_stalled_alerts_client_gets_reset_then_resumes_without_loss(small_rings, nats_client):
    client = SSEClient(small_rings.url + "/api/stream/alerts", read_timeout=30)
    client.next()
    # A second client reads everything as it comes: once it has the last alert, the worker's channel holds it
    # too, so the stalled client has fallen out of the ring before it reads again (whatever the bridge's lag).
    witness = SSEClient(small_rings.url + "/api/stream/alerts", read_timeout=30)
    witness.next()
    seen: list[int] = []
    reader = threading.Thread(target=lambda: seen.extend(int(e.id) for e in witness.data_events(60)), daemon=True)
    reader.start()
    published = []
    for i in range(60):
        ack = nats_client.run(nats_client.js.publish(ALERT_SUBJECT_PREFIX + "warning", encode(
            {"type": "alert", "id": f"big-{i}", "rule": "slow", "severity": "warning", "pad": BIG})))
        published.append(ack.seq)
    reader.join(60)
    witness.close()
    assert seen == published
    events = read_to_end(client)  # the server ended this stream after telling it to reset
    got = [int(e.id) for e in events if e.id]
    assert events[-1].event == "reset"
    assert got == published[: len(got)] and len(got) < len(published)
    again = SSEClient(small_rings.url + "/api/stream/alerts", headers={"Last-Event-ID": client.last_id},
                      read_timeout=30)
    again.next()
    rest = [int(e.id) for e in again.data_events(len(published) - len(got))]
    assert got + rest == published
    again.close()


def test_stalled_snapshot_client_skips_to_the_newest(small_rings, nats_client):
    nats_client.publish_snapshot()
    client = SSEClient(small_rings.url + "/api/stream/metrics", read_timeout=30)
    client.next()
    client.data_events(1)
    published = [nats_client.publish_snapshot(padding=len(BIG)) for _ in range(60)]
    # The worker holds the newest before the client reads again: its bridge may still be receiving when the last
    # publish is acknowledged (on a busy machine), and a client that reads meanwhile keeps up and skips nothing.
    wait_until(lambda: summary_pending(small_rings.url) == 0, 30, "the worker to receive the last snapshot")
    got: list[int] = []
    while not got or got[-1] < published[-1]:
        got.append(int(client.data_events(1)[0].id))
    client.close()
    assert got == sorted(got) and got[-1] == published[-1]  # in order, and it ends on the newest
    assert len(got) < len(published)  # it skipped some instead of queueing them all
    text = requests.get(small_rings.url + "/metrics", timeout=5).text
    skipped = float(re.search(r"^flexgate_stream_snapshots_skipped_total (\S+)$", text, re.M)[1])
    assert skipped >= len(published) - len(got)


def test_sigterm_exits_within_5_seconds_even_with_a_client_that_stopped_reading(start_web, nats_client):
    web = start_web({"FLEXGATE_HEARTBEAT_SECONDS": "30"}, workers=1)
    nats_client.publish_snapshot()
    stalled = SSEClient(web.url + "/api/stream/metrics", read_timeout=30)
    stalled.next()
    # The newest snapshot first: a stream that looks it up after the padded ones are stored skips straight to
    # the last of them (snapshots supersede each other) and never fills the buffers.
    stalled.data_events(1)
    for _ in range(30):  # ~6 MB: more than the socket buffers hold, so the worker's write blocks
        nats_client.publish_snapshot(padding=len(BIG))
    # Only a stream stuck in a write has its socket cut at shutdown; one that is not ends with its last frame.
    wait_until(lambda: stalled_streams(web.url) == 1, 30, "the worker to be stuck writing to the stalled client")
    assert web.stop() < 5.0
    assert "stopped reading" in web.log_text()
    stalled.close()


def holds_connection(pid: int, server_port: int, client_port: int) -> bool:
    """Whether process ``pid`` holds the server side of the TCP connection from ``client_port``."""
    wanted = f":{server_port:04X}", f":{client_port:04X}"
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1].endswith(wanted[0]) and fields[2].endswith(wanted[1]):
            inodes.add(f"socket:[{fields[9]}]")
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            if os.readlink(fd) in inodes:
                return True
        except OSError:
            continue
    return False


def client_counts(url: str) -> tuple[int, int]:
    """Open and stalled streams of the answering worker."""
    clients = requests.get(url + "/api/stream/stats", timeout=5).json()["data"]["clients"]
    return clients["worker"], clients["stalled"]


def test_a_client_that_stops_reading_is_dropped_after_the_send_timeout(start_web, nats_client):
    web = start_web({"FLEXGATE_SEND_TIMEOUT": "1", "FLEXGATE_HEARTBEAT_SECONDS": "30"}, workers=1)
    worker = web.worker_pids()[0]
    nats_client.publish_snapshot()
    wait_until(lambda: client_counts(web.url)[0] == 0, 10, "no streams open")
    # A tiny receive window, and a client that reads the hello and then nothing: the server's writes block
    # once its send buffer and our receive buffer are full.
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
    sock.connect(("127.0.0.1", web.port))
    sock.sendall(b"GET /api/stream/metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    assert b"200 OK" in sock.recv(1024)
    wait_until(lambda: client_counts(web.url)[0] == 1, 10, "the stream to be open")
    client_port = sock.getsockname()[1]
    assert holds_connection(worker, web.port, client_port)
    for _ in range(30):  # ~6 MB of snapshots: more than both buffers hold
        nats_client.publish_snapshot(padding=len(BIG))
    # Dropped after FLEXGATE_SEND_TIMEOUT: the stream is released (no client, no stalled write) and its socket
    # closed in the worker.
    wait_until(lambda: client_counts(web.url)[:2] == (0, 0), 15, "the stalled stream to be dropped")
    wait_until(lambda: not holds_connection(worker, web.port, client_port), 10, "the worker to close the connection")
    sock.close()
    assert web.worker_pids() == [worker]  # the worker itself lives on
    assert "Traceback" not in web.log_text()
