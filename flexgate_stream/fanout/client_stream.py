"""One client's SSE stream: hello, catch-up (from the ring or JetStream), live frames, heartbeats, last frame."""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, TypeVar

from flexgate_stream import sse
from flexgate_stream.errors import NatsUnavailable
from flexgate_stream.fanout import jetstream_api
from flexgate_stream.fanout.feeds import Feed
from flexgate_stream.fanout.hub import Channel, Frame, Overrun, Policy, StreamHub, Subscriber
from flexgate_stream.settings import Settings

REPLAY_BATCH = 100
# What a resting stream's iterator yields instead of parking its greenlet (see ClientStream.allow_rest): not
# written, a sign to the WSGI server that the stream waits and its greenlet may end.
REST = b"\0rest"
BUS_WAIT_SECONDS = 60.0  # how long a resume waits for NATS before it gives up with event: reset

T = TypeVar("T")


class StreamCounters(Protocol):
    """What a client stream counts (web.prometheus.WebMetrics)."""

    def sent(self, label: str, count: int = 1) -> None: ...

    def reset(self, label: str) -> None: ...

    def skipped(self, count: int) -> None: ...


class StreamHost(Protocol):
    """What one client stream needs from the worker that serves it (web.extension.StreamService)."""

    @property
    def hub(self) -> StreamHub: ...

    @property
    def settings(self) -> Settings: ...

    @property
    def metrics(self) -> StreamCounters: ...

    def call(self, fn: Callable[..., Coroutine[Any, Any, T]], *args: Any) -> T: ...

    def attach(self, feed: Feed, channel: Channel, cursor: int, sock: Any = None) -> Subscriber: ...

    def release(self, feed: Feed, sub: Subscriber) -> None: ...


