"""StreamHub: per-worker fan-out of JetStream messages to SSE clients.

Each channel (the summary snapshots, one route's snapshots, the alerts) keeps a bounded ring of
frames, each encoded once into SSE bytes. A client is a cursor into its channel's ring, so the
memory a client holds is a few integers whatever its speed; the ring bounds the rest. A client
that falls out of the ring is *overrun*: a snapshot client skips to the newest snapshot (later
snapshots supersede earlier ones), an alerts client is told with ``event: reset`` and must resume
from JetStream, because an alert is never skipped silently.

A client whose greenlet is parked waiting for frames, and whose socket has room, is written to by
``publish`` itself: one pass of non-blocking sends of the frame's pre-encoded HTTP chunk, so the common
case costs one system call per client and no greenlet switch. Only a client whose socket is full (or
that must be told something else first) is woken to write through its own response. A client waits
either parked in its greenlet (``park``) or, when its WSGI server can resume the response from a new
greenlet, resting without one (``rest``).

Everything here runs on the gevent hub's thread; the bridge calls ``publish`` from its greenlet.
"""

from __future__ import annotations

import enum
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gevent.event import Event
from gevent.hub import Waiter, get_hub

from flexgate_stream import sse
from flexgate_stream.fanout.delays import DelayTally
from flexgate_stream.fanout.newest import SharedLookup


class Policy(enum.Enum):
    """What a client that fell behind the ring gets."""

    LATEST = "latest"  # snapshots: skip to the newest
    EVERY = "every"  # alerts: every message or an explicit reset


@dataclass(frozen=True, slots=True)
class Frame:
    """One JetStream message: its stream sequence, its JSON bytes, its SSE frame, that frame as one
    HTTP/1.1 chunk (what a chunked response writes for it), and when JetStream stored it (epoch s, 0: unknown)."""

    index: int
    seq: int
    data: bytes
    sse: bytes
    chunk: bytes
    stored: float = 0.0


class Overrun(Exception):
    """The client fell out of an EVERY channel's ring; ``last_seq`` is the last frame it got."""

    def __init__(self, last_seq: int) -> None:
        super().__init__(f"client fell behind after sequence {last_seq}")
        self.last_seq = last_seq


class Channel:
    """A bounded ring of frames for one subject, and the event that wakes its readers."""

    def __init__(self, key: str, policy: Policy, capacity: int) -> None:
        self.key = key
        self.policy = policy
        self.ring: deque[Frame] = deque(maxlen=capacity)
        self.next_index = 0
        self.last_seq = 0  # highest stream sequence accepted (or the floor set at subscribe)
        self.clients = 0
        self.parked: dict[Subscriber, None] = {}  # clients waiting for frames, in the order they parked
        self.on_delivered: Callable[[Frame, int], None] | None = None  # each frame, and how many clients it went to
        self.written: DelayTally | None = None  # stored -> written to a client, one count per client
        self.newest_lookup: SharedLookup[Any] = SharedLookup()  # what new clients ask JetStream, shared
        self._wakeup = Event()

    @property
    def latest(self) -> Frame | None:
        """The newest frame, if any arrived."""
        return self.ring[-1] if self.ring else None

    @property
    def first_index(self) -> int:
        return self.ring[0].index if self.ring else self.next_index

    def set_floor(self, seq: int) -> None:
        """Ignore messages at or below ``seq`` (they predate this channel's subscription)."""
        self.last_seq = max(self.last_seq, seq)

    def publish(self, seq: int, data: bytes, stored: float = 0.0) -> Frame | None:
        """Add a message (stored in JetStream at epoch ``stored``); a sequence at or below the last one is a
        redelivery and is dropped."""
        if seq <= self.last_seq:
            return None
        encoded = sse.frame(data, id=seq)
        item = Frame(self.next_index, seq, data, encoded, b"%X\r\n%b\r\n" % (len(encoded), encoded), stored)
        self.ring.append(item)
        self.next_index += 1
        self.last_seq = seq
        self._deliver(item)
        if self._wakeup.linkcount():
            self._wake_waiters()
        return item

    def _deliver(self, item: Frame) -> None:
        """Write ``item`` straight to every parked client whose socket has room; wake the others."""
        chunk, size, index, seq, payload = item.chunk, len(item.chunk), item.index, item.seq, len(item.sse)
        delivered = whole = 0
        for sub in list(self.parked):
            sock = sub.sock
            if sock is None or sub.cursor != index:
                sub.wake()
                continue
            if seq <= sub.last_seq:  # it already had this one (from JetStream before the consumer began)
                sub.cursor = index + 1
                continue
            try:
                sent = sock.send(chunk)
            except BlockingIOError:
                sent = 0
            except OSError:
                sub.wake()  # its own write will fail and end the stream
                continue
            if sent:
                sub.cursor, sub.last_seq = index + 1, seq
                sub.sent_direct += payload
                delivered += 1
                if sent == size:
                    whole += 1
                    continue
                sub.pending = chunk[sent:]  # the client's greenlet writes the rest before anything else
                sub.pending_stored = item.stored
                sub.writing_since = time.monotonic()
            sub.wake()
        if whole:
            self.record_written(item.stored, whole)  # one tally for the pass, whatever the number of clients
        if self.on_delivered is not None:
            self.on_delivered(item, delivered)

    def record_written(self, stored: float, count: int = 1) -> None:
        """``count`` clients finished writing a frame JetStream stored at ``stored`` (epoch s) just now."""
        if self.written is not None and stored:
            now = time.time()
            self.written.add(now - stored, count, now)

    def index_after(self, seq: int) -> int | None:
        """The ring index of the first frame after ``seq``, or None when the ring starts after it."""
        if not self.ring or self.ring[0].seq > seq:
            return None
        for item in self.ring:
            if item.seq > seq:
                return item.index
        return self.next_index

    def frames_from(self, index: int) -> list[Frame]:
        """Frames at ``index`` and later (``index`` must be inside the ring or at its end)."""
        offset = index - self.first_index
        return [self.ring[i] for i in range(offset, len(self.ring))]

    def wait(self, timeout: float | None) -> None:
        """Block this greenlet until the channel changes or ``timeout`` passes."""
        self._wakeup.wait(timeout)

    def wake(self) -> None:
        """Wake every reader of this channel (a state change every client must hear of)."""
        self._wake_waiters()
        for sub in list(self.parked):
            sub.wake()

    def _wake_waiters(self) -> None:
        event, self._wakeup = self._wakeup, Event()
        event.set()


