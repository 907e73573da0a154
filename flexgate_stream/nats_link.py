"""A process's NATS connection, kept up for good: the one reconnect routine of the bridge and of the publisher.

nats-py's own reconnecting is off (its connect then tries one server of NATS_SERVERS, once). ``NatsLink.run``
connects, hands each new connection to the process (``serve``: the bridge re-creates its consumers from the right
sequence, the publisher its JetStream context and streams), notices when the connection is lost (nats-py's
disconnected and closed callbacks; the shared options' pings, settings.NATS_PING_SECONDS, call a hung server lost
within 4-6 s), and connects again with exponential backoff of at most MAX_DELAY, so a process is connected again
within about 2 s of NATS coming back. Like Flower's events.py it says one line when NATS goes down and one when it
is back (backoff.StateLog), never one per attempt.

Pure asyncio, no gevent: the bridge runs it on its asyncio loop (driven by a greenlet), the publisher on its own.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

import nats
from nats.aio.client import Client as NATS

from flexgate_stream.backoff import Backoff, StateLog

FIRST_DELAY = 0.25
MAX_DELAY = 2.0  # while NATS is down an attempt is one refused TCP connect: cheap enough to make every 2 s
CONNECT_SECONDS = 2.0
CLOSE_SECONDS = 1.0

Serve = Callable[[NATS], Coroutine[Any, Any, None]]


class NatsLink:
    """One NATS connection: connect with backoff, serve it until it is lost, connect again; until ``stop()``."""

    def __init__(self, options: Mapping[str, Any], name: str, log: logging.Logger) -> None:
        self.options = dict(options)
        self.name = name  # the identity prefix of the log lines: bridge[<pid>], publisher[<id>]
        self.log = log
        self.state = StateLog(log, name, "NATS")
        self.backoff = Backoff(FIRST_DELAY, MAX_DELAY, jitter=0.2)
        self.connections = 0  # connections made so far: a new value means a new (or re-established) one
        self.stopping = False
        self._nc: NATS | None = None
        self._lost: asyncio.Event | None = None  # set when the current connection is lost
        self._wake: asyncio.Event | None = None  # set by stop(): ends a pause between attempts

    @property
    def nc(self) -> NATS | None:
        """The connection while it is up; None while NATS is down."""
        nc = self._nc
        return nc if nc is not None and nc.is_connected else None

    async def run(self, serve: Serve | None = None) -> None:
        """Keep a connection until ``stop()``; ``serve(nc)`` runs on each one and is cancelled when it is lost."""
        self._wake = asyncio.Event()
        while not self.stopping:
            lost = asyncio.Event()
            try:
                nc = await nats.connect(**self._options(lost))
            except Exception as exc:  # noqa: BLE001 - every failure to connect means "retry later"
                if not self.stopping:
                    self.state.down(exc)
                    await self._pause(self.backoff.next_delay())
                continue
            await self._hold(nc, lost, serve)

    def stop(self) -> None:
        """End ``run``: the connection is closed and no new one made (call it on the loop)."""
        self.stopping = True
        for event in (self._lost, self._wake):
            if event is not None:
                event.set()

    async def drain(self, timeout: float) -> None:
        """Stop, first flushing what is in flight on the connection (at most ``timeout`` seconds)."""
        self.stopping = True  # the connection closing now is no outage: not said, not retried
        nc = self._nc
        if nc is not None and not nc.is_closed:
            try:
                await asyncio.wait_for(nc.drain(), timeout)
            except Exception:  # noqa: BLE001 - closing anyway
                pass
            await _close(nc)
        self.stop()

    async def _hold(self, nc: NATS, lost: asyncio.Event, serve: Serve | None) -> None:
        """Serve ``nc`` until it is lost (or the link stops), then close it."""
        self._nc, self._lost = nc, lost
        self.connections += 1
        self.backoff.reset()
        where = nc.connected_url.netloc if nc.connected_url else "?"
        if self.state.down_since is None:
            self.log.info("%s: NATS connected to %s", self.name, where)
        self.state.up(where)
        task = asyncio.create_task(serve(nc)) if serve is not None else None
        if task is not None:
            task.add_done_callback(lambda done: self._served(done, lost))
        try:
            if self.stopping:
                lost.set()
            await lost.wait()
        finally:
            self._nc = self._lost = None
            if task is not None and not task.done():
                task.cancel()
                await asyncio.wait({task})
            if not self.stopping:
                self.state.down("connection lost")
            await _close(nc)

    def _served(self, task: asyncio.Task[None], lost: asyncio.Event) -> None:
        """A ``serve`` that failed is a fault: said with its traceback, and the connection is made afresh."""
        if not task.cancelled() and task.exception() is not None:
            self.log.error("%s: serving the NATS connection failed; connecting again", self.name,
                           exc_info=task.exception())
            lost.set()

    def _options(self, lost: asyncio.Event) -> dict[str, Any]:
        """nats-py's options for one connection, its callbacks bound to that connection's ``lost``."""
        async def on_lost() -> None:
            lost.set()

        async def on_error(exc: Exception) -> None:
            self.log.debug("%s: NATS error: %s", self.name, exc)

        return {**self.options, "allow_reconnect": False, "max_reconnect_attempts": 1, "reconnect_time_wait": 0.1,
                "connect_timeout": CONNECT_SECONDS, "disconnected_cb": on_lost, "closed_cb": on_lost,
                "error_cb": on_error}

    async def _pause(self, seconds: float) -> None:
        if self._wake is not None and not self.stopping:
            try:
                await asyncio.wait_for(self._wake.wait(), seconds)
            except TimeoutError:
                pass


async def _close(nc: NATS) -> None:
    """Close ``nc`` without waiting long for a server that does not answer."""
    try:
        await asyncio.wait_for(nc.close(), CLOSE_SECONDS)
    except Exception:  # noqa: BLE001 - gone either way
        pass