class ClientStream:
    """The frames of one SSE response, as an iterator the WSGI server writes out.

    The client is registered with its host when made (so capacity counts it at once) and released by
    ``close()``, which the WSGI server calls whether or not the response was ever iterated.
    """

    # One per open stream: slots keep each a few hundred bytes smaller than a __dict__ would.
    __slots__ = ("service", "feed", "channel", "last_id", "since", "label", "needs_history", "sub",
                 "sock", "rests", "sent_direct", "_told", "_next_beat", "_writing")

    def __init__(self, service: StreamHost, feed: Feed, channel: Channel, *, last_id: int | None = None,
                 since: timedelta | None = None, sock: Any = None, direct: bool = False) -> None:
        self.service = service
        self.feed = feed
        self.channel = channel
        self.last_id = last_id
        self.since = since
        self.label = feed.label
        cursor, self.needs_history = self._start()
        self.sub: Subscriber | None = service.attach(feed, channel, cursor, sock)
        self.sub.last_seq = last_id or 0
        # With ``direct`` (a chunked HTTP/1.1 response on a plain gevent socket) the channel may write frames
        # straight to the socket while this stream waits: see hub.Channel.publish.
        self.sock: Any = sock if direct else None
        self.rests = False  # whether the live loop rests (yields REST) instead of parking its greenlet
        self.sent_direct = 0  # body bytes the channel wrote past the response (known once closed)
        self._told = False  # the NATS state this client was last told of
        self._next_beat = 0.0  # monotonic time of the next heartbeat
        self._writing: Sequence[Frame] = ()  # the live frames of the chunk being written (for their delay)

    def __iter__(self) -> Iterator[bytes]:
        return self._frames()

    def allow_rest(self) -> bool:
        """Called by a WSGI server that can resume this response's iterator from another greenlet: while
        waiting, the iterator then yields ``REST`` and the server calls ``rest`` instead of keeping a greenlet
        parked for it. Only direct (chunked, plain-socket) streams rest, since the channel writes their frames.
        True when accepted."""
        self.rests = self.sock is not None
        return self.rests

    def rebind(self, sock: Any) -> None:
        """Write to ``sock`` from now on (the server moved the connection to a duplicate of its socket)."""
        self.sock = sock
        if self.sub is not None:
            self.sub.conn = sock
            self.sub.sock = getattr(sock, "_sock", None)

    def rest(self, resume: Callable[[], Any]) -> None:
        """After the iterator yielded ``REST``: wait without a greenlet until ``resume`` is called (from the
        hub) to go on iterating; the channel writes frames to the socket meanwhile."""
        if self.sub is not None:
            self.sub.rest(max(0.0, self._next_beat - time.monotonic()), resume)

    def close(self) -> None:
        """Release the client (once)."""
        if self.sub is not None:
            sub, self.sub = self.sub, None
            self.sent_direct = sub.sent_direct
            self.service.release(self.feed, sub)

    def _frames(self) -> Iterator[bytes]:
        sub = self.sub
        if sub is None:
            return
        self._told = self.service.hub.connected
        try:
            for chunk in self._opening(sub, self._told):
                sub.writing_since = time.monotonic()
                yield chunk  # resumed once the server has written it, so a client that stops reading shows here
                sub.writing_since = None
            chunk = b""  # not kept alive while the stream is parked
            # The live part runs in this generator, not a nested one: a parked stream's greenlet keeps a copy
            # of its C stack, and every generator level it is suspended in adds to it, for every open stream.
            if self.sock is not None:
                sub.sock = getattr(self.sock, "_sock", None)  # the response's headers are out by now
            self._next_beat = time.monotonic() + self.service.settings.heartbeat_seconds
            while True:
                step, last = self._live_step(sub)
                if step is None:
                    continue
                if step is REST:
                    yield step  # the server rests this stream and resumes it when it must run again
                    continue
                sub.writing_since = time.monotonic()
                yield step
                sub.writing_since = None
                step = None
                if self._writing:
                    self._tally_written()  # in a method: the generator keeps no frame alive while it waits
                if last:
                    return
        finally:
            self.close()

    def _opening(self, sub: Subscriber, told: bool) -> Iterator[bytes]:
        """The hello, then what the client missed (resume, ?since=) or the newest snapshot."""
        hello = sse.connected(str(uuid.uuid4()), self.service.settings.retry_ms)  # the id is only ever told
        yield hello if told else hello + sse.status(False)
        if self.needs_history:
            yield from self._catch_up(sub)
        elif self.last_id is None and self.channel.policy is Policy.LATEST:
            yield from self._newest(sub)

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

    def _newest(self, sub: Subscriber) -> Iterator[bytes]:
        """The newest snapshot from JetStream when this worker's consumer has not delivered it yet."""
        try:
            stored = self.channel.newest_lookup.get(
                lambda: self.service.call(jetstream_api.last_message, self.feed.stream, self.feed.subject))
        except NatsUnavailable:
            return  # the ring's newest (if any) is the best there is
        if stored is None:
            return
        known = self.channel.latest
        if known is not None and known.seq >= stored.seq:
            sub.last_seq = max(sub.last_seq, stored.seq - 1)  # the ring has it: skip what is older
            return
        sub.last_seq = stored.seq  # the ring's older frames are skipped, later ones follow
        self.service.metrics.sent(self.label)
        yield sse.frame(stored.data, id=stored.seq)

    def _catch_up(self, sub: Subscriber) -> Iterator[bytes]:
        """Replay what the client missed; while NATS cannot be read, hold the stream open and try again."""
        deadline = time.monotonic() + BUS_WAIT_SECONDS
        while True:
            try:
                yield from self._read_history(sub)
                return
            except NatsUnavailable:
                if sub.last_seq:  # part was replayed: go on from there when the bus answers
                    self.since, self.last_id = None, sub.last_seq
                if time.monotonic() >= deadline or self.service.hub.closing:
                    yield from self._reset(sub, "history cannot be read while the message bus is unavailable")
                    return
                yield from self._await_bus(deadline)

    def _await_bus(self, deadline: float) -> Iterator[bytes]:
        """Heartbeats until the hub reports NATS connected (at least one short pause), the deadline or shutdown."""
        hub = self.service.hub
        pause = min(1.0, self.service.settings.heartbeat_seconds)
        self.channel.wait(pause)
        while not hub.connected and not hub.closing and time.monotonic() < deadline:
            yield sse.HEARTBEAT
            self.channel.wait(min(self.service.settings.heartbeat_seconds, max(0.0, deadline - time.monotonic())))

    def _read_history(self, sub: Subscriber) -> Iterator[bytes]:
        """Replay from JetStream what the client missed and the ring no longer (or never) held."""
        if self.since is not None:
            start = datetime.now(UTC) - self.since
            newest = self.channel.last_seq  # read before the call: what arrives while it runs is newer
            first = self.service.call(jetstream_api.first_since, self.feed.stream, self.feed.subject, start)
            # With nothing that recent, what the ring holds is older still.
            sub.last_seq = newest if first is None else first.seq - 1
            yield from self._replay_to_ring(sub, sub.last_seq)
            return
        kept = self.service.call(jetstream_api.bounds, self.feed.stream)
        after = self.last_id or 0
        if after > kept.last:
            yield from self._reset(sub, "the last event id is newer than anything the stream holds")
            return
        if after + 1 < kept.first:
            yield from self._reset(sub, "the last event id is older than the stream keeps")
            if self.channel.policy is Policy.LATEST:
                return
            after = kept.first - 1
        yield from self._replay_to_ring(sub, after)

    def _replay_to_ring(self, sub: Subscriber, after: int) -> Iterator[bytes]:
        """Replay up to the ring's oldest frame and enter the ring there; for alerts, replay again if the
        ring moved past that frame meanwhile (the JetStream reads yield to the bridge)."""
        while True:
            sub.cursor = self.channel.first_index
            upto = self.channel.ring[0].seq if self.channel.ring else None
            yield from self._replay(sub, after, upto)
            if self.channel.policy is Policy.LATEST or self.channel.first_index <= sub.cursor:
                return
            after = sub.last_seq

    def _replay(self, sub: Subscriber, after: int, upto: int | None) -> Iterator[bytes]:
        """Messages after ``after`` (and before ``upto``, where the ring takes over), in batches."""
        snapshots = self.channel.policy is Policy.LATEST
        batch_size = self.service.settings.client_queue + 1 if snapshots else REPLAY_BATCH
        while True:
            batch = self.service.call(jetstream_api.read_after, self.feed.stream, self.feed.subject, after,
                                      batch_size, upto)
            if snapshots and len(batch) >= batch_size:
                # More missed than a live client may lag: like a slow client, skip to the newest.
                yield from self._reset(sub, "more snapshots were missed than are replayed")
                return
            fresh = [m for m in batch if m.seq > sub.last_seq]
            if fresh:
                sub.last_seq = fresh[-1].seq
                self.service.metrics.sent(self.label, len(fresh))
                yield b"".join(sse.frame(m.data, id=m.seq) for m in fresh)
            if snapshots or len(batch) < batch_size:
                return
            after = batch[-1].seq

    def _reset(self, sub: Subscriber, reason: str) -> Iterator[bytes]:
        """Tell the client to start over; a snapshot client then gets the newest snapshot."""
        self.service.metrics.reset(self.label)
        yield sse.reset(reason)
        if self.channel.policy is not Policy.LATEST:
            return
        sub.last_seq = 0
        newest = self.channel.latest
        if newest is not None:
            sub.cursor = newest.index
        # The ring's newest may trail what JetStream already holds (the consumer has not delivered it yet).
        yield from self._newest(sub)

    def _live_step(self, sub: Subscriber) -> tuple[bytes | None, bool]:
        """The next live chunk (a frame, a status event on NATS changes, a heartbeat, the last frame at
        shutdown) and whether it is the last; (None, False) after waiting for the channel, or (REST, False)
        when a resting stream has nothing to write."""
        hub = self.service.hub
        if sub.pending is not None:
            rest, sub.pending = sub.pending, None
            self.sock.sendall(rest)  # the end of a chunk the channel began writing; nothing may come between
            sub.writing_since = None
            self.channel.record_written(sub.pending_stored)
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

