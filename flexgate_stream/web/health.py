"""``GET /healthz`` (the process serves) and ``GET /readyz`` (NATS connected, streams present)."""

from __future__ import annotations

import os

from flask import Blueprint, Response, current_app, jsonify

from flexgate_stream.errors import FlexgateError
from flexgate_stream.fanout import jetstream_api

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    """The process is alive and serving."""
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz() -> tuple[Response, int]:
    """Ready when this worker's NATS connection is up and the streams it reads exist; 503 otherwise."""
    from flexgate_stream.web.extension import EXTENSION

    service = current_app.extensions[EXTENSION]
    body: dict = {"ready": False, "nats": False, "missingStreams": None, "worker": os.getpid(), "server": os.getppid()}
    try:
        if not service.started:
            service.start()
        missing = service.call(jetstream_api.missing_streams)
    except FlexgateError as exc:
        body["reason"] = str(exc)
        return jsonify(body), 503
    body.update(nats=True, missingStreams=missing, ready=not missing)
    if missing:
        body["reason"] = f"stream(s) {', '.join(missing)} do not exist yet; the publisher creates them."
    return jsonify(body), 200 if body["ready"] else 503
