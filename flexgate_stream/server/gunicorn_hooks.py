"""gunicorn hooks for the web process: start the bridge in each worker, end streams fast on SIGTERM (on a
reload, once the new workers serve: server.handover), and keep prometheus-client's multiprocess files right.
conf/gunicorn.conf.py calls these."""

from __future__ import annotations

import gc
import logging
import os
import signal
import tempfile
import time
from pathlib import Path
from typing import Any

from flexgate_stream.server import handover
from flexgate_stream.settings import Settings

log = logging.getLogger(__name__)

SHUTDOWN_GRACE = 2.0  # seconds a stream has to deliver its last frame before its socket is cut
# Objects allocated, less those freed, between two collections of the youngest generation (Python's default: 700).
YOUNG_COLLECTION_AFTER = 50_000
_sigterm_since_fork = False  # in a new worker: a SIGTERM arrived before gunicorn set its handlers


def hold_sigterm_across_forks() -> None:
    """on_starting (in the master): a SIGTERM sent to a new worker before it has its own handlers is kept for it.

    From the fork to gunicorn's init_signals (after the gevent patching, ~0.2 s) a worker runs the master's
    handler, which queues the signal in the worker's copy of the arbiter, where nothing reads it: the worker
    would serve on until the master killed it graceful_timeout later. So SIGTERM is blocked across each fork
    (the master receives its own right after) and a new process notes one until gunicorn's handler takes over.
    """
    os.register_at_fork(before=_block_sigterm, after_in_parent=_unblock_sigterm, after_in_child=_note_sigterm)


def sigterm_since_fork() -> bool:
    """In a worker, once gunicorn set its signal handlers: whether a SIGTERM arrived before it did."""
    return _sigterm_since_fork


def _block_sigterm() -> None:
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})


def _unblock_sigterm() -> None:
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})


def _note_sigterm() -> None:
    def noted(_signum: int, _frame: object) -> None:
        global _sigterm_since_fork
        _sigterm_since_fork = True

    signal.signal(signal.SIGTERM, noted)
    _unblock_sigterm()  # one sent since the fork is noted now


def metrics_dir(configured: str | None) -> tuple[str, bool]:
    """The multiprocess metrics folder, created when not configured; and whether we created it."""
    if configured:
        return configured, False
    return tempfile.mkdtemp(prefix="flexgate-prometheus-"), True


def clear_metrics_dir(path: str) -> None:
    """Remove the files of a previous run (their PIDs are gone) before any worker starts."""
    for stale in Path(path).glob("*.db"):
        stale.unlink(missing_ok=True)


def open_api_warning(settings: Settings) -> str | None:
    """when_ready (in the master): the one warning to log when the API has no token."""
    if settings.api_tokens:
        return None
    events = ("and POST /api/events accepts events from anyone (FLEXGATE_EVENTS_OPEN=true)" if settings.events_open
              else "except POST /api/events, which is closed until a token is set or FLEXGATE_EVENTS_OPEN=true")
    return f"auth: FLEXGATE_API_TOKENS is not set, so /api/* answers anyone who can reach it, {events}"


def tune_collector() -> None:
    """Make the cyclic garbage collector cheap for a worker that opens thousands of streams a second."""
    # Opening one stream allocates hundreds of objects and, in a storm, thousands of requests are under way at once:
    # at Python's default threshold the youngest generation was collected every few requests, each time traversing
    # the objects of every request in flight, a third of the worker's CPU while streams opened (docs/performance.md,
    # "Opening streams"). A request leaves a few objects in reference cycles, so the collector stays on; collected
    # every YOUNG_COLLECTION_AFTER allocations, most objects are freed by their reference counts before it runs.
    # What the worker loaded before serving (the app, its modules) lives as long as the process: out of its sight.
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_COLLECTION_AFTER, older, oldest)


def worker_started(worker: Any) -> None:
    """post_worker_init: start the bridge, and make SIGTERM end every stream with a last frame, once the
    workers replacing this one (on a reload) are ready."""
    import gevent

    from flexgate_stream.web.extension import service_of  # see worker_exiting

    service = service_of(worker.wsgi)
    tune_collector()
    service.start()
    pid, master = os.getpid(), worker.ppid
    handover.mark_ready(master, pid)

    def stop(how: str) -> None:
        log.info("web[%s]: SIGTERM%s, ending %d streams", pid, how, service.hub.clients)
        # Stop accepting now (the other workers take new connections), and end open requests at once.
        stop_accepting = getattr(worker, "stop_accepting", None)
        if stop_accepting is not None:
            stop_accepting()
        worker.alive = False
        service.shutdown(grace=SHUTDOWN_GRACE)

    def hand_over(replacing: list[int]) -> None:
        # Keep serving (and accepting) meanwhile: the accept queue would hold every request until they are.
        deadline = time.monotonic() + handover.HANDOVER_SECONDS
        while not (ready := handover.ready(master, replacing)) and time.monotonic() < deadline:
            gevent.sleep(0.05)
        state = "ready" if ready else f"not ready after {handover.HANDOVER_SECONDS:g} s"
        stop(f"; workers {', '.join(map(str, replacing))} replacing this one are {state}")

    def on_term() -> None:
        # Still marked ready until it exits: a sibling stopping with it (a full stop) must not wait for it.
        replacing = handover.starting(master, pid)
        if worker.alive and replacing:
            gevent.spawn(hand_over, replacing)
        else:
            stop("")

    gevent.signal_handler(signal.SIGTERM, on_term)


def worker_exiting(worker: Any) -> None:
    """worker_exit: close the worker's NATS connection."""
    # Imported in the worker, not at the top: the master imports this module before it has set
    # PROMETHEUS_MULTIPROC_DIR, which prometheus-client (loaded by the extension) reads once on import.
    from flexgate_stream.web.extension import service_of

    handover.unmark(worker.ppid, os.getpid())
    app = getattr(worker, "wsgi", None)
    if app is not None:
        service_of(app).stop(timeout=1.0)


def worker_gone(pid: int, path: str) -> None:
    """child_exit (in the master): drop a dead worker's live gauges and its ready mark, however it died."""
    handover.unmark(os.getpid(), pid)
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid, path)


def master_exiting() -> None:
    """on_exit (in the master): remove the workers' ready marks."""
    handover.forget(os.getpid())
