"""The publisher's NATS, on the asyncio loop: the connection flexgate_stream.nats_link keeps (one line when it goes
down, one when it is back, as in the web tier), and JetStream with the streams and buckets present."""

from __future__ import annotations

import logging

from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from flexgate_stream.nats_link import NatsLink
from flexgate_stream.settings import Settings
from flexgate_stream.tick.stream_setup import ensure_streams

log = logging.getLogger("workers.publisher")


class JetStreamLink:
    """The publisher's NATS: the connection flexgate_stream.nats_link keeps, and JetStream with the streams present."""

    def __init__(self, settings: Settings, ident: str) -> None:
        self.settings, self.ident = settings, ident
        options = {**settings.nats_connect_options, "name": f"flexgate-publisher {ident}", "drain_timeout": 1}
        self.link = NatsLink(options, f"publisher[{ident}]", log)
        self.streams_ready = False
        self._js: JetStreamContext | None = None
        self._js_of: NATS | None = None  # the connection _js belongs to

    @property
    def nc(self) -> NATS | None:
        """The connection while it is up."""
        return self.link.nc

    @property
    def js(self) -> JetStreamContext | None:
        """The JetStream context of the current connection; None while NATS is down."""
        nc = self.link.nc
        if nc is None:
            return None
        if self._js_of is not nc:
            self._js, self._js_of = nc.jetstream(timeout=2), nc
            self.streams_ready = False  # a new or wiped server may lack them
        return self._js

    @property
    def epoch(self) -> int:
        """Counts connections: a new value means a new (or re-established) one."""
        return self.link.connections

    @property
    def ready(self) -> bool:
        """Connected, with a JetStream context."""
        return self.js is not None

    async def run(self) -> None:
        """Keep NATS connected (retrying forever) until ``close()``, making the streams on each new connection."""
        await self.link.run(self._connected)

    async def _connected(self, _nc: NATS) -> None:
        await self.ensure()

    async def ensure(self) -> JetStreamContext | None:
        """The JetStream context once the streams and buckets are present (created or updated when they may be
        missing); None while NATS is down or they cannot be created."""
        js = self.js
        if js is not None and not self.streams_ready:
            try:
                await ensure_streams(js, self.settings.stream_replicas)
                self.streams_ready = js is self._js  # not when the connection was replaced meanwhile
            except Exception as exc:  # noqa: BLE001 - retried on the next tick
                self.link.state.down(f"cannot create streams: {exc}")
        return js if self.streams_ready else None

    def lost(self, reason: object) -> None:
        """A request failed while the connection was failing: one line, the first time."""
        self.link.state.down(reason)

    def confirmed(self) -> None:
        """A request succeeded: one line if the connection had been reported down."""
        self.link.state.up()

    async def close(self, timeout: float = 1.5) -> None:
        """Drain (flush what is in flight), then close; bounded by ``timeout``."""
        await self.link.drain(timeout)
