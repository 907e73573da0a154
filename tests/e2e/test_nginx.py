"""conf/nginx/flexgate-stream.conf for real: Debian's nginx in front of gunicorn, as a browser sees it."""

from __future__ import annotations

import json
import selectors
import signal
import socket
import threading
import time

import pytest
import requests

from tests.e2e.support import SSEClient
from tests.waiting import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

STREAM = "/api/stream/metrics"


def _arrivals(client: SSEClient, count: int, times: dict[str, float]) -> threading.Thread:
    """Record when each of the next ``count`` snapshots arrives, on a thread of its own."""

    def read() -> None:
        for _ in range(count):
            event = client.data_events(1)[0]
            times[event.id] = time.monotonic()

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return thread


def test_each_snapshot_arrives_through_nginx_within_100_ms_of_the_direct_stream(web_server, nginx_server, nats_client):
    proxied = SSEClient(nginx_server.url + STREAM)
    direct = None
    try:
        # Both streams on the same worker, so only nginx stands between them.
        for _ in range(50):
            direct = SSEClient(web_server.url + STREAM)
            if direct.worker == proxied.worker:
                break
            direct.close()
        assert direct is not None and direct.worker == proxied.worker
        for client in (proxied, direct):
            assert client.next().json()["type"] == "connected"
        first = nats_client.publish_snapshot()
        for client in (proxied, direct):  # a new stream starts with the newest snapshot, which may predate ours
            seen = [int(client.data_events(1)[0].id)]
            while seen[-1] < first:
                seen.append(int(client.data_events(1)[0].id))
            assert seen[-1] == first
        via_nginx: dict[str, float] = {}
        straight: dict[str, float] = {}
        readers = [_arrivals(proxied, 10, via_nginx), _arrivals(direct, 10, straight)]
        published = []
        for _ in range(10):
            published.append(str(nats_client.publish_snapshot()))
            wait_until(lambda: published[-1] in via_nginx and published[-1] in straight, 10,
                       f"snapshot {published[-1]} on both streams")
        for reader in readers:
            reader.join(10)
        lags = [via_nginx[seq] - straight[seq] for seq in published]
        assert max(lags) < 0.1, f"nginx held snapshots back: lags {[round(x, 3) for x in lags]} s"
        print(f"\nnginx lag behind the direct stream: max {max(lags) * 1000:.1f} ms over {len(lags)} snapshots")
        assert proxied.response.headers["Content-Type"].startswith("text/event-stream")
    finally:
        proxied.close()
        if direct is not None:
            direct.close()


def test_last_event_id_passes_through_nginx(nginx_server, nats_client):
    published = [nats_client.publish_snapshot() for _ in range(4)]
    client = SSEClient(nginx_server.url + STREAM, headers={"Last-Event-ID": str(published[1])})
    try:
        assert client.next().json()["type"] == "connected"
        assert [int(e.id) for e in client.data_events(2)] == published[2:]
    finally:
        client.close()


def test_heartbeats_keep_a_quiet_stream_open_past_nginx_read_timeout(start_web, start_nginx, nats_client):
    # Heartbeats every 0.25 s, nginx gives up after 1 s of silence.
    web = start_web({"FLEXGATE_HEARTBEAT_SECONDS": "0.25"}, workers=1)
    front = start_nginx(web, read_timeout="1s")
    client = SSEClient(front.url + STREAM, read_timeout=5)
    try:
        client.next()
        quiet_until = time.monotonic() + 3 * 1
        beats = 0
        while time.monotonic() < quiet_until:  # the stream must outlive three read timeouts
            if client.next(include_comments=True).comment == "heartbeat":
                beats += 1
        assert beats >= 8
        seq = nats_client.publish_snapshot()
        assert int(client.data_events(1)[0].id) == seq  # still the same live stream
    finally:
        client.close()


