"""StreamHub: one worker's channels (fanout.channel), its clients, the NATS connection state and the shutdown flag."""

from __future__ import annotations

import time

from flexgate_stream.fanout.channel import Channel, Frame, Overrun, Policy, Subscriber
from flexgate_stream.fanout.stream_writer import StreamWriter

# Channel, Frame, Overrun, Policy and Subscriber are defined in fanout.channel; they are named here too for the
# modules that import them from the hub.
__all__ = ["Channel", "Frame", "Overrun", "Policy", "StreamHub", "Subscriber"]


class StreamHub:
    """All channels of one worker, the NATS connection state, and the shutdown flag."""

    def __init__(self, capacity: int, max_clients: int) -> None:
        self.capacity = capacity
        self.max_clients = max_clients
        self.channels: dict[str, Channel] = {}
        self.subscribers: set[Subscriber] = set()
        self.connected = False
        self.closing = False

    def channel(self, key: str, policy: Policy) -> tuple[Channel, bool]:
        """The channel for ``key``, and whether it was just created."""
        found = self.channels.get(key)
        if found is not None:
            return found, False
        created = self.channels[key] = Channel(key, policy, self.capacity)
        return created, True

    @property
    def clients(self) -> int:
        return len(self.subscribers)

    def stalled(self, seconds: float) -> int:
        """How many clients have had a write pending for more than ``seconds`` (they are not reading)."""
        now = time.monotonic()
        return sum(1 for sub in self.subscribers
                   if (since := sub.writer.writing_since) is not None and now - since > seconds)

    def full(self) -> bool:
        """True when this worker already serves ``max_clients`` streams."""
        return self.clients >= self.max_clients

    def attach(self, channel: Channel, cursor: int, writer: StreamWriter | None = None) -> Subscriber:
        """Register a client at ``cursor`` in ``channel`` (``writer``: its socket's, if it has one)."""
        channel.clients += 1
        sub = Subscriber(channel, cursor, writer)
        self.subscribers.add(sub)
        return sub

    def detach(self, sub: Subscriber) -> bool:
        """Forget a client; True when its channel has no client left."""
        sub.channel.clients -= 1
        sub.forget()
        self.subscribers.discard(sub)
        return sub.channel.clients == 0

    def drop(self, key: str) -> None:
        """Remove an idle channel."""
        channel = self.channels.get(key)
        if channel is not None and channel.clients == 0:
            del self.channels[key]
            channel.wake()

    def set_connected(self, connected: bool) -> None:
        """Record the NATS state; every open stream is told of a change."""
        if connected != self.connected:
            self.connected = connected
            self._wake_all()

    def close(self) -> None:
        """Ask every open stream to send its last frame and end."""
        self.closing = True
        self._wake_all()

    def _wake_all(self) -> None:
        for channel in list(self.channels.values()):
            channel.wake()
