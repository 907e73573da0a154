"""The floor of bench/fanout_vs_nchan.py (``--floor``): the web tier's design with none of the project's code.

A minimal Flask app on gunicorn's stock gevent worker (``bench/floor_gunicorn.conf.py``, the shape of
conf/gunicorn.conf.py): one view whose generator-based SSE response sends one small frame, then waits on a gevent
``Event`` that is never set, until the worker stops. No bridge, no NATS, no hooks, no resting; gunicorn's own
access log with the deployed format. What opening a stream costs there is what gunicorn and Flask cost on their own.

``FLOOR_GC=tuned`` sets the cyclic collector as the web tier's workers set it (``gc.freeze`` once loaded, the
youngest generation collected every 50,000 allocations). ``FLOOR_TIMING=1`` times each request's Flask dispatch
(``app.wsgi_app``, which never gives way to another greenlet here) in thread CPU time, and the collections that
ran inside it; ``/timing`` answers the worker's totals (bench/floor_dispatch.py reads them).
"""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from flask import Flask, Response
from gevent.event import Event

HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
FRAME = b'event: hello\ndata: {"floor":true}\n\n'
YOUNG_COLLECTION_AFTER = 50_000  # as flexgate_stream.server.gunicorn_hooks


def create_app() -> Flask:
    """The floor's app: ``/sub`` streams, ``/whoami`` names the master and worker that answered."""
    app = Flask(__name__)
    never = Event()

    @app.get("/sub")
    def sub() -> Response:
        def frames() -> Iterator[bytes]:
            yield FRAME
            never.wait()  # until the worker stops

        return Response(frames(), mimetype="text/event-stream", headers=HEADERS)

    @app.get("/whoami")
    def whoami() -> dict[str, int]:
        return {"server": os.getppid(), "worker": os.getpid()}

    if os.environ.get("FLOOR_TIMING") == "1":
        timing = DispatchTiming(app)
        app.get("/timing")(timing.totals)
    if os.environ.get("FLOOR_GC") == "tuned":
        gc.freeze()
        gc.set_threshold(YOUNG_COLLECTION_AFTER, *gc.get_threshold()[1:])
    return app


class DispatchTiming:
    """Each ``/sub`` request's Flask dispatch in thread CPU time, and the collector's time inside it."""

    def __init__(self, app: Flask) -> None:
        self.inner: Callable[..., Iterable[bytes]] = app.wsgi_app
        app.wsgi_app = self  # type: ignore[method-assign]
        self.requests = self.cpu_ns = self.gc_ns = self.with_gc = 0
        self.gc_total_ns = self.gc_started = 0
        gc.callbacks.append(self._collector)

    def _collector(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self.gc_started = time.thread_time_ns()
        else:
            self.gc_total_ns += time.thread_time_ns() - self.gc_started

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != "/sub":
            return self.inner(environ, start_response)
        gc0, t0 = self.gc_total_ns, time.thread_time_ns()
        try:
            return self.inner(environ, start_response)
        finally:
            took, in_gc = time.thread_time_ns() - t0, self.gc_total_ns - gc0
            self.requests += 1
            self.cpu_ns += took
            self.gc_ns += in_gc
            self.with_gc += in_gc > 0

    def totals(self) -> dict[str, int]:
        return {"worker": os.getpid(), "requests": self.requests, "cpu_ns": self.cpu_ns, "gc_ns": self.gc_ns,
                "with_gc": self.with_gc, "gc_total_ns": self.gc_total_ns}
