"""Scheduled jobs that overrun their interval, told once: one line when a run overran, one when runs are back
on time, instead of APScheduler's warning for every run skipped or missed meanwhile."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from apscheduler.events import (
    EVENT_JOB_ERROR,
    EVENT_JOB_EXECUTED,
    EVENT_JOB_MAX_INSTANCES,
    EVENT_JOB_MISSED,
    EVENT_JOB_SUBMITTED,
    JobEvent,
)
from apscheduler.schedulers.base import BaseScheduler

log = logging.getLogger("workers.publisher")


class OverrunLog:
    """Watches a scheduler's jobs; ``excused()`` true means another line already says why runs are slow;
    ``allowed``: how long a job may run before it is told, where that is not its interval."""

    def __init__(self, ident: str, excused: Callable[[], bool] = lambda: False,
                 allowed: dict[str, float] | None = None) -> None:
        self.ident = ident
        self.excused = excused
        self.allowed = allowed or {}
        self.scheduler: BaseScheduler | None = None
        self.started: dict[str, float] = {}
        self.skipped: dict[str, int] = {}
        self.late: set[str] = set()  # jobs told as overrunning and not yet back on time

    def watch(self, scheduler: BaseScheduler) -> None:
        """Follow ``scheduler``'s jobs, and keep APScheduler's own lines to errors."""
        self.scheduler = scheduler
        logging.getLogger("apscheduler").setLevel(logging.ERROR)  # its runs at INFO, skips and misses at WARNING
        scheduler.add_listener(self._on_event, EVENT_JOB_SUBMITTED | EVENT_JOB_EXECUTED | EVENT_JOB_ERROR
                               | EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES)

    def _on_event(self, event: JobEvent) -> None:
        job = event.job_id
        if event.code == EVENT_JOB_SUBMITTED:
            self.started[job] = time.monotonic()
        elif event.code in (EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED):
            self.skipped[job] = self.skipped.get(job, 0) + 1
        elif job in self.started:
            self._ended(job, time.monotonic() - self.started.pop(job), self.skipped.pop(job, 0))

    def _ended(self, job: str, took: float, skipped: int) -> None:
        interval = self._interval(job)
        if interval is None:
            return
        if took <= self.allowed.get(job, interval):
            if job in self.late:
                self.late.discard(job)
                log.info("publisher[%s]: %s back on time", self.ident, job)
        elif job not in self.late and not self.excused():
            self.late.add(job)
            log.warning("publisher[%s]: %s overran: %.1f s (it runs every %g s; %d runs skipped meanwhile)",
                        self.ident, job, took, interval, skipped)

    def _interval(self, job: str) -> float | None:
        found = self.scheduler.get_job(job) if self.scheduler is not None else None
        interval = getattr(found.trigger, "interval", None) if found is not None else None
        return interval.total_seconds() if interval is not None else None
