"""StreamWriter: the bytes a resting stream's socket gets are gunicorn's, in order, and counted once."""

from __future__ import annotations

import socket
import time
from types import SimpleNamespace

import gevent
import pytest
from gevent import socket as gsocket
from gunicorn.config import Config
from gunicorn.http.wsgi import Response

from flexgate_stream.fanout.delays import DelayTally, last_minute
from flexgate_stream.fanout.stream_writer import BEGUN, REFUSED, WRITTEN, StreamWriter, chunk

pytestmark = pytest.mark.timeout(10)


def read_all(sock: socket.socket) -> bytes:
    """What ``sock`` receives until its peer stops writing for 0.2 s."""
    sock.settimeout(0.2)
    got = b""
    try:
        while data := sock.recv(1 << 20):
            got += data
    except TimeoutError:
        pass
    return got


def test_a_writer_writes_the_body_bytes_gunicorns_chunked_response_writes_and_counts_them_alike():
    body = [b"id: 1\ndata: x\n\n", b"", b": heartbeat\n\n"]
    ours, theirs = socket.socketpair()
    req = SimpleNamespace(version=(1, 1), method="GET", headers=[], path="/", proxy_protocol_info=None,
                          should_close=lambda: False)
    resp = Response(req, ours, Config())
    resp.start_response("200 OK", [("Content-Type", "text/event-stream")])
    resp.send_headers()
    theirs.recv(1000)  # the headers: not the writer's
    for item in body:
        resp.write(item)
    resp.close()
    gunicorns = read_all(theirs)
    writer = StreamWriter(chunked=True)
    writer.own(ours)
    for item in body:
        writer.write(item)
    writer.end()
    assert read_all(theirs) == gunicorns == b"F\r\nid: 1\ndata: x\n\n\r\nD\r\n: heartbeat\n\n\r\n0\r\n\r\n"
    assert writer.sent == resp.sent
    ours.close()
    theirs.close()


def test_a_chunk_the_socket_took_in_part_is_finished_before_the_next_write_and_tallied_once():
    ours, theirs = gsocket.socketpair()
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8192)
    writer = StreamWriter(tally=DelayTally())
    writer.own(ours)
    frame = b"data: " + b"x" * 1_000_000 + b"\n\n"
    stored = time.time() - 0.2
    assert writer.offer(chunk(frame), len(frame), stored) == BEGUN
    assert writer.pending and writer.writing_since is not None
    assert writer.offer(chunk(b"other"), 5, stored) == REFUSED  # the socket is full
    reader = gevent.spawn(read_all, theirs)
    writer.write(b": next\n\n")
    got = reader.get()
    assert got == chunk(frame) + chunk(b": next\n\n")  # the begun chunk whole, then the next: nothing between
    assert writer.pending is None and writer.writing_since is None
    assert writer.sent == len(frame) + len(b": next\n\n")
    found = last_minute([writer.tally], time.time())
    assert found["count"] == 1 and found["p50"] == pytest.approx(0.2, rel=0.3)
    ours.close()
    theirs.close()


def _owning_a_socket() -> tuple[StreamWriter, socket.socket]:
    """A writer owning one end of a non-blocking socket pair, and the client's end."""
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    writer = StreamWriter()
    writer.own(ours)
    return writer, theirs


def test_a_chunk_the_socket_takes_whole_is_written_and_counted_without_blocking():
    writer, theirs = _owning_a_socket()
    assert writer.offer(chunk(b"data: 1\n\n"), 9, 0.0) == WRITTEN
    assert theirs.recv(100) == b"9\r\ndata: 1\n\n\r\n" and writer.sent == 9 and writer.pending is None
    writer.close()
    assert writer.sock is None and writer.direct is None
    theirs.close()


def test_a_chunk_offered_to_a_closed_connection_marks_the_writer_gone():
    writer, theirs = _owning_a_socket()
    theirs.close()  # the client went away (a reconnect storm)
    assert writer.offer(chunk(b"data: 1\n\n"), 9, 0.0) == REFUSED
    assert writer.gone and writer.sent == 0
    writer.close()
