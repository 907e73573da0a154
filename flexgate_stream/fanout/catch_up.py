"""What one client missed, caught up on connect: the newest snapshot, a resume (Last-Event-ID), ?since=, reset."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import gevent

from flexgate_stream import sse
from flexgate_stream.errors import NatsUnavailable
from flexgate_stream.fanout import jetstream_api
from flexgate_stream.fanout.channel import Channel, Policy, Subscriber
from flexgate_stream.fanout.feeds import Feed
from flexgate_stream.fanout.host import StreamHost

REPLAY_BATCH = 100
BUS_WAIT_SECONDS = 60.0  # how long a resume waits for NATS before it gives up with event: reset
# How long a new client's hello waits for JetStream's newest snapshot, to leave with it in one write; the hello goes
# alone after that (NATS hangs), so the client knows it is connected.
HELLO_WAIT_SECONDS = 0.25


class CatchUp:
    """The frames a client gets from JetStream before it follows the ring (made for the opening, then dropped).

    ``sub.last_seq`` and ``sub.cursor`` say where the client stands: each frame yielded moves them."""

    def __init__(self, host: StreamHost, feed: Feed, channel: Channel, *, last_id: int | None,
                 since: timedelta | None) -> None:
        self.host = host
        self.feed = feed
        self.channel = channel
        self.last_id = last_id
        self.since = since

    def newest(self, sub: Subscriber, hello: bytes = b"") -> Iterator[bytes]:
        """The newest snapshot from JetStream when this worker's consumer has not delivered it yet; the first
        chunk yielded begins with ``hello``, which goes alone only when JetStream is slow to answer (nothing is
        yielded when the ring has the newest: the hello then goes with the ring's frame)."""
        try:
            answer = self.channel.newest_lookup.join(
                lambda: self.host.call(jetstream_api.last_message, self.feed.stream, self.feed.subject))
            try:
                stored = answer.get(timeout=HELLO_WAIT_SECONDS)
            except gevent.Timeout:
                if hello:
                    yield hello
                    hello = b""
                stored = answer.get()
        except NatsUnavailable:
            stored = None  # the ring's newest (if any) is the best there is
        known = self.channel.latest
        if stored is not None and known is not None and known.seq >= stored.seq:
            sub.last_seq = max(sub.last_seq, stored.seq - 1)  # the ring has it: skip what is older
        elif stored is not None:
            sub.last_seq = stored.seq  # the ring's older frames are skipped, later ones follow
            self.host.metrics.sent(self.feed.label)
            yield hello + sse.frame(stored.data, id=stored.seq)

    def catch_up(self, sub: Subscriber) -> Iterator[bytes]:
        """Replay what the client missed; while NATS cannot be read, hold the stream open and try again."""
        deadline = time.monotonic() + BUS_WAIT_SECONDS
        while True:
            try:
                yield from self._read_history(sub)
                return
            except NatsUnavailable:
                if sub.last_seq:  # part was replayed: go on from there when the bus answers
                    self.since, self.last_id = None, sub.last_seq
                if time.monotonic() >= deadline or self.host.hub.closing:
                    yield from self.reset(sub, "history cannot be read while the message bus is unavailable")
                    return
                yield from self._await_bus(deadline)

    def _await_bus(self, deadline: float) -> Iterator[bytes]:
        """Heartbeats until the hub reports NATS connected (at least one short pause), the deadline or shutdown."""
        hub = self.host.hub
        pause = min(1.0, self.host.settings.heartbeat_seconds)
        self.channel.wait(pause)
        while not hub.connected and not hub.closing and time.monotonic() < deadline:
            yield sse.HEARTBEAT
            self.channel.wait(min(self.host.settings.heartbeat_seconds, max(0.0, deadline - time.monotonic())))

    def _read_history(self, sub: Subscriber) -> Iterator[bytes]:
        """Replay from JetStream what the client missed and the ring no longer (or never) held."""
        if self.since is not None:
            start = datetime.now(UTC) - self.since
            newest = self.channel.last_seq  # read before the call: what arrives while it runs is newer
            first = self.host.call(jetstream_api.first_since, self.feed.stream, self.feed.subject, start)
            # With nothing that recent, what the ring holds is older still.
            sub.last_seq = newest if first is None else first.seq - 1
            yield from self._replay_to_ring(sub, sub.last_seq)
            return
        kept = self.host.call(jetstream_api.bounds, self.feed.stream)
        after = self.last_id or 0
        if after > kept.last:
            yield from self.reset(sub, "the last event id is newer than anything the stream holds")
            return
        if after + 1 < kept.first:
            yield from self.reset(sub, "the last event id is older than the stream keeps")
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
        batch_size = self.host.settings.client_queue + 1 if snapshots else REPLAY_BATCH
        while True:
            batch = self.host.call(jetstream_api.read_after, self.feed.stream, self.feed.subject, after,
                                      batch_size, upto)
            if snapshots and len(batch) >= batch_size:
                # More missed than a live client may lag: like a slow client, skip to the newest.
                yield from self.reset(sub, "more snapshots were missed than are replayed")
                return
            fresh = [m for m in batch if m.seq > sub.last_seq]
            if fresh:
                sub.last_seq = fresh[-1].seq
                self.host.metrics.sent(self.feed.label, len(fresh))
                yield b"".join(sse.frame(m.data, id=m.seq) for m in fresh)
            if snapshots or len(batch) < batch_size:
                return
            after = batch[-1].seq

    def reset(self, sub: Subscriber, reason: str) -> Iterator[bytes]:
        """Tell the client to start over; a snapshot client then gets the newest snapshot."""
        self.host.metrics.reset(self.feed.label)
        yield sse.reset(reason)
        if self.channel.policy is not Policy.LATEST:
            return
        sub.last_seq = 0
        newest = self.channel.latest
        if newest is not None:
            sub.cursor = newest.index
        # The ring's newest may trail what JetStream already holds (the consumer has not delivered it yet).
        yield from self.newest(sub)
