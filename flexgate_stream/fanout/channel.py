"""A channel: a bounded ring of frames for one subject, one cursor per client, and the notice of what is new.

Each channel (the summary snapshots, one route's or upstream's snapshots, the alerts) keeps a bounded ring of
frames, each encoded once into SSE bytes and once more as an HTTP/1.1 chunk. A client is a cursor into the
ring (``Subscriber``), so the memory a client holds is a few integers whatever its speed; the ring bounds the
rest. A client that falls out of the ring is *overrun*: a snapshot client skips to the newest snapshot (later
snapshots supersede earlier ones), an alerts client is told with ``event: reset`` and must resume from
JetStream, because an alert is never skipped silently.

A client waits either parked in its greenlet (``park``) or resting without one (``rest``). ``publish``
offers each new frame to the writer of every waiting client whose socket the writer owns
(fanout.stream_writer: one non-blocking send each, in this greenlet, no switch); only a client whose socket
did not take it whole (or that must be told something else first) is woken to write through its own stream.

Everything here runs on the gevent hub's thread; the bridge calls ``publish`` from its greenlet.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gevent.event import Event
from gevent.hub import Waiter, get_hub

from flexgate_stream import sse
from flexgate_stream.fanout.delays import DelayTally
from flexgate_stream.fanout.newest import SharedLookup
from flexgate_stream.fanout.stream_writer import WRITTEN, StreamWriter, chunk, record_written

# How long a lookup of the newest snapshot waits for more new clients to share it (their first frame waits as long),
# and for how long in all it waits again while more keep coming (streams opening by the hundred a second).
NEWEST_GATHER_SECONDS = 0.005
NEWEST_GATHER_MOST_SECONDS = 0.025


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
        self.newest_lookup: SharedLookup[Any] = SharedLookup(NEWEST_GATHER_SECONDS,
                                                                NEWEST_GATHER_MOST_SECONDS)  # new clients ask JetStream
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
        item = Frame(self.next_index, seq, data, encoded, chunk(encoded), stored)
        self.ring.append(item)
        self.next_index += 1
        self.last_seq = seq
        self._deliver(item)
        if self._wakeup.linkcount():
            self._wake_waiters()
        return item

    def _deliver(self, item: Frame) -> None:
        """Offer ``item`` to the writer of every waiting client that owns its socket; wake the others."""
        chunk, index, seq, payload, stored = item.chunk, item.index, item.seq, len(item.sse), item.stored
        delivered = whole = 0
        offer = StreamWriter.offer  # looked up once per pass, not once per client
        for sub in list(self.parked):
            writer = sub.writer
            if writer.direct is None or sub.cursor != index:
                sub.wake()
                continue
            if seq <= sub.last_seq:  # it already had this one (from JetStream before the consumer began)
                sub.cursor = index + 1
                continue
            taken = offer(writer, chunk, payload, stored)
            if taken:
                sub.cursor, sub.last_seq = index + 1, seq
                delivered += 1
                if taken == WRITTEN:
                    whole += 1
                    continue
            sub.wake()  # the socket was full, failed, or took part: the client's own greenlet writes next
        if whole:
            self.record_written(stored, whole)  # one tally for the pass, whatever the number of clients
        if self.on_delivered is not None:
            self.on_delivered(item, delivered)

    def record_written(self, stored: float, count: int = 1) -> None:
        """``count`` clients finished writing a frame JetStream stored at ``stored`` (epoch s) just now."""
        record_written(self.written, stored, count)

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
    """One client's position in a channel, how it waits, and the writer of its socket."""

    __slots__ = ("channel", "cursor", "last_seq", "skipped", "writer", "_waiter", "_resume", "_timer")

    def __init__(self, channel: Channel, cursor: int, writer: StreamWriter | None = None) -> None:
        self.channel = channel
        self.cursor = cursor
        self.last_seq = 0  # the last sequence written to this client
        self.skipped = 0
        self.writer = writer if writer is not None else StreamWriter()
        self.writer.tally = channel.written
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
        again (a frame it must write itself, a state change, ``timeout``). Meanwhile the channel offers frames
        to its writer.

        A parked stream costs its greenlet (a copy of its C stack and a page of Python frames); a resting one
        costs only its objects. The WSGI server offers it (server.gevent_worker) and resumes the response's
        iterator in a new greenlet from ``resume``."""
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
