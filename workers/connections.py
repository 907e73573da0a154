"""The publisher's two connections: PostgreSQL (on its own thread) and NATS (on the asyncio loop).

Each says when it goes down and when it comes back in one log line, never once per tick, and
reconnects forever with exponential backoff.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any, TypeVar

import nats
import psycopg2
import psycopg2.errors
import psycopg2.extensions
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from flexgate_stream.backoff import Backoff
from flexgate_stream.errors import DatabaseUnavailable
from flexgate_stream.requestlog import database
from flexgate_stream.settings import Settings
from flexgate_stream.tick.figures import WindowFigures
from flexgate_stream.tick.incremental import IncrementalAggregation
from flexgate_stream.tick.stream_setup import ensure_streams
from flexgate_stream.tick.time_column import TimeColumn

log = logging.getLogger("workers.publisher")

LOST_CONNECTION = (psycopg2.OperationalError, psycopg2.InterfaceError, DatabaseUnavailable)
# The tables are missing or older than this code: the release step has not run (yet) against this database.
SCHEMA_BEHIND = (psycopg2.errors.UndefinedTable, psycopg2.errors.UndefinedColumn)
RUN_RELEASE = "run the release step, `flask --app flexgate_stream db upgrade`"

T = TypeVar("T")


class StateLog:
    """Logs a link's state only when it changes: one line on going down, one on coming back."""

    def __init__(self, ident: str, what: str) -> None:
        self.ident, self.what = ident, what
        self.down_since: float | None = None

    def down(self, reason: object, exc_info: bool = False, hint: str = "") -> None:
        """Note a failure (its first line, then ``hint``: what to do about it); logs only the first of a run."""
        if self.down_since is None:
            self.down_since = time.monotonic()
            said = str(reason).strip().splitlines()[0] if str(reason).strip() else type(reason).__name__
            log.warning("publisher[%s]: %s is unavailable (%s); retrying with backoff", self.ident, self.what,
                        f"{said}: {hint}" if hint else said, exc_info=exc_info)

    def up(self) -> None:
        """Note a success; logs only after a failure."""
        if self.down_since is not None:
            log.info("publisher[%s]: %s is back after %.1f s", self.ident, self.what,
                     time.monotonic() - self.down_since)
            self.down_since = None


class Database:
    """One PostgreSQL connection, used only from one worker thread so the loop never blocks on it."""

    def __init__(self, settings: Settings, ident: str) -> None:
        self.url = settings.require_database()
        self.settings = settings
        self.budget = 60_000  # bytes a summary may take: under 64 KB and the server's max_payload (Publisher sets it)
        self.published: datetime | None = None  # the newest window stored in JetStream (Publisher sets it)
        self.zone = settings.requests_timezone
        self.state = StateLog(ident, "PostgreSQL")
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="publisher-pg")
        # Each tick tries once anyway: a delay under one tick (counted from the tick's start) means the tick
        # after PostgreSQL comes back reconnects, while faster ticks still back off.
        self.backoff = Backoff(cap=0.9 * settings.tick_seconds)
        self.retry_at = 0.0
        self.busy = False
        self.conn: psycopg2.extensions.connection | None = None
        self.aggregation: IncrementalAggregation | None = None
        self.backfilling = False

    async def aggregate(self, window_ends: list[datetime], index: bool = False) -> list[WindowFigures] | None:
        """Fold the new rows into the rollups, then the figures of ``window_ends`` (oldest first; ``index``: the
        last with every tracked route and upstream).

        None while PostgreSQL is down (or not yet due for a retry).
        """
        return await self._run(self._aggregate, window_ends, index)

    async def backfill(self) -> None:
        """Fold the log that existed before the rollups, chunk by chunk, until done (a no-op once done).

        Chunks run on the database thread one at a time, so a tick waits for at most one chunk.
        """
        if self.aggregation is None or self.aggregation.complete or self.backfilling:
            return
        self.backfilling = True
        try:
            while await self._run(self._backfill_step):
                await asyncio.sleep(0)
        finally:
            self.backfilling = False

    async def _run(self, work: Callable[..., T], *args: Any) -> T | None:
        started = time.monotonic()
        if started < self.retry_at:
            return None
        try:
            result = await asyncio.get_running_loop().run_in_executor(self.executor, self._guarded, work, *args)
        except (psycopg2.Error, DatabaseUnavailable) as exc:
            # A lost connection (refused, reset, restarted server, "connection already closed") or a schema the
            # release step has not made yet is a state told in one line; any other database error is a fault and
            # keeps its traceback.
            if isinstance(exc, SCHEMA_BEHIND):
                self.state.down(exc, hint=RUN_RELEASE)
            else:
                self.state.down(exc, exc_info=not isinstance(exc, LOST_CONNECTION))
            self.retry_at = started + self.backoff.next_delay()
            await asyncio.get_running_loop().run_in_executor(self.executor, self.close)
            return None
        self.backoff.reset()
        self.state.up()
        return result

    def _guarded(self, work: Callable[..., T], *args: Any) -> T:
        self.busy = True  # set on the database thread itself, so a stop can tell a query still runs
        try:
            if self.conn is None or self.conn.closed:
                self._connect()
            return work(*args)
        finally:
            self.busy = False

    def _aggregate(self, window_ends: list[datetime], index: bool = False) -> list[WindowFigures]:
        conn, aggregation = self._connected()
        aggregation.budget, aggregation.published = self.budget, self.published
        return aggregation.tick(conn, window_ends, index)

    def _backfill_step(self) -> bool:
        conn, aggregation = self._connected()
        return aggregation.backfill_step(conn)

    def _connected(self) -> tuple[psycopg2.extensions.connection, IncrementalAggregation]:
        if self.conn is None or self.aggregation is None:  # _guarded connects first
            raise DatabaseUnavailable("not connected to PostgreSQL.")
        return self.conn, self.aggregation

    def _connect(self) -> None:
        conn = database.connect(self.url, application_name="flexgate-publisher", timeout=2)
        with conn, conn.cursor() as cur:
            # A runaway query (or a lock held by another publisher) is cut short rather than stalling ticks.
            cur.execute("SET work_mem = '64MB'; SET statement_timeout = '30s'")
        column = TimeColumn(self.zone if database.timestamp_is_naive(conn) else None)
        conn.commit()
        if self.aggregation is None or self.aggregation.column.naive_zone != column.naive_zone:
            s = self.settings
            self.aggregation = IncrementalAggregation(column, s.route_patterns, s.max_routes, s.max_upstreams,
                                                      s.top_routes, s.tick_seconds)
        self.conn = conn

    def cancel(self) -> None:
        """Cancel a running query (thread-safe), so a warm stop stays within its deadline."""
        if self.conn is not None and not self.conn.closed:
            try:
                self.conn.cancel()
            except psycopg2.Error:
                pass

    def shutdown(self) -> None:
        """Close the connection on the database thread and let that thread end (without waiting for it)."""
        self.executor.submit(self.close)
        self.executor.shutdown(wait=False)

    def close(self) -> None:
        """Close the connection (on the database thread)."""
        if self.conn is not None:
            try:
                self.conn.close()
            except psycopg2.Error:
                pass
            self.conn = None


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
