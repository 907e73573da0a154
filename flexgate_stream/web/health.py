"""What probes and scrapers read: ``GET /healthz`` (the process serves), ``GET /readyz`` (NATS connected, streams
present) and ``GET /metrics`` (Prometheus text of every worker)."""

from __future__ import annotations

import os
from typing import Any

from flask import Blueprint, Response, current_app, jsonify
from prometheus_client import CONTENT_TYPE_LATEST

from flexgate_stream.errors import FlexgateError
from flexgate_stream.fanout import jetstream_api
from flexgate_stream.web.bus_metrics import BusCollector
from flexgate_stream.web.extension import PROBE_TIMEOUT, current_service, service_of

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    """The process is alive and serving."""
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz() -> tuple[Response, int]:
    """Ready when this worker's NATS connection is up and the streams it reads exist; 503 otherwise."""
    body: dict[str, Any] = {"ready": False, "nats": False, "missingStreams": None, "worker": os.getpid(),
                            "server": os.getppid()}
    try:
        missing = current_service().call(jetstream_api.missing_streams, timeout=PROBE_TIMEOUT)
    except FlexgateError as exc:
        body["reason"] = str(exc)
        return jsonify(body), 503
    body.update(nats=True, missingStreams=missing, ready=not missing)
    if missing:
        body["reason"] = f"stream(s) {', '.join(missing)} do not exist yet; the publisher creates them."
    return jsonify(body), 200 if body["ready"] else 503


@bp.get("/metrics")
def metrics() -> Response:
    """Prometheus text exposition."""
    service = service_of(current_app)
    bus = BusCollector(service.call, service.hub, service.settings.tick_seconds)
    return Response(service.metrics.render(bus),
                    content_type=CONTENT_TYPE_LATEST)
