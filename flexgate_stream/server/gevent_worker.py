"""gunicorn's gevent worker (the base of conf/gunicorn.conf.py's ``worker_class``), with streams at rest.

An open SSE stream spends most of its life waiting for the next snapshot, which its channel writes to its
socket through the stream's writer (fanout.stream_writer). Parked in its greenlet, each such stream would keep
that greenlet's C stack and a page of Python frames; ``StreamingGeventWorker`` instead lets a stream that
offers it *rest* (server.resting): the greenlet ends, the writer keeps the connection on a duplicate of its
socket, and a new greenlet resumes the response's iterator when the stream must write something itself.

It also keeps its servers, so a stopping worker stops accepting at once (server.handover).

``run``, ``handle_request`` and ``_handle_request`` are copies of gunicorn 27.0's, changed where they say:
docs/architecture.md, "Where the web process departs from gunicorn", lists every such place and why, and
tests/unit/test_gunicorn_copies.py fails when the installed gunicorn's originals change.
"""

from __future__ import annotations

import socket
import sys
import time
from datetime import datetime
from functools import partial
from typing import Any

import gevent
from gevent.event import Event
from gevent.pool import Group, Pool
from gevent.server import StreamServer
from gunicorn import util
from gunicorn.http import message, wsgi
from gunicorn.sock import ssl_context
from gunicorn.workers.ggevent import GeventWorker

from flexgate_stream.fanout.stream_writer import REST
from flexgate_stream.server import gunicorn_hooks
from flexgate_stream.server.resting import Ending, RestingStream
from flexgate_stream.web.request_body import CLOSE_CONNECTION


class StreamingGeventWorker(GeventWorker):
    """gunicorn's gevent worker, with streams that rest without a greenlet while they wait."""

    resumed: Group | None = None  # the greenlets of resumed streams (gunicorn's pool does not hold them)
    ending: Ending | None = None  # ends the streams whose clients are gone, in batches
    alive: bool  # gunicorn's: False once the worker is stopping
    servers: list[StreamServer]  # one per listener, kept from run()
    stopping: Event | None = None  # set by stop_accepting: wakes run() from its once-a-second check

    def init_signals(self) -> None:
        """gunicorn's, then a SIGTERM that reached this worker since its fork heeded (it would have been lost)."""
        super().init_signals()
        if gunicorn_hooks.sigterm_since_fork():
            self.alive = False

    def run(self) -> None:
        """gunicorn's (27.0) GeventWorker.run for plain HTTP (``server_class`` unset), with its servers kept,
        so a stopping worker stops accepting at once (``stop_accepting``) and goes on to its graceful stop then
        rather than at its next once-a-second check, with resumed streams waited for as gunicorn waits for
        its pool, with the Date header's text made once a second (``dates_once_a_second``) and the peer's trust
        remembered (``peers_remembered``)."""
        self.stopping = Event()
        dates_once_a_second()
        peers_remembered()
        ssl_args = {"ssl_context": ssl_context(self.cfg)} if self.cfg.is_ssl else {}
        self.servers = []
        for listener in self.sockets:
            listener.setblocking(1)
            server = StreamServer(listener, handle=partial(self.handle, listener), spawn=Pool(self.worker_connections),
                                  **ssl_args)
            if self.cfg.workers > 1:
                server.max_accept = 1
            server.start()
            self.servers.append(server)
        while self.alive:
            self.notify()
            self.stopping.wait(1.0)
        self.stop_accepting()
        deadline = time.monotonic() + self.cfg.graceful_timeout
        while time.monotonic() < deadline:
            busy = any(s.pool.free_count() != s.pool.size for s in self.servers) or bool(self.resumed)
            if not busy:
                return
            self.notify()
            gevent.sleep(0.05)
        self.log.warning("Worker graceful timeout (pid:%s)", self.pid)
        for server in self.servers:
            server.stop(timeout=1)
        if self.resumed is not None:
            self.resumed.kill(block=True, timeout=1)

    def stop_accepting(self) -> None:
        """Close this worker's listeners (the other workers keep theirs): new connections go to them."""
        self.alive = False
        if self.stopping is not None:
            self.stopping.set()
        for server in getattr(self, "servers", []):
            if not server.closed:
                server.close()

    def handle_request(self, listener_name: Any, req: Any, sock: Any, addr: Any) -> Any:
        try:
            return self._handle_request(listener_name, req, sock, addr)
        except (gevent.GreenletExit, SystemExit):
            return None  # as gunicorn's GeventWorker: the worker is being stopped

    def _handle_request(self, listener_name: Any, req: Any, sock: Any, addr: Any) -> bool:
        """gunicorn's (27.0) AsyncWorker.handle_request, with two changes: a response iterable that offers
        ``allow_rest`` is written by ``_write_stream``, which may hand the connection to a resting stream; and a
        request whose body stopped arriving (``CLOSE_CONNECTION``) closes the connection after its answer."""
        request_start = datetime.now()
        environ: dict[str, Any] = {}
        resp = None
        handed_over = False
        try:
            self.cfg.pre_request(self, req)
            resp, environ = wsgi.create(req, sock, addr, listener_name, self.cfg)
            environ["wsgi.multithread"] = True
            self.nr += 1
            if self.nr >= self.max_requests and self.alive:
                self.log.info("Autorestarting worker after current request.")
                self.alive = False
            if not self.alive or not self.cfg.keepalive:
                resp.force_close()
            respiter = self.wsgi(environ, resp.start_response)
            if self.is_already_handled(respiter):
                return False
            if environ.get(CLOSE_CONNECTION):
                resp.force_close()  # not gunicorn's keep-alive wait for the rest of the body: FLEXGATE_BODY_TIMEOUT
            try:
                if isinstance(respiter, environ["wsgi.file_wrapper"]):
                    resp.write_file(respiter)
                elif getattr(respiter, "allow_rest", None) is not None and respiter.allow_rest():
                    handed_over = self._write_stream(respiter, resp, req, environ, request_start)
                    if handed_over:
                        raise StopIteration()  # gunicorn closes its socket; the stream goes on on its duplicate
                else:
                    for item in respiter:
                        resp.write(item)
                resp.close()
            finally:
                if not handed_over:
                    self.log.access(resp, req, environ, datetime.now() - request_start)
                    if hasattr(respiter, "close"):
                        respiter.close()
            if resp.should_close():
                raise StopIteration()
        except StopIteration:
            raise
        except OSError:
            util.reraise(*sys.exc_info())
        except (Exception, SystemExit):
            if resp and resp.headers_sent:
                self.log.exception("Error handling request")
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                    sock.close()
                except OSError:
                    pass
                raise StopIteration() from None
            raise
        finally:
            try:
                self.cfg.post_request(self, req, environ, resp)
            except Exception:
                self.log.exception("Exception in post_request hook")
        return True

    def _write_stream(self, stream: Any, resp: Any, req: Any, environ: dict[str, Any], started: datetime) -> bool:
        """Write a stream that may rest until it first does; then hand it over to a ``RestingStream``.
        True when it rests (it owns the connection now), False when it ended."""
        frames = iter(stream)
        for item in frames:
            if item is REST:
                break
            if resp.headers_sent:
                resp.write(item)
            else:
                _write_gathered(resp, item)
        else:
            return False
        if self.resumed is None:
            self.resumed = Group()
            self.ending = Ending(self.resumed, self.log)
        RestingStream.take_over(stream, frames, resp, req, environ, started, self.resumed, self.log, self.ending)
        return True


def dates_once_a_second() -> None:
    """Make gunicorn's ``util.http_date`` (the Date header of every response) format the time once a second, not
    once a response: the text only changes with the second, and formatting it was 2 % of a stream's opening."""
    if getattr(util.http_date, "once_a_second", False):
        return
    formatted = util.http_date
    last: list[Any] = [None, ""]

    def http_date(timestamp: float | None = None) -> str:
        if timestamp is not None:
            return str(formatted(timestamp))
        second = int(time.time())
        if last[0] != second:
            last[:] = [second, formatted(second)]
        return str(last[1])

    http_date.once_a_second = True  # type: ignore[attr-defined]
    util.http_date = http_date


PEERS_KEPT = 1024  # peer addresses whose trust is remembered (behind nginx, one)


def peers_remembered() -> None:
    """Make gunicorn's check of a request's peer against ``forwarded_allow_ips`` (every request, to know whether it
    may set X-Forwarded-* headers) remember its answer per address: it parsed the address again for every request,
    3 % of a stream's opening. The same answers."""
    if getattr(message._ip_in_allow_list, "remembered", False):
        return
    check = message._ip_in_allow_list
    known: dict[tuple[str, int, int], tuple[Any, Any, bool]] = {}

    def ip_in_allow_list(ip_str: str, allow_list: Any, networks: Any) -> bool:
        key = (ip_str, id(allow_list), id(networks))
        found = known.get(key)
        if found is not None and found[0] is allow_list and found[1] is networks:  # the same config's lists
            return found[2]
        trusted = bool(check(ip_str, allow_list, networks))
        if len(known) >= PEERS_KEPT:
            known.clear()
        known[key] = (allow_list, networks, trusted)
        return trusted

    ip_in_allow_list.remembered = True  # type: ignore[attr-defined]
    message._ip_in_allow_list = ip_in_allow_list


class _Gather:
    """Stands in for a response's socket: keeps what gunicorn writes, to be sent in one system call."""

    __slots__ = ("parts",)

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def sendall(self, data: bytes) -> None:
        self.parts.append(data)


def _write_gathered(resp: Any, item: bytes) -> None:
    """gunicorn's ``resp.write(item)`` with the headers it sends first, in one send rather than two: on a new
    loopback connection each send costs about as much as the rest of opening the stream."""
    sock, gather = resp.sock, _Gather()
    resp.sock = gather
    try:
        resp.write(item)
    finally:
        resp.sock = sock
    sock.sendall(b"".join(gather.parts))
