"""A stream at rest: an open SSE response whose greenlet has ended while it waits (server.gevent_worker).

Its writer owns the connection (fanout.stream_writer), and the channel writes frames to it meanwhile. When the
stream must write something itself, its channel calls ``resume``, and a new greenlet goes on iterating the
response's generator where it yielded ``REST``, handing each frame to the writer: until it rests again, or
ends. One request, one access log line, when the stream ends.
"""

from __future__ import annotations

import errno
from collections import deque
from datetime import datetime
from typing import Any

import gevent
from gevent.pool import Group

from flexgate_stream.fanout.stream_writer import REST, StreamWriter

ENDING_BATCH = 32  # streams of gone clients ended between two looks at what else is waiting to run

# What a resting stream keeps of its request's environ for its access log line (GunicornLogger.atoms).
ACCESS_KEYS = ("REMOTE_ADDR", "REQUEST_METHOD", "RAW_URI", "PATH_INFO", "QUERY_STRING", "SERVER_PROTOCOL",
               "HTTP_REFERER", "HTTP_USER_AGENT", "HTTP_X_FORWARDED_FOR")


class RestingStream:
    """What a resting stream's next greenlet needs to go on writing it, and to log it when it ends."""

    __slots__ = ("stream", "frames", "writer", "resp", "headers", "environ", "started", "greenlets", "log", "ending")

    def __init__(self, stream: Any, frames: Any, resp: Any, headers: Any, environ: dict[str, Any],
                 started: datetime, greenlets: Group, log: Any, ending: Ending | None = None) -> None:
        self.stream = stream  # the response iterable: ``writer``, ``rest`` and ``close``
        self.frames = frames  # its iterator, suspended where it yielded REST
        self.writer: StreamWriter = stream.writer  # owns the connection from now on
        self.resp = resp  # gunicorn's response, kept for the access log (status, bytes sent)
        self.headers = headers  # the request's headers, for the access log
        self.environ = environ
        self.started = started
        self.greenlets = greenlets  # where resumed streams run (the worker waits for them when it stops)
        self.log = log
        self.ending = ending  # where the worker ends streams whose clients are gone, a batch at a time

    @classmethod
    def take_over(cls, stream: Any, frames: Any, resp: Any, req: Any, environ: dict[str, Any], started: datetime,
                  greenlets: Group, log: Any, ending: Ending | None = None) -> RestingStream:
        """Hand the connection of a stream that just yielded REST to its writer and let it rest."""
        resp.sock = stream.writer.hold()
        resp.req = None  # the response's headers are out: it no longer needs the request (nor its parser)
        held = cls(stream, frames, resp, req.headers, {k: environ[k] for k in ACCESS_KEYS if k in environ},
                   started, greenlets, log, ending)
        held.rest()
        return held

    def rest(self) -> None:
        self.stream.rest(self.wake)

    def wake(self) -> None:
        """The channel's call: the stream must run again (or, its client gone, end)."""
        if self.writer.gone and self.ending is not None:
            self.ending.add(self)
        else:
            self.greenlets.spawn(self.resume)

    def resume(self) -> None:
        """Go on writing the stream (in its own greenlet) until it rests again or ends."""
        writer = self.writer
        if writer.gone:  # nothing can be written any more: end it now, without taking and writing the frame
            self.end()
            return
        try:
            writer.finish()  # the end of a chunk the channel began: nothing may come between
            for item in self.frames:
                if item is REST:
                    self.rest()
                    return
                writer.write(item)
            writer.end()
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
        finally:
            self.resp.sent += self.writer.sent  # what the writer wrote, past gunicorn's response, counts as sent
            self.log.access(self.resp, self.headers, self.environ, datetime.now() - self.started)
            self.writer.close()


class Ending:
    """Ends the resting streams whose clients are gone, ENDING_BATCH at a time in one greenlet of the worker.

    After a deploy or a network blip, thousands of clients close their streams at once and the next frame finds
    every one gone. Ended one greenlet each, all would run before any request that arrives meanwhile (gevent runs
    greenlets in the order they were started): a probe would wait for every one of them. Here each batch gives
    way to what arrived before it goes on."""

    def __init__(self, greenlets: Group, log: Any) -> None:
        self.greenlets = greenlets  # the worker waits for them when it stops
        self.log = log
        self.queue: deque[RestingStream] = deque()
        self.running = False

    def add(self, stream: RestingStream) -> None:
        self.queue.append(stream)
        if not self.running:
            self.running = True
            self.greenlets.spawn(self._run)

    def _run(self) -> None:
        queue = self.queue
        try:
            while queue:
                for _ in range(min(ENDING_BATCH, len(queue))):
                    try:
                        queue.popleft().end()
                    except Exception:
                        self.log.exception("Error ending a stream")
                gevent.sleep(0)  # requests that arrived meanwhile run before the next batch
        finally:
            self.running = False