class Subscriber:
    """One client's position in a channel."""

    __slots__ = ("channel", "cursor", "last_seq", "skipped", "writing_since", "conn", "sock", "pending",
                 "pending_stored", "sent_direct", "_waiter", "_resume", "_timer")

    def __init__(self, channel: Channel, cursor: int) -> None:
        self.channel = channel
        self.cursor = cursor
        self.last_seq = 0  # the last sequence written to this client
        self.skipped = 0
        self.writing_since: float | None = None  # monotonic time the pending write began, if one is pending
        # A non-blocking socket the channel may write whole HTTP chunks to while the client is parked
        # (set only for a chunked response whose headers are out), and what is left of a chunk it began.
        self.sock: Any = None
        self.pending: bytes | None = None
        self.pending_stored = 0.0  # when the frame of ``pending`` was stored
        self.sent_direct = 0  # body bytes (SSE frames) the channel wrote to the socket itself
        self.conn: Any = None  # the response's socket, so a shutdown can cut a stream whose client stalled
        self._waiter: Waiter[Any] | None = None
        self._resume: Callable[[], Any] | None = None  # how a resting client is resumed
        self._timer: Any = None  # a resting client's heartbeat timer

    def park(self, timeout: float | None) -> None:
        """Wait until the channel wakes this client or ``timeout`` passes; frames may be written meanwhile.

        A bare Waiter and a loop timer rather than an Event: a parked stream keeps a copy of its greenlet's
        C stack, and the shallower the wait, the less every open stream costs."""
        waiter = self._waiter = Waiter()
        timer = None
        if timeout is not None:
            timer = waiter.hub.loop.timer(max(0.0, timeout))
            timer.start(waiter.switch, None)
        parked = self.channel.parked
        parked[self] = None
        try:
            waiter.get()
        finally:
            parked.pop(self, None)
            self._waiter = None
            if timer is not None:
                timer.close()

    def rest(self, timeout: float | None, resume: Callable[[], Any]) -> None:
        """Wait like ``park``, but without a greenlet: ``resume`` is called, once, when the client must run
        again (a frame it must write itself, a state change, ``timeout``). Meanwhile the channel writes frames
        to its socket as it does for a parked client.

        A parked stream costs its greenlet (a copy of its C stack and a page of Python frames); a resting one
        costs only its objects. The WSGI server offers it (web.gevent_worker) and resumes the response's iterator
        in a new greenlet from ``resume``."""
        self._resume = resume
        if timeout is not None:
            timer = self._timer = get_hub().loop.timer(max(0.0, timeout))
            timer.start(self.wake)
        self.channel.parked[self] = None

    def wake(self) -> None:
        """End this client's ``park`` or ``rest`` (it then takes what is new itself)."""
        self.channel.parked.pop(self, None)
        waiter, self._waiter = self._waiter, None
        if waiter is not None:
            waiter.hub.loop.run_callback(waiter.switch, None)
            return
        resume, self._resume = self._resume, None
        if resume is not None:
            self._stop_timer()
            resume()

    def forget(self) -> None:
        """Leave the channel for good: no longer parked or resting, and never resumed."""
        self.channel.parked.pop(self, None)
        self._resume = None
        self._stop_timer()

    def _stop_timer(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.close()

    def take(self) -> list[Frame]:
        """The frames this client has not had yet, after the overrun policy (may raise Overrun)."""
        channel = self.channel
        if self.cursor < channel.first_index:
            if channel.policy is Policy.EVERY:
                raise Overrun(self.last_seq)
            newest = channel.ring[-1]  # the ring moved past the cursor, so it holds frames
            self.skipped += newest.index - self.cursor
            self.cursor = newest.index
        frames = [f for f in channel.frames_from(self.cursor) if f.seq > self.last_seq]
        self.cursor = channel.next_index
        if frames:
            self.last_seq = frames[-1].seq
        return frames


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
        return sum(1 for sub in self.subscribers if sub.writing_since is not None and now - sub.writing_since > seconds)

    def full(self) -> bool:
        """True when this worker already serves ``max_clients`` streams."""
        return self.clients >= self.max_clients

    def attach(self, channel: Channel, cursor: int) -> Subscriber:
        """Register a client at ``cursor`` in ``channel``."""
        channel.clients += 1
        sub = Subscriber(channel, cursor)
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
