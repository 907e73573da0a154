"""The opening of a stream leaves in one send: gunicorn's headers and the first chunk together."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from gunicorn.config import Config
from gunicorn.http.wsgi import Response

from flexgate_stream.fanout.stream_writer import REST
from flexgate_stream.server.gevent_worker import StreamingGeventWorker

pytestmark = pytest.mark.timeout(10)


class Socket:
    """What gunicorn's response sends, one entry per system call."""

    def __init__(self) -> None:
        self.sends: list[bytes] = []

    def sendall(self, data: bytes) -> None:
        self.sends.append(data)


class Stream:
    """A response iterable that ends instead of resting (so nothing is handed over)."""

    def __init__(self, frames: list[bytes]) -> None:
        self.frames = frames

    def __iter__(self) -> Any:
        return iter(self.frames)


def response(sock: Socket) -> Any:
    req = SimpleNamespace(version=(1, 1), method="GET", path="/api/stream/metrics", headers=[],
                          should_close=lambda: False)
    resp = Response(req, sock, Config())
    resp.start_response("200 OK", [("Content-Type", "text/event-stream; charset=utf-8")])
    return resp


def test_the_headers_and_the_opening_chunk_leave_in_one_send_then_each_chunk_in_its_own():
    sock = Socket()
    resp = response(sock)
    worker = StreamingGeventWorker.__new__(StreamingGeventWorker)
    handed_over = worker._write_stream(Stream([b"hello and newest", b"next"]), resp, None, {}, None)
    assert handed_over is False
    assert len(sock.sends) == 2
    head, first = sock.sends[0].split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200 OK\r\n") and b"Transfer-Encoding: chunked" in head
    assert first == b"10\r\nhello and newest\r\n"
    assert sock.sends[1] == b"4\r\nnext\r\n"
    assert resp.headers_sent and resp.sent == len(b"hello and newest") + len(b"next")
    assert REST not in sock.sends


def test_the_date_header_is_gunicorns_text_made_once_a_second(monkeypatch):
    from gunicorn import util

    from flexgate_stream.server.gevent_worker import dates_once_a_second

    calls: list[Any] = []
    original = util.http_date

    def counted(timestamp: float | None = None) -> str:
        calls.append(timestamp)
        return str(original(timestamp))

    monkeypatch.setattr(util, "http_date", counted)
    now = [1_780_000_000.25]
    monkeypatch.setattr("flexgate_stream.server.gevent_worker.time.time", lambda: now[0])
    dates_once_a_second()
    first = [util.http_date() for _ in range(5)]
    now[0] += 0.5  # the same second
    first.append(util.http_date())
    now[0] += 1.0
    later = util.http_date()
    assert first == [original(1_780_000_000)] * 6 and later == original(1_780_000_001)
    assert len(calls) == 2  # formatted once for each second
    assert util.http_date(86400.0) == original(86400.0) == "Fri, 02 Jan 1970 00:00:00 GMT"
