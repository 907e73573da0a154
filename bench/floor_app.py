"""The floor of bench/fanout_vs_nchan.py (``--floor``): the web tier's design with none of the project's code.

A minimal Flask app on gunicorn's stock gevent worker (``bench/floor_gunicorn.conf.py``, the shape of
conf/gunicorn.conf.py): one view whose generator-based SSE response sends one small frame, then waits on a gevent
``Event`` that is never set, until the worker stops. No bridge, no NATS, no hooks, no resting; gunicorn's own
access log with the deployed format. What opening a stream costs there is what gunicorn and Flask cost on their own.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from flask import Flask, Response
from gevent.event import Event

HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
FRAME = b'event: hello\ndata: {"floor":true}\n\n'


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

    return app
