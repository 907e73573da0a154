"""The metrics publisher: ``python -m workers.publisher`` (the Procfile's ``worker``).

Every tick (5 s, aligned to wall-clock multiples) it aggregates the request log for the window
ending at that instant and publishes the summary snapshot, per-route snapshots and alert changes
to JetStream, each with a Nats-Msg-Id derived from subject and window end, so publishers running
side by side store each message once. Like rq's worker: bootstrap, signal handlers, loop, teardown;
the first SIGTERM is a warm stop (finish the tick, drain NATS, exit 0), the second a cold stop.

Scheduling uses APScheduler's AsyncIOScheduler: the tick is a coroutine on the loop that owns
nats-py, so publishing needs no thread hand-off; the blocking PostgreSQL work runs on the
Database's own thread, which keeps the loop responsive to signals and NATS pings.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import signal
import socket
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta

import nats.errors
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger
from nats.js import JetStreamContext

from flexgate_stream import logs
from flexgate_stream.errors import ConfigError
from flexgate_stream.messages import SUMMARY_MAX_BYTES
from flexgate_stream.requestlog import database
from flexgate_stream.settings import Settings, load_or_exit
from flexgate_stream.tick.alerts import Rule, load_rules
from workers.collector import Collector
from workers.connections import Database
from workers.jetstream_link import JetStreamLink
from workers.outbox import Outbox
from workers.overruns import OverrunLog

log = logging.getLogger("workers.publisher")

WARM_STOP_SECONDS = 4.5  # the whole warm stop, inside the 5 s a supervisor grants
TICK_GRACE = 3.0  # how long a warm stop waits for a running tick before cancelling its query
FOLD_SECONDS = 0.5  # between ticks, new rows are folded this often: a tick folds what arrived in the last half period
FOLDS_FROM = 2.0  # ticks this long or longer have folds between them (a shorter tick folds its own rows)
INDEX_TICKS = 3  # the index of every route and upstream is published every this many ticks, by a fold (off the tick)


def window_end_for(now: float, tick: float) -> datetime:
    """The tick boundary a run at ``now`` stands for: the latest multiple of ``tick`` (early firing tolerated)."""
    return datetime.fromtimestamp(math.floor(now / tick + 0.2) * tick, UTC)


def publisher_id() -> str:
    """A KV-key-safe id: host, pid and a random suffix."""
    host = "".join(c if c.isalnum() or c in "-_" else "-" for c in socket.gethostname())[:40] or "host"
    return f"{host}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class Publisher:
    """One publisher process: scheduler, PostgreSQL thread, NATS connection, signal handling."""

    def __init__(self, settings: Settings, rules: list[Rule]) -> None:
        self.settings = settings
        self.ident = publisher_id()
        self.db = Database(settings, self.ident)
        self.outbox = Outbox(settings, rules, self.ident)
        self.nats = JetStreamLink(settings, self.ident)
        # A fold that runs past its period only makes the next fold's rows wait for the one after (or the tick): it
        # is told once it runs past a tick's period, when it delays ticks. While the database is down, its own line
        # says why runs are slow.
        self.overruns = OverrunLog(self.ident, excused=lambda: self.db.down, allowed={"fold": settings.tick_seconds})
        self.attached_epoch = 0  # the NATS connection the outbox was last attached to
        self.stopping = asyncio.Event()
        self.signals = 0
        self.tick_task: asyncio.Task[None] | None = None
        self.last_window_end: datetime | None = None
        self.backfill: asyncio.Task[None] | None = None
        self.fold_task: asyncio.Task[None] | None = None
        self.index_due = 0.0  # monotonic time of the next index
        self.collector = Collector()  # the garbage collector's passes, moved off the ticks onto the folds

    async def run(self) -> int:
        """Bootstrap, tick until a stop is requested, tear down; the exit status."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal, sig)
        log.info("publisher[%s]: starting, tick %.3g s, pid %d", self.ident, self.settings.tick_seconds, os.getpid())
        connector = asyncio.create_task(self.nats.run())
        scheduler = self._scheduler(loop)
        scheduler.start()
        try:
            await self.stopping.wait()
        finally:
            await self._teardown(scheduler, connector)
        return 0

    def _scheduler(self, loop: asyncio.AbstractEventLoop) -> AsyncIOScheduler:
        tick = self.settings.tick_seconds
        first = datetime.fromtimestamp(math.ceil(time.time() / tick) * tick, UTC)
        scheduler = AsyncIOScheduler(event_loop=loop, timezone=UTC)
        self.overruns.watch(scheduler)
        scheduler.add_job(self.tick, IntervalTrigger(seconds=tick, start_date=first, timezone=UTC), id="tick",
                          max_instances=1, coalesce=True, misfire_grace_time=max(1, int(tick)))
        if tick >= FOLDS_FROM:  # half a fold's period off the tick's phase, so folds and ticks do not meet
            halfway = first + timedelta(seconds=FOLD_SECONDS / 2)
            scheduler.add_job(self.fold, IntervalTrigger(seconds=FOLD_SECONDS, start_date=halfway, timezone=UTC),
                              id="fold", max_instances=1, coalesce=True, misfire_grace_time=1)
        return scheduler

    def _on_signal(self, sig: int) -> None:
        self.signals += 1
        if self.signals == 1:
            log.info("publisher[%s]: %s, warm stop (finishing the tick, draining NATS)", self.ident,
                     signal.Signals(sig).name)
            self.stopping.set()
            return
        log.warning("publisher[%s]: second %s, cold stop", self.ident, signal.Signals(sig).name)
        sys.stderr.flush()
        os._exit(1)

    async def fold(self) -> None:
        """Between ticks: fold the rows that arrived into the rollups, so a tick publishes soon after its window
        ends (the same work, spread over the period); never raises."""
        if self.stopping.is_set() or self.tick_task is not None or self.db.down:
            return  # while PostgreSQL is down, only ticks try it again
        self.fold_task = asyncio.current_task()
        try:
            self.db.ahead = self._live_bound()
            if not await self._index():
                await self.db.aggregate([])
            self.collector.between_ticks()
        except asyncio.CancelledError:
            pass  # the warm stop ended it (_teardown); a job that raised would be logged as a fault
        except Exception:  # the loop boundary: log and carry on
            log.error("publisher[%s]: folding new rows failed", self.ident, exc_info=True)
        finally:
            self.fold_task = None

    async def _index(self) -> bool:
        """When due, fold and publish the index of every tracked route and upstream; False when not due."""
        js, at = self.nats.js if self.nats.ready else None, self._live_bound()
        if js is None or at is None or not self._index_due():
            return False
        figures = await self.db.aggregate([at], index=True)
        if figures:
            try:
                await self.outbox.publish_index(js, figures[-1])
            except (TimeoutError, nats.errors.Error) as exc:
                self.nats.lost(exc)
        return True

    def _live_bound(self) -> datetime | None:
        """Now, but not past the next tick's window end, so that tick's windows never lie behind the running
        totals; None unless ticks publish live (a catch-up may still need older minutes)."""
        last, tick = self.last_window_end, self.settings.tick_seconds
        if last is None or time.time() > last.timestamp() + 2 * tick:
            return None
        bound = min(time.time(), last.timestamp() + tick)
        return datetime.fromtimestamp(math.floor(bound * 1000) / 1000, UTC)

    def _index_due(self) -> bool:
        """True every INDEX_TICKS ticks' time."""
        if time.monotonic() < self.index_due:
            return False
        self.index_due = time.monotonic() + INDEX_TICKS * self.settings.tick_seconds
        return True

    async def tick(self) -> None:
        """One tick: aggregate the window ending now, publish it; never raises."""
        window_end = window_end_for(time.time(), self.settings.tick_seconds)
        if self.stopping.is_set() or (self.last_window_end is not None and window_end <= self.last_window_end):
            return
        self.tick_task = asyncio.current_task()
        try:
            with self.collector.paused():  # the folds collect what the tick leaves
                await self._tick(window_end, time.perf_counter())
        except asyncio.CancelledError:
            log.warning("publisher[%s]: tick %s cancelled by the stop", self.ident, window_end.isoformat())
        except Exception:  # the loop boundary: log and carry on with the next tick
            log.error("publisher[%s]: tick %s failed", self.ident, window_end.isoformat(), exc_info=True)
        finally:
            self.tick_task = None

    async def _tick(self, window_end: datetime, started: float) -> None:
        js = await self._attached()
        try:
            due = await self.outbox.due_windows(js, window_end) if js is not None else []
        except (TimeoutError, nats.errors.Error) as exc:
            self.nats.lost(exc)
            due, js = [], None
        # New rows are folded into the rollups every tick, even while NATS is down.
        self.db.published = self.outbox.newest_stored  # slots of older minutes are no longer needed
        # With ticks too short for folds between them (under 2 s), the tick itself publishes the index.
        index = self.settings.tick_seconds < FOLDS_FROM and bool(due) and self._index_due()
        figures = await self.db.aggregate(due, index=index)
        if self.backfill is None or self.backfill.done():  # folds the pre-existing log between ticks
            self.backfill = asyncio.get_running_loop().create_task(self.db.backfill())
        if js is None:
            return  # NATS down: its state line said so; the windows are published once it is back
        try:
            if figures is None:  # alive, but nothing to publish: PostgreSQL is down, or the work ran past its time
                await self.outbox.heartbeat(**({"database": "unavailable"} if self.db.down else {}))
                return
            for one in figures:  # missed windows first, oldest first, then the current one
                await self.outbox.publish(js, one, started, catching_up=one.window_end != window_end)
        except (TimeoutError, nats.errors.Error) as exc:
            self.nats.lost(exc)  # e.g. a publish timed out while the connection was failing
            return
        self.nats.confirmed()
        if figures and figures[-1].window_end == window_end:
            self.last_window_end = window_end

    async def _attached(self) -> JetStreamContext | None:
        """JetStream with the streams present and the outbox attached to this connection; None while NATS is down."""
        js = await self.nats.ensure()
        if js is not None and self.attached_epoch != self.nats.epoch:
            try:
                await self.outbox.attach(js)  # buckets, firing alerts, heartbeat: once per (re)connection
            except (TimeoutError, nats.errors.Error) as exc:
                self.nats.lost(f"cannot open the KV buckets: {exc}")
                return None
            self.attached_epoch = self.nats.epoch
            if self.nats.nc is not None:  # shape every message within the server's limit
                self.outbox.max_payload = self.nats.nc.max_payload
                self.db.budget = int(min(SUMMARY_MAX_BYTES, self.outbox.max_payload) * 0.9)
        return js

    async def _teardown(self, scheduler: AsyncIOScheduler, connector: asyncio.Task[None]) -> None:
        deadline = time.monotonic() + WARM_STOP_SECONDS
        scheduler.pause()  # no new ticks; shutdown() would cancel the running one, so it waits until after
        task = self.tick_task
        if task is not None and not task.done():
            _done, pending = await asyncio.wait({task}, timeout=TICK_GRACE)
            if pending:
                log.warning("publisher[%s]: tick still running at stop; cancelling its query", self.ident)
                self.db.cancel()
                await asyncio.wait({task}, timeout=max(0.1, deadline - time.monotonic() - 1.0))
        for unfinished in (task, self.fold_task, self.backfill):  # nothing may write after retire() removed the beat
            if unfinished is not None and not unfinished.done():
                unfinished.cancel()
                await asyncio.wait({unfinished}, timeout=0.5)
        scheduler.shutdown(wait=False)
        # The last tick's cells may be only logged: added now, so whichever publisher (or release) comes next
        # reads complete rollups.
        await asyncio.wait({asyncio.ensure_future(self.db.settle())},
                           timeout=max(0.1, min(1.0, deadline - time.monotonic() - 1.5)))
        js = self.nats.js
        if js is not None:
            await self.outbox.retire(js, timeout=0.5)
        await self.nats.close(timeout=max(0.1, deadline - time.monotonic() - 0.2))
        connector.cancel()  # it ends by itself once closed, unless it was in the middle of connecting
        self.db.cancel()
        self.db.shutdown()
        log.info("publisher[%s]: stopped", self.ident)


def main() -> None:
    """Entry point: settings and rules (one-sentence errors, status 2), then run until stopped."""
    settings = load_or_exit()
    logs.configure(settings.log_level, settings.secrets)
    database.bound_waits()  # every PostgreSQL call of this process gets an answer or gives up, within its tick
    try:
        settings.require_database()
        rules = load_rules(settings.alert_rules_file, settings.alert_overrides)
    except ConfigError as exc:
        print(f"flexgate-stream: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    publisher = Publisher(settings, rules)
    code = asyncio.run(publisher.run())
    logging.shutdown()
    if publisher.db.busy:
        os._exit(code)  # a query we could not cancel must not hold the exit past the stop deadline
    raise SystemExit(code)


if __name__ == "__main__":
    main()
