"""One client's SSE stream: hello, catch-up (from the ring or JetStream), live frames, heartbeats, last frame.

A generator of frames: it never touches the client's socket. gunicorn writes what it yields; the channel
writes live frames to the socket of a resting stream through the stream's writer (fanout.stream_writer).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from datetime import timedelta
from typing import Any

from flexgate_stream import sse
from flexgate_stream.fanout.catch_up import CatchUp
from flexgate_stream.fanout.channel import Channel, Frame, Overrun, Policy, Subscriber
from flexgate_stream.fanout.feeds import Feed
from flexgate_stream.fanout.host import StreamHost
from flexgate_stream.fanout.stream_writer import REST, StreamWriter


class ClientStream:
    """The frames of one SSE response, as an iterator the WSGI server writes out.

    The client is registered with its host when made (so capacity counts it at once) and released by
    ``close()``, which the WSGI server calls whether or not the response was ever iterated.
    """

    # One per open stream: slots keep each a few hundred bytes smaller than a __dict__ would.
    __slots__ = ("service", "feed", "channel", "last_id", "since", "label", "needs_history", "sub", "writer",
                 "rests", "_told", "_next_beat", "_writing")

    def __init__(self, service: StreamHost, feed: Feed, channel: Channel, *, last_id: int | None = None,
                 since: timedelta | None = None, writer: StreamWriter | None = None) -> None:
        self.service = service
        self.feed = feed
        self.channel = channel
        self.last_id = last_id
        self.since = since
        self.label = feed.label
        cursor, self.needs_history = self._start()
        # The writer of the response's socket: the server hands it the connection when the stream rests.
        self.writer = writer if writer is not None else StreamWriter()
        self.sub: Subscriber | None = service.attach(feed, channel, cursor, self.writer)
        self.sub.last_seq = last_id or 0
        self.rests = False  # whether the live loop rests (yields REST) instead of parking its greenlet
        self._told = False  # the NATS state this client was last told of
        self._next_beat = 0.0  # monotonic time of the next heartbeat
        self._writing: Sequence[Frame] = ()  # the live frames of the chunk being written (for their delay)

    def __iter__(self) -> Iterator[bytes]:
        return self._frames()

    def allow_rest(self) -> bool:
        """Called by a WSGI server that can resume this response's iterator from another greenlet: while
        waiting, the iterator then yields ``REST`` and the server calls ``rest`` instead of keeping a greenlet
        parked for it. Only chunked, plain-socket streams rest, since their writer can own the socket (and the
        channel write their frames) meanwhile. True when accepted."""
        self.rests = self.writer.chunked
        return self.rests

    def rest(self, resume: Callable[[], Any]) -> None:
        """After the iterator yielded ``REST`` and the server handed the connection to ``writer``: wait without a
        greenlet until ``resume`` is called (from the channel) to go on iterating; the channel offers frames to
        the writer meanwhile."""
        if self.sub is not None:
            self.sub.rest(max(0.0, self._next_beat - time.monotonic()), resume)

    def close(self) -> None:
        """Release the client (once)."""
        if self.sub is not None:
            sub, self.sub = self.sub, None
            self.service.release(self.feed, sub)

    def _frames(self) -> Iterator[bytes]:
        sub = self.sub
        if sub is None:
            return
        writer = self.writer
        self._told = self.service.hub.connected
        try:
            hello = yield from self._opening(sub)
            # The live part runs in this generator, not a nested one: a parked stream's greenlet keeps a copy
            # of its C stack, and every generator level it is suspended in adds to it, for every open stream.
            self._next_beat = time.monotonic() + self.service.settings.heartbeat_seconds
            step, last = self._live_step(sub, wait=False)
            first = hello + step if step else hello  # the opening in one write: hello and the ring's newest
            hello = step = b""
            while True:
                if first:
                    writer.writing()
                    yield first
                    writer.wrote()
                    first = b""
                    if self._writing:
                        self._tally_written()  # in a method: the generator keeps no frame alive while it waits
                    if last:
                        return
                step, last = self._live_step(sub)
                if step is None:
                    continue
                if step is REST:
                    yield step  # the server rests this stream and resumes it when it must run again
                    continue
                first, step = step, None
        finally:
            self.close()

    def _opening(self, sub: Subscriber) -> Generator[bytes, None, bytes]:
        """The hello, then what the client missed or JetStream's newest snapshot; returns the hello when it is
        still to be written (with the ring's newest frame, in the same write)."""
        writer = self.writer
        hello = sse.connected(sse.client_id(), self.service.settings.retry_ms)  # the id is only ever told
        if not self._told:
            hello += sse.status(False)
        if self.needs_history:  # the hello goes first: the client knows it is connected meanwhile
            writer.writing()
            yield hello
            writer.wrote()
            hello = b""
        for chunk in self._catch_up(sub, hello):
            writer.writing()
            yield chunk  # resumed once the server has written it, so a client that stops reading shows here
            writer.wrote()
            hello = b""  # the first chunk began with it
        return hello

    def _catch_up(self, sub: Subscriber, hello: bytes) -> Iterator[bytes]:
        """What the client missed (resume, ?since=), or the newest snapshot from JetStream when the ring may not
        have it yet (its first chunk then begins with ``hello``; nothing when the ring has it)."""
        if self.needs_history:
            yield from CatchUp(self.service, self.feed, self.channel, last_id=self.last_id,
                               since=self.since).catch_up(sub)
        elif self.last_id is None and self.channel.policy is Policy.LATEST:
            yield from CatchUp(self.service, self.feed, self.channel, last_id=None, since=None).newest(sub, hello)

    def _start(self) -> tuple[int, bool]:
        """Where the client enters the ring, and whether JetStream must fill in what the ring lacks."""
        channel = self.channel
        if self.since is not None:
            return channel.first_index, True
        if self.last_id is None:
            newest = channel.latest
            if channel.policy is Policy.LATEST and newest is not None:
                return newest.index, False
            return channel.next_index, False
        if self.last_id > channel.last_seq:  # newer than this worker has seen: JetStream decides
            return channel.first_index, True
        index = channel.index_after(self.last_id)
        if index is not None:
            return index, False
        if channel.last_seq and self.last_id == channel.last_seq and not channel.ring:
            return channel.next_index, False
        return channel.first_index, True

    def _live_step(self, sub: Subscriber, wait: bool = True) -> tuple[bytes | None, bool]:
        """The next live chunk (a frame, a status event on NATS changes, a heartbeat, the last frame at
        shutdown) and whether it is the last; (None, False) after waiting for the channel, or (REST, False)
        when a resting stream has nothing to write; without ``wait``, (b"", False) for nothing."""
        hub = self.service.hub
        if hub.closing:
            return sse.shutdown("the server is restarting", self._jittered_retry()), True
        if hub.connected != self._told:
            self._told = hub.connected
            return sse.status(self._told), False
        try:
            frames = sub.take()
        except Overrun:
            self.service.metrics.reset(self.label)
            return sse.reset("the client fell too far behind; reconnect to resume", self._jittered_retry()), True
        if sub.skipped:
            self.service.metrics.skipped(sub.skipped)
            sub.skipped = 0
        now = time.monotonic()
        if frames:
            self.service.metrics.sent(self.label, len(frames))
            self._next_beat = now + self.service.settings.heartbeat_seconds
            self._writing = frames
            return b"".join(f.sse for f in frames), False
        if now >= self._next_beat:
            self._next_beat = now + self.service.settings.heartbeat_seconds
            return sse.HEARTBEAT, False
        if not wait:
            return b"", False
        if self.rests:
            return REST, False
        sub.park(self._next_beat - now)
        return None, False

    def _tally_written(self) -> None:
        """The server finished writing this stream's live frames: tally each one's delay since it was stored."""
        for frame in self._writing:
            self.channel.record_written(frame.stored)
        self._writing = ()

    def _jittered_retry(self) -> int:
        """A reconnect delay spread over 0.5..1.5 x retry_ms, so clients do not all return at once."""
        return int(self.service.settings.retry_ms * random.uniform(0.5, 1.5))

