"""A stream at rest: an open SSE response whose greenlet has ended while it waits (web.gevent_worker).

The hub writes frames to its socket meanwhile (fanout.hub). When the stream must write something itself,
its channel calls ``resume``, and a new greenlet goes on iterating the response's generator where it
yielded ``REST``: until it rests again, or ends. One request, one access log line, when the stream ends.
"""

from __future__ import annotations

import errno
from datetime import datetime
from functools import partial
from typing import Any

import gevent
from gevent.pool import Group
from gunicorn import util

from flexgate_stream.fanout.client_stream import REST

# What a resting stream keeps of its request's environ for its access log line (GunicornLogger.atoms).
ACCESS_KEYS = ("REMOTE_ADDR", "REQUEST_METHOD", "RAW_URI", "PATH_INFO", "QUERY_STRING", "SERVER_PROTOCOL",
               "HTTP_REFERER", "HTTP_USER_AGENT", "HTTP_X_FORWARDED_FOR")


class RestingStream:
    """What a resting stream's next greenlet needs to go on writing it, and to log it when it ends."""

    __slots__ = ("stream", "frames", "resp", "sock", "headers", "environ", "started", "greenlets", "log")

    def __init__(self, stream: Any, frames: Any, resp: Any, sock: Any, headers: Any, environ: dict[str, Any],
                 started: datetime, greenlets: Group, log: Any) -> None:
        self.stream = stream  # the response iterable: ``rest``, ``rebind`` and ``close``
        self.frames = frames  # its iterator, suspended where it yielded REST
        self.resp = resp  # gunicorn's response: chunked writes, bytes sent
        self.sock = sock
        self.headers = headers  # the request's headers, for the access log
        self.environ = environ
        self.started = started
        self.greenlets = greenlets  # where resumed streams run (the worker waits for them when it stops)
        self.log = log

    @classmethod
    def take_over(cls, stream: Any, frames: Any, resp: Any, req: Any, environ: dict[str, Any], started: datetime,
                  greenlets: Group, log: Any) -> RestingStream:
        """Move a stream that just yielded REST onto a duplicate of its socket (gunicorn and gevent close the
        original when the request's greenlet ends) and let it rest."""
        sock = resp.sock.dup()
        resp.sock = sock
        resp.req = None  # the response's headers are out: it no longer needs the request (nor its parser)
        stream.rebind(sock)
        held = cls(stream, frames, resp, sock, req.headers, {k: environ[k] for k in ACCESS_KEYS if k in environ},
                   started, greenlets, log)
        held.rest()
        return held

    def rest(self) -> None:
        self.stream.rest(partial(self.greenlets.spawn, self.resume))

    def resume(self) -> None:
        """Go on writing the stream (in its own greenlet) until it rests again or ends."""
        try:
            for item in self.frames:
                if item is REST:
                    self.rest()
                    return
                self.resp.write(item)
            self.resp.close()
        except TimeoutError:
            self.log.info("web: dropped a client that stopped reading (%s %s)",
                          self.environ.get("REQUEST_METHOD"), self.environ.get("PATH_INFO"))
        except OSError as exc:
            if exc.errno not in (errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN, errno.EBADF):
                self.log.exception("Socket error processing request.")
        except gevent.GreenletExit:
            pass
        except Exception:
            self.log.exception("Error handling request")
        self.end()

    def end(self) -> None:
        """The stream ended: release it, log the request, close the connection."""
        try:
            self.frames.close()
            self.stream.close()
            self.resp.sent += self.stream.sent_direct  # the frames the channel wrote count as sent too
        finally:
            self.log.access(self.resp, self.headers, self.environ, datetime.now() - self.started)
            util.close(self.sock)
