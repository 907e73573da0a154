"""The publisher's NATS connection, on the asyncio loop: one line when it goes down, one when it is back."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import nats
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from flexgate_stream.backoff import Backoff
from flexgate_stream.settings import Settings
from flexgate_stream.tick.stream_setup import ensure_streams
from workers.connections import StateLog

log = logging.getLogger("workers.publisher")


class NatsLink:
    """The NATS connection: first connect retried forever with backoff, then nats-py reconnects (also backed off)."""

    def __init__(self, settings: Settings, ident: str) -> None:
        self.settings, self.ident = settings, ident
        self.state = StateLog(ident, "NATS")
        self.epoch = 0  # counts connections: a new value means a new (or re-established) one
        self.nc: NATS | None = None
        self.js: JetStreamContext | None = None
        self.streams_ready = False
        self._reconnect_backoff = Backoff(0.25, 5.0)

    @property
    def ready(self) -> bool:
        """Connected, with a JetStream context."""
        return self.nc is not None and self.nc.is_connected and self.js is not None

    async def run(self) -> None:
        """Connect (retrying forever), then keep the streams present; returns once connected."""
        backoff = Backoff(0.5, 5.0)
        while self.nc is None:
            try:
                self.nc = await nats.connect(**self._options())
            except Exception as exc:  # noqa: BLE001 - every connect failure means "retry later"
                self.state.down(exc)
                await asyncio.sleep(backoff.next_delay())
        self.nc.options["max_reconnect_attempts"] = -1  # from now on nats-py reconnects forever
        self.js = self.nc.jetstream(timeout=2)
        self.epoch += 1
        self.state.up()
        await self.ensure()

    async def ensure(self) -> JetStreamContext | None:
        """The JetStream context once the streams and buckets are present (created or updated when they may be
        missing); None while NATS is down or they cannot be created."""
        js = self.js if self.ready else None
        if js is not None and not self.streams_ready:
            try:
                await ensure_streams(js, self.settings.stream_replicas)
                self.streams_ready = True
            except Exception as exc:  # noqa: BLE001 - retried on the next tick
                self.state.down(f"cannot create streams: {exc}")
        return js if self.streams_ready else None

    def lost(self, reason: object) -> None:
        """A request failed while the connection was failing: one line, the first time."""
        self.state.down(reason)

    def confirmed(self) -> None:
        """A request succeeded: one line if the connection had been reported down."""
        self.state.up()

    def _options(self) -> dict[str, Any]:
        return {
            **self.settings.nats_connect_options,
            "name": f"flexgate-publisher {self.ident}",
            "connect_timeout": 2,
            "max_reconnect_attempts": 1,  # first connect fails fast; our loop retries
            "reconnect_time_wait": 0.2,
            "drain_timeout": 1,
            "error_cb": self._on_error,
            "disconnected_cb": self._on_disconnected,
            "reconnected_cb": self._on_reconnected,
            "reconnect_to_server_handler": self._next_server,
        }

    def _next_server(self, servers: Any, _info: Any) -> tuple[None, float]:
        return None, self._reconnect_backoff.next_delay()

    async def _on_error(self, exc: Exception) -> None:
        log.debug("publisher[%s]: NATS error %r", self.ident, exc)

    async def _on_disconnected(self) -> None:
        if self.nc is not None and not self.nc.is_closed and not self.nc.is_draining:
            self.state.down("disconnected")

    async def _on_reconnected(self) -> None:
        self._reconnect_backoff.reset()
        self.epoch += 1
        self.streams_ready = False  # a new or wiped server may lack them
        self.state.up()

    async def close(self, timeout: float = 1.5) -> None:
        """Drain (flush what is in flight), then close; bounded by ``timeout``."""
        if self.nc is None or self.nc.is_closed:
            return
        try:
            await asyncio.wait_for(self.nc.drain(), timeout)
        except Exception:  # noqa: BLE001 - closing anyway
            pass
        if not self.nc.is_closed:
            await self.nc.close()
