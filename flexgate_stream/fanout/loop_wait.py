"""Waiting in the bridge's loop greenlet, and for its answers, without queueing behind every runnable greenlet.

gevent runs the greenlets made runnable in the order they were, each until it gives way; in a reconnect storm
thousands are queued, and one turn round them takes up to seconds. A gevent socket is woken from the hub as soon
as the hub sees it ready (every 50 callbacks or 5 ms); gevent's selector, and an AsyncResult, are queued at the end
instead. The bridge's asyncio loop turns some fifteen times for one JetStream request: queued on every turn, a
/api/stream/stats probe during a storm took longer than its 0.8 s.
"""

from __future__ import annotations

import select
import selectors
import time
from typing import Any, Generic, TypeVar

import gevent
from gevent import monkey
from gevent.hub import Waiter

T = TypeVar("T")

EAGER_SECONDS = 0.005  # the loop runs its ready work this long at most before giving way to the other greenlets
_EV_READ, _EV_WRITE = 1, 2  # libev's
_poll = monkey.get_original("select", "poll")


class Answer(Generic[T]):
    """One result handed from the loop's greenlet to one waiting greenlet, which the hub wakes at once."""

    def __init__(self) -> None:
        hub = gevent.get_hub()
        self._waiter: Waiter[None] = Waiter(hub)
        self._wake = hub.loop.async_()
        self._outcome: list[Any] = []
        self._waiting = True

    def set(self, value: T) -> None:
        self._tell((value, None))

    def fail(self, exc: BaseException) -> None:
        self._tell((None, exc))

    def _tell(self, outcome: tuple[Any, BaseException | None]) -> None:
        self._outcome.append(outcome)
        if self._waiting:
            self._wake.send()

    def get(self, timeout: float) -> T:
        """The result, or its exception raised; gevent.Timeout after ``timeout`` seconds."""
        self._wake.start(self._waiter.switch, None)
        try:
            with gevent.Timeout(timeout):
                while not self._outcome:
                    self._waiter.get()
                    self._waiter.clear()
        finally:
            self._waiting = False
            self._wake.stop()
            self._wake.close()
        value, exc = self._outcome[0]
        if exc is not None:
            raise exc
        result: T = value
        return result


class EagerSelector(selectors._BaseSelectorImpl):
    """The bridge loop's selector: runs the loop's ready work, and wakes it for an answer, without queueing."""

    # gevent's selector gives way on every call, and asyncio calls it once per turn, even with work ready. This
    # one asks the kernel without waiting while the loop has work, and gives way at least every EAGER_SECONDS;
    # when it must wait, it waits on the sockets themselves, as a gevent socket does, so the hub wakes the loop
    # as soon as it sees an answer.

    def __init__(self) -> None:
        super().__init__()
        self._gave_way = time.monotonic()

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if time.monotonic() - self._gave_way >= EAGER_SECONDS:
            self._give_way(0)
        ready = self._poll_now()
        if ready or (timeout is not None and timeout <= 0):
            return ready
        self._give_way(timeout)
        return self._poll_now()

    def _give_way(self, timeout: float | None) -> None:
        """Let the other greenlets run: until a registered file is ready or ``timeout`` passes (0: one turn)."""
        if timeout is not None and timeout <= 0:
            gevent.sleep(0)
        else:
            hub = gevent.get_hub()
            waiter: Waiter[Any] = Waiter(hub)
            watchers = [hub.loop.io(key.fd, (_EV_READ if key.events & selectors.EVENT_READ else 0)
                                    | (_EV_WRITE if key.events & selectors.EVENT_WRITE else 0))
                        for key in self.get_map().values()]
            if timeout is not None:
                watchers.append(hub.loop.timer(timeout))
            try:
                for watcher in watchers:
                    watcher.start(waiter.switch, None)
                waiter.get()
            finally:
                for watcher in watchers:
                    watcher.stop()
                    watcher.close()
        self._gave_way = time.monotonic()

    def _poll_now(self) -> list[tuple[selectors.SelectorKey, int]]:
        """The registered files ready now, from the kernel, without waiting or giving way."""
        poll = _poll()
        for key in self.get_map().values():
            poll.register(key.fd, (select.POLLIN if key.events & selectors.EVENT_READ else 0)
                          | (select.POLLOUT if key.events & selectors.EVENT_WRITE else 0))
        ready = []
        for fd, event in poll.poll(0):
            ready_key = self.get_map().get(fd)
            found = (selectors.EVENT_WRITE if event & ~select.POLLIN else 0) | \
                    (selectors.EVENT_READ if event & ~select.POLLOUT else 0)
            if ready_key is not None and ready_key.events & found:
                ready.append((ready_key, ready_key.events & found))
        return ready