def test_a_thousand_streams_through_nginx_each_receive_the_next_snapshot(web_server, nginx_server, nats_client):
    count = 1000
    selector = selectors.DefaultSelector()
    buffers: dict[socket.socket, bytearray] = {}
    request = f"GET {STREAM} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".encode()
    opened = time.monotonic()
    try:
        for _ in range(count):
            sock = socket.create_connection(("127.0.0.1", nginx_server.port), timeout=10)
            sock.sendall(request)
            sock.setblocking(False)
            buffers[sock] = bytearray()
            selector.register(sock, selectors.EVENT_READ)

        def read_until(marker: bytes, timeout: float) -> None:
            deadline = time.monotonic() + timeout
            waiting = {s for s, b in buffers.items() if marker not in b}
            while waiting and time.monotonic() < deadline:
                for key, _ in selector.select(0.5):
                    chunk = key.fileobj.recv(65536)
                    assert chunk, "nginx closed a stream"
                    buffers[key.fileobj] += chunk
                    if marker in buffers[key.fileobj]:
                        waiting.discard(key.fileobj)
            assert not waiting, f"{len(waiting)} of {count} streams lacked {marker!r} after {timeout} s"

        read_until(b'"type":"connected"', 60)
        print(f"\n{count} streams through nginx open in {time.monotonic() - opened:.1f} s")
        assert all(b.startswith(b"HTTP/1.1 200") for b in buffers.values())
        total = requests.get(nginx_server.url + "/api/stream/stats", timeout=10).json()["data"]["clients"]["total"]
        assert total >= count
        seq = nats_client.publish_snapshot()
        read_until(f"id: {seq}\n".encode(), 60)
    finally:
        for sock in buffers:
            selector.unregister(sock)
            sock.close()


def test_client_address_reaches_gunicorn_access_log_and_a_forged_one_does_not(start_web, start_nginx):
    web = start_web(workers=1)
    front = start_nginx(web)
    # A client on another loopback address, claiming to be someone else.
    with socket.create_connection(("127.0.0.1", front.port), timeout=10, source_address=("127.0.0.7", 0)) as sock:
        sock.sendall(b"GET /healthz?probe=forwarded HTTP/1.0\r\nHost: x\r\nX-Forwarded-For: 203.0.113.9\r\n\r\n")
        assert sock.makefile("rb").readline().startswith(b"HTTP/1.1 200")
    line = wait_until(lambda: next((x for x in web.log_text().splitlines() if '"GET /healthz ' in x), None), 10,
                      "the request in gunicorn's access log")
    assert line.split()[0] == "127.0.0.7", line
    assert "203.0.113.9" not in line


def test_shutdown_retry_frame_reaches_the_client_through_nginx(start_web, start_nginx):
    web = start_web(workers=1)
    front = start_nginx(web)
    client = SSEClient(front.url + STREAM)
    try:
        client.next()
        web.proc.send_signal(signal.SIGTERM)
        last = client.next()
        while last.event != "shutdown":
            last = client.next()
        assert 250 <= last.retry <= 750  # FLEXGATE_RETRY_MS=500, jittered
        with pytest.raises(StopIteration):
            client.next()
    finally:
        client.close()
        web.stop()


def test_event_streams_are_never_gzipped_while_json_is(nginx_server, nats_client):
    nats_client.publish_snapshot()
    headers = {"Accept-Encoding": "gzip"}
    json_reply = requests.get(nginx_server.url + "/readyz", headers=headers, timeout=10)
    assert json_reply.headers.get("Content-Encoding") == "gzip"  # the surrounding http block compresses
    raw = requests.get(nginx_server.url + STREAM, headers=headers, stream=True, timeout=(5, 10))
    try:
        assert raw.headers["Content-Type"].startswith("text/event-stream")
        assert "Content-Encoding" not in raw.headers
        assert raw.raw.read(7, decode_content=False) == b"retry: "  # the hello frame, as plain text
    finally:
        raw.close()


def _raw(port: int, request: bytes) -> tuple[str, dict[str, str], bytes]:
    """Send ``request`` as it is and read the whole answer: status line, headers and body."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    status, *lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
    return status, headers, body


def _json_error(status: str, headers: dict[str, str], body: bytes, code: int) -> str:
    """The error text of an nginx answer that must be the app's JSON error shape with ``code``."""
    assert status.split()[1] == str(code), status
    assert headers["content-type"].startswith("application/json"), headers
    answer = json.loads(body)
    assert answer["success"] is False and answer["error"], answer
    return str(answer["error"])


def test_the_answers_nginx_gives_itself_are_json_errors_not_html_pages(start_web, start_nginx):
    web = start_web(workers=1)
    front = start_nginx(web)
    big = b"x" * 100_000
    status, headers, body = _raw(front.port, b"POST /api/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                                 b"\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(big) + big)
    assert "64 KiB" in _json_error(status, headers, body, 413)
    status, headers, body = _raw(front.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"y" * 20_000
                                 + b"\r\nConnection: close\r\n\r\n")
    assert "header" in _json_error(status, headers, body, 400)
    web.stop()
    for path in (b"/api/metrics/live", STREAM.encode()):
        status, headers, body = _raw(front.port, b"GET " + path + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert "not reachable" in _json_error(status, headers, body, 502)
