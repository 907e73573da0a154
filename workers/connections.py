"""The publisher's two connections: PostgreSQL (on its own thread) and NATS (on the asyncio loop).

Each says when it goes down and when it comes back in one log line, never once per tick, and
reconnects forever with exponential backoff (NATS by flexgate_stream.nats_link, as the web tier does).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any, TypeVar

import psycopg2
import psycopg2.errors
import psycopg2.extensions
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from flexgate_stream.backoff import Backoff, StateLog
from flexgate_stream.errors import DatabaseUnavailable
from flexgate_stream.nats_link import NatsLink
from flexgate_stream.requestlog import database
from flexgate_stream.settings import Settings
from flexgate_stream.tick.aggregation import TimeColumn, WindowFigures
from flexgate_stream.tick.incremental import IncrementalAggregation
from flexgate_stream.tick.stream_setup import ensure_streams

log = logging.getLogger("workers.publisher")

LOST_CONNECTION = (psycopg2.OperationalError, psycopg2.InterfaceError, DatabaseUnavailable)
# The tables are missing or older than this code: the release step has not run (yet) against this database.
SCHEMA_BEHIND = (psycopg2.errors.UndefinedTable, psycopg2.errors.UndefinedColumn)
RUN_RELEASE = "run the release step, `flask --app flexgate_stream db upgrade`"

T = TypeVar("T")


class Database:
    """One PostgreSQL connection, used only from one worker thread so the loop never blocks on it."""

    def __init__(self, settings: Settings, ident: str) -> None:
        self.url = settings.require_database()
        self.settings = settings
        self.budget = 60_000  # bytes a summary may take: under 64 KB and the server's max_payload (Publisher sets it)
        self.published: datetime | None = None  # the newest window stored in JetStream (Publisher sets it)
        self.zone = settings.requests_timezone
        self.state = StateLog(log, f"publisher[{ident}]", "PostgreSQL")
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
            # A runaway query (or a lock held by another publisher) is cut short rather than holding up ticks.
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
