"""The publisher's PostgreSQL connection, on its own thread.

It says when it goes down and when it comes back in one log line, never once per tick (backoff.StateLog),
and reconnects forever with exponential backoff (NATS: ``workers/jetstream_link.py``).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any, TypeVar

import psycopg2
import psycopg2.errors
import psycopg2.extensions

from flexgate_stream.backoff import Backoff, StateLog
from flexgate_stream.errors import DatabaseUnavailable
from flexgate_stream.requestlog import database
from flexgate_stream.settings import Settings
from flexgate_stream.tick.figures import WindowFigures
from flexgate_stream.tick.incremental import BACKFILL_IDS, IncrementalAggregation
from flexgate_stream.tick.time_column import TimeColumn

log = logging.getLogger("workers.publisher")

LOST_CONNECTION = (psycopg2.OperationalError, psycopg2.InterfaceError, DatabaseUnavailable)
# The tables are missing or older than this code: the release step has not run (yet) against this database.
SCHEMA_BEHIND = (psycopg2.errors.UndefinedTable, psycopg2.errors.UndefinedColumn)
RUN_RELEASE = "run the release step, `flask --app flexgate_stream db upgrade`"
# Cut short by the server's own statement or lock timeout: the server is there, the work is slow (a large fold,
# the rollup lock held by another publisher).
TIMED_OUT = (psycopg2.errors.QueryCanceled, psycopg2.errors.LockNotAvailable)
STATEMENT_SHARE = 0.5  # PostgreSQL's statement timeout, as a share of the tick
ANSWER_SHARE = 0.8  # no answer by then (a share of the tick) means the server is hung: it cannot time itself out
MAX_STRETCH = 64  # work the server keeps timing out is allowed up to this many times the statement timeout
SMALLEST_CHUNK = 1_000  # ids: a backfill chunk is made smaller down to this, then it is given more time instead

T = TypeVar("T")


class Skipped(Exception):
    """A call queued behind one that found PostgreSQL down: it waits for the retry like the calls after it."""


class Database:
    """One PostgreSQL connection, used only from one worker thread so the loop never blocks on it.

    Every statement has a timeout shorter than the tick, kept by the server (``statement_timeout``,
    ``lock_timeout``) and, for a server that cannot answer at all, by the client (``answer_within``): a tick
    is never held longer than a tick. Work the server keeps cutting short is allowed twice the time on each
    next try, told in one line, until it fits again.
    """

    def __init__(self, settings: Settings, ident: str) -> None:
        self.url = settings.require_database()
        self.settings = settings
        self.budget = 60_000  # bytes a summary may take: under 64 KB and the server's max_payload (Publisher sets it)
        self.published: datetime | None = None  # the newest window stored in JetStream (Publisher sets it)
        self.ahead: datetime | None = None  # how far a fold may move the windows (Publisher sets it)
        self.zone = settings.requests_timezone
        self.ident = ident
        self.state = StateLog(log, f"publisher[{ident}]", "PostgreSQL")
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="publisher-pg")
        # Each tick tries once anyway: a delay under one tick (counted from the tick's start) means the tick
        # after PostgreSQL comes back reconnects, while faster ticks still back off.
        self.backoff = Backoff(cap=0.9 * settings.tick_seconds)
        self.retry_at = 0.0
        self.timeout = STATEMENT_SHARE * settings.tick_seconds
        self.grace = (ANSWER_SHARE - STATEMENT_SHARE) * settings.tick_seconds
        self.stretch = 1  # the statement timeout is ``timeout * stretch``
        self.applied = 0  # the stretch the connection's timeouts were last set for (0: not set)
        self.took = 0.0  # how long the last call's work ran
        self.busy = False
        self.cancelling = False
        self.conn: psycopg2.extensions.connection | None = None
        self.aggregation: IncrementalAggregation | None = None
        self.backfilling = False
        self.chunks_told = False  # the first smaller backfill chunk is told, the next ones only at DEBUG

    @property
    def down(self) -> bool:
        """True from a failed call until one succeeds."""
        return self.state.down_since is not None

    async def aggregate(self, window_ends: list[datetime], index: bool = False) -> list[WindowFigures] | None:
        """Fold the new rows into the rollups, then the figures of ``window_ends`` (oldest first; ``index``: the
        last with every tracked route and upstream).

        None while PostgreSQL is down (or not yet due for a retry), or when the work ran past its timeout.
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

    async def settle(self) -> None:
        """Add a tick's logged cells into the rollups (the warm stop's last PostgreSQL work)."""
        if self.aggregation is not None and not self.down:
            await self._run(self._settle)

    async def _run(self, work: Callable[..., T], *args: Any) -> T | None:
        started = time.monotonic()
        if started < self.retry_at:
            return None
        try:
            result = await asyncio.get_running_loop().run_in_executor(self.executor, self._guarded, started, work,
                                                                      *args)
        except Skipped:
            return None
        except TIMED_OUT as exc:
            self.state.up()  # it answered
            if not self.cancelling:  # else the warm stop cancelled it
                self._timed_out(exc, backfill=work == self._backfill_step)
            return None
        except (psycopg2.Error, DatabaseUnavailable) as exc:
            # A lost connection (refused, reset, restarted server, no answer, "connection already closed") or a
            # schema the release step has not made yet is a state told in one line; any other database error is
            # a fault and keeps its traceback.
            if isinstance(exc, SCHEMA_BEHIND):
                self.state.down(exc, hint=RUN_RELEASE)
            else:
                self.state.down(exc, exc_info=not isinstance(exc, LOST_CONNECTION))
            return None
        self.state.up()
        if work == self._backfill_step:
            self._fit_chunks(timed_out=False)
        if self.stretch > 1 and self.took <= self.timeout:
            self.stretch = 1
            log.info("publisher[%s]: PostgreSQL work is back within its %.3g s statement timeout", self.ident,
                     self.timeout)
        return result

    def _guarded(self, started: float, work: Callable[..., T], *args: Any) -> T:
        if time.monotonic() < self.retry_at:
            raise Skipped
        self.busy = True  # set on the database thread itself, so a stop can tell a query still runs
        begun = time.monotonic()
        try:
            with database.answer_within(self.timeout * self.stretch + self.grace):
                if self.conn is None or self.conn.closed:
                    self._connect()
                if self.applied != self.stretch:
                    self._set_timeouts()
                result = work(*args)
        except TIMED_OUT:
            raise
        except (psycopg2.Error, DatabaseUnavailable):
            # Set here, before the next queued call runs: it then skips instead of waiting on the same server.
            self.retry_at = started + self.backoff.next_delay()
            self.close()
            raise
        finally:
            self.busy = False
            self.took = time.monotonic() - begun
        self.backoff.reset()
        return result

    def _fit_chunks(self, timed_out: bool) -> bool:
        """Halve the backfill chunk when one ran past the statement timeout, double it back (up to its first size)
        when one took under a quarter of it; False when it is as small as it goes."""
        aggregation = self.aggregation
        if aggregation is None:
            return False
        if not timed_out:
            if self.took < self.timeout / 4:
                aggregation.chunk_ids = min(BACKFILL_IDS, aggregation.chunk_ids * 2)
            return True
        if aggregation.chunk_ids <= SMALLEST_CHUNK:
            return False
        aggregation.chunk_ids = max(SMALLEST_CHUNK, aggregation.chunk_ids // 2)
        log.log(logging.DEBUG if self.chunks_told else logging.INFO, "publisher[%s]: a backfill chunk ran past the "
                "%.3g s statement timeout; folding smaller ones (%d ids)", self.ident, self.timeout * self.stretch,
                aggregation.chunk_ids)
        self.chunks_told = True
        return True

    def _timed_out(self, exc: psycopg2.Error, backfill: bool) -> None:
        if backfill and isinstance(exc, psycopg2.errors.QueryCanceled) and self._fit_chunks(timed_out=True):
            return
        if self.stretch == 1:
            log.warning("publisher[%s]: PostgreSQL work ran past its %.3g s timeout (%s); allowing it more time, "
                        "up to %.3g s", self.ident, self.timeout, str(exc).strip().splitlines()[0],
                        self.timeout * MAX_STRETCH)
        self.stretch = min(MAX_STRETCH, self.stretch * 2)

    def _aggregate(self, window_ends: list[datetime], index: bool = False) -> list[WindowFigures]:
        conn, aggregation = self._connected()
        aggregation.budget, aggregation.published = self.budget, self.published
        aggregation.ahead = self.ahead if not window_ends else None
        return aggregation.tick(conn, window_ends, index)

    def _settle(self) -> None:
        conn, aggregation = self._connected()
        aggregation.settle(conn)

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
            cur.execute("SET work_mem = '64MB'")
        column = TimeColumn(self.zone if database.timestamp_is_naive(conn) else None)
        conn.commit()
        if self.aggregation is None or self.aggregation.column.naive_zone != column.naive_zone:
            s = self.settings
            self.aggregation = IncrementalAggregation(column, s.route_patterns, s.max_routes, s.max_upstreams,
                                                      s.top_routes, s.tick_seconds)
        self.conn, self.applied = conn, 0

    def _set_timeouts(self) -> None:
        assert self.conn is not None  # _guarded connects first
        statement = round(1000 * self.timeout * self.stretch)
        with self.conn, self.conn.cursor() as cur:
            # The lock a little shorter, so a wait for another publisher's lock says so.
            cur.execute("SET statement_timeout = %s; SET lock_timeout = %s", (statement, statement * 9 // 10))
        self.applied = self.stretch

    def cancel(self) -> None:
        """Cancel a running query, so a warm stop stays within its deadline (thread-safe; waits at most 0.5 s,
        as a hung server does not take the request)."""
        conn = self.conn
        if conn is None or conn.closed or not self.busy:
            return
        self.cancelling = True
        sender = threading.Thread(target=_cancel, args=(conn,), name="publisher-pg-cancel", daemon=True)
        sender.start()
        sender.join(0.5)

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


def _cancel(conn: psycopg2.extensions.connection) -> None:
    try:
        conn.cancel()
    except psycopg2.Error:
        pass
