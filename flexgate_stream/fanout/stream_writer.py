"""StreamWriter: everything the fan-out does to one SSE client's socket.

gunicorn writes a stream's headers and the frames its response iterator yields until the stream first
rests. From then on the writer owns the connection, on a duplicate of its socket (gunicorn and gevent close
the original when the request's greenlet ends): the channel hands it each new frame's pre-encoded HTTP/1.1
chunk to send without blocking (``offer``); what a full socket took only in part waits in ``pending`` and is
finished (``finish``) before the stream's own greenlet writes anything else (``write``, ``end``). Every write
to the socket is bounded by the send timeout (``bound_writes``), and every frame written whole is tallied in
its feed's freshness histogram.

Only chunked HTTP/1.1 responses on a plain (not TLS) socket are written here: a browser, or nginx with
``proxy_http_version 1.1``. Any other stream is written by gunicorn alone.
"""

from __future__ import annotations

import socket
import time
from typing import Any

from flexgate_stream.fanout.delays import DelayTally

# What a resting stream's iterator yields instead of parking its greenlet (ClientStream.allow_rest): never
# written, a sign to the WSGI server that the stream waits and its greenlet may end.
REST = b"\0rest"
LAST_CHUNK = b"0\r\n\r\n"  # what ends a chunked body

# What ``offer`` did with a chunk.
REFUSED = 0  # nothing sent (the socket is full or failed): the stream writes the frame itself
BEGUN = 1  # sent in part: the rest is ``pending``
WRITTEN = 2  # sent whole


def chunk(data: bytes) -> bytes:
    """``data`` as one HTTP/1.1 chunk, byte for byte what gunicorn's chunked response writes for it."""
    return b"%X\r\n%b\r\n" % (len(data), data)


def record_written(tally: DelayTally | None, stored: float, count: int = 1) -> None:
    """``count`` clients finished writing a frame JetStream stored at ``stored`` (epoch s, 0: unknown) just now."""
    if tally is not None and stored:
        now = time.time()
        tally.add(now - stored, count, now)


def bound_writes(sock: Any, timeout_seconds: float, buffer_bytes: int) -> None:
    """Bound what a client that stops reading costs: every write to ``sock`` fails after ``timeout_seconds``, its
    send buffer is fixed at ``buffer_bytes`` (the kernel doubles it for its bookkeeping; left to autotune it grows
    to the tcp_wmem maximum, 4 MiB), and the kernel drops the connection once the client's receive window has
    stayed shut (or sent data unacknowledged) that long, whether or not a write is waiting. docs/operations.md,
    "Clients that stop reading", has the figures."""
    sock.settimeout(timeout_seconds)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, buffer_bytes)
    user_timeout = getattr(socket, "TCP_USER_TIMEOUT", None)  # Linux only
    # The OS socket's family, a plain number: a gevent (or Python) socket's ``family`` makes an enum member each time.
    if user_timeout is not None and getattr(sock, "_sock", sock).family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, user_timeout, round(timeout_seconds * 1000))


class StreamWriter:
    """The socket of one SSE response: who writes to it, what is left of a chunk, and the bytes written here."""

    # One per open stream: slots keep it small.
    __slots__ = ("sock", "chunked", "direct", "pending", "pending_stored", "writing_since", "sent", "tally", "gone")

    def __init__(self, sock: Any = None, *, chunked: bool = False, tally: DelayTally | None = None) -> None:
        self.sock = sock  # the response's socket (None: a stream without one), cut by ``cut`` at shutdown
        self.chunked = chunked  # gunicorn sends the body chunked on a plain socket, so this writer may own it
        self.direct: Any = None  # the non-blocking OS socket the channel writes chunks to, once this writer owns it
        self.pending: bytes | None = None  # the end of a chunk ``offer`` began, to be written before anything else
        self.pending_stored = 0.0  # when JetStream stored the frame of ``pending``
        self.writing_since: float | None = None  # monotonic time the write under way began, if one is
        self.sent = 0  # body bytes (SSE frames) written here rather than through the server's response
        self.tally = tally  # the feed's freshness histogram: stored -> written whole
        self.gone = False  # a send failed (the client closed or reset the connection): the stream can only end

    def writing(self) -> None:
        """A write of this stream began (the server writes what its iterator yielded)."""
        self.writing_since = time.monotonic()

    def wrote(self) -> None:
        """The write under way is done."""
        self.writing_since = None

    def hold(self) -> Any:
        """Own the connection from now on, on a duplicate of the response's socket (the server closes the original
        when its greenlet ends); the duplicate, for the server's record of the response."""
        dup = self.sock.dup()
        self.own(dup)
        return dup

    def own(self, sock: Any) -> None:
        """Write to ``sock`` from now on; the channel may write chunks to it directly while the stream waits."""
        self.sock = sock
        self.direct = getattr(sock, "_sock", sock)  # a gevent socket's own non-blocking socket

    def offer(self, data: bytes, payload: int, stored: float) -> int:
        """Send the chunk ``data`` (an SSE frame of ``payload`` bytes, stored at ``stored``) without blocking:
        REFUSED, BEGUN (the rest is pending) or WRITTEN. The one write of the channel's pass over its clients."""
        try:
            sent = self.direct.send(data)
        except BlockingIOError:  # the socket is full: the stream writes the frame itself, bounded by the timeout
            return REFUSED
        except OSError:  # the connection is gone (in a reconnect storm, for thousands of streams at once)
            self.gone = True
            return REFUSED
        if sent == len(data):  # the common case first: this runs once per client per frame
            self.sent += payload
            return WRITTEN
        if not sent:
            return REFUSED
        self.sent += payload
        self.pending, self.pending_stored = data[sent:], stored
        self.writing_since = time.monotonic()
        return BEGUN

    def finish(self) -> None:
        """Write the end of a chunk ``offer`` began (blocking, up to the send timeout), and tally its frame."""
        if self.pending is None:
            return
        rest, self.pending = self.pending, None
        self.sock.sendall(rest)
        self.writing_since = None
        record_written(self.tally, self.pending_stored)

    def write(self, data: bytes) -> None:
        """Write ``data`` as one chunk (blocking, up to the send timeout), after what is pending."""
        self.finish()
        if data:  # an empty chunk would end the body
            self.sock.sendall(chunk(data))
            self.sent += len(data)

    def end(self) -> None:
        """End the chunked body."""
        self.finish()
        self.sock.sendall(LAST_CHUNK)

    def cut(self) -> None:
        """Shut the connection down, so a write blocked on a client that stopped reading (stalled) fails at once."""
        if self.sock is None:
            return
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def close(self) -> None:
        """Close the socket this writer owns."""
        sock, self.sock, self.direct = self.sock, None, None
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass
