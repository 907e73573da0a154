"""One JetStream lookup at a time per channel, shared by the clients that wait for it.

When thousands of clients connect at once (a deploy), each wants the newest snapshot from JetStream.
A client never gets an answer to a request sent before it arrived (it could miss a message stored
just before it connected), but every client that arrives while a request is in flight joins the next
one, so a storm costs a handful of requests instead of one per client. A lookup may wait a few milliseconds before
it begins for more clients to join it, and a few more each time some did, up to a bound: while streams open at a
steady pace (hundreds a second per worker) each JetStream request, and the bridge's loop waking for it, cost as
much as the rest of a stream's opening, so under load a lookup serves tens of clients; a lone client waits only the
first few milliseconds.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

import gevent
from gevent.event import AsyncResult

T = TypeVar("T")


class SharedLookup(Generic[T]):
    """Runs ``fetch`` for batches of callers: those that arrived before each run share its answer."""

    def __init__(self, gather_seconds: float = 0.0, most_seconds: float = 0.0) -> None:
        self.gather_seconds = gather_seconds  # how long a lookup waits for more callers before it begins
        self.most_seconds = max(most_seconds, gather_seconds)  # ... waiting again while more come, up to this in all
        self.callers = 0  # callers so far (each joined one lookup)
        self._waiting: AsyncResult[T] | None = None
        self._running = False

    def get(self, fetch: Callable[[], T]) -> T:
        """The answer of a ``fetch`` begun after this call, shared with the callers that wait alongside."""
        value: T = self.join(fetch).get()
        return value

    def join(self, fetch: Callable[[], T]) -> AsyncResult[T]:
        """Where the answer of a ``fetch`` begun after this call will be (shared with the other callers)."""
        self.callers += 1
        batch = self._waiting
        if batch is None:
            batch = self._waiting = AsyncResult()
            if not self._running:
                self._running = True
                gevent.spawn(self._run, fetch)
        return batch

    def _run(self, fetch: Callable[[], T]) -> None:
        try:
            while self._waiting is not None:
                self._gather()
                batch, self._waiting = self._waiting, None
                try:
                    batch.set(fetch())
                except Exception as exc:  # noqa: BLE001 - handed to every waiting caller, who raises it
                    batch.set_exception(exc)
        finally:
            self._running = False

    def _gather(self) -> None:
        """Wait for more callers before a lookup begins (they join it): ``gather_seconds``, and as long again each
        time some came, up to ``most_seconds`` in all."""
        waited = 0.0
        while self.gather_seconds and waited < self.most_seconds:
            before = self.callers
            gevent.sleep(self.gather_seconds)
            waited += self.gather_seconds
            if self.callers == before:
                return
