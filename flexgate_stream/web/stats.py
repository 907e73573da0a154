"""``GET /api/stream/stats`` (200 healthy, 503 otherwise) and ``GET /api/metrics/live``."""

from __future__ import annotations

import os
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request

from flexgate_stream.errors import FlexgateError, NatsUnavailable, NotFound
from flexgate_stream.fanout import jetstream_api
from flexgate_stream.fanout.feeds import SUMMARY, group_feed
from flexgate_stream.liveness import is_stale, tick_period
from flexgate_stream.messages import OVERFLOW
from flexgate_stream.web import params
from flexgate_stream.web.extension import PROBE_TIMEOUT, StreamService, current_service, service_of

bp = Blueprint("stats", __name__, url_prefix="/api")

STALLED_SECONDS = 2.0  # a write to a client pending this long means the client is not reading


@bp.get("/stream/stats")
def stream_stats() -> tuple[Response, int]:
    """Stream figures, snapshot freshness and client counts; 503 with the reason when unhealthy."""
    service = service_of(current_app)
    reasons: list[str] = []
    found: dict[str, Any] = {"metrics": None, "alerts": None, "liveness": None}
    try:
        found = current_service().call(jetstream_api.overview, timeout=PROBE_TIMEOUT)
    except FlexgateError as exc:
        reasons.append(f"NATS is unreachable ({exc})")
    tick = tick_period(found["liveness"], service.settings.tick_seconds)  # the publishers' period, as they beat
    live = found["liveness"] or {"newestWindowEnd": None, "snapshotAge": None, "publishers": []}
    age = live["snapshotAge"]
    stale = is_stale(age, tick)
    if stale and not reasons:
        reasons.append("no summary snapshot has been published yet" if age is None else
                       f"the newest snapshot is {age:.1f} s old, more than three ticks of {tick:g} s")
    data = {
        "metrics": found["metrics"],
        "alerts": found["alerts"],
        "connected": service.connected,
        "newestSnapshotAt": live["newestWindowEnd"],
        "newestSnapshotAge": None if age is None else round(age, 3),
        "stale": stale,
        "tickSeconds": tick,
        "publishers": [{"publisher": p["beat"].get("publisher"), "live": p["live"],
                        "age": None if p["age"] is None else round(p["age"], 3)} for p in live["publishers"]],
        "clients": {"worker": service.hub.clients, "total": service.metrics.total_clients(), "workerPid": os.getpid(),
                    "stalled": service.hub.stalled(STALLED_SECONDS)},
        "freshness": service.metrics.freshness(),
    }
    body: dict[str, Any] = {"success": not reasons, "data": data}
    if reasons:
        data["reason"] = body["error"] = "; ".join(reasons)
    return jsonify(body), 503 if reasons else 200


@bp.get("/metrics/live")
def metrics_live() -> Response:
    """The newest snapshot (``?route=`` or ``?upstream=`` for one) read from JetStream, for clients without SSE;
    for a route or upstream without snapshots of its own, its entry in the index."""
    group = params.group(request.args.get("route"), request.args.get("upstream"))
    feed = SUMMARY if group is None else group_feed(*group)
    service = current_service()
    stored = service.call(jetstream_api.last_message, feed.stream, feed.subject)
    if stored is None and group is not None:
        return _index_entry(service, *group)
    if stored is None:
        raise NatsUnavailable("no snapshot has been published yet")
    body = b'{"success":true,"data":' + stored.data + b"}"
    return Response(body, content_type="application/json", headers={"Cache-Control": "no-cache"})


def _index_entry(service: StreamService, kind: str, name: str) -> Response:
    """``name``'s figures from the newest index of ``kind``; 404 when it is not tracked."""
    found = service.index.lookup(kind, name)
    if found is None:
        what, limit = ("route", "FLEXGATE_MAX_ROUTES") if kind == "routes" else ("upstream", "FLEXGATE_MAX_UPSTREAMS")
        raise NotFound(f"{what} {params.shown(name)} is not tracked: no request of the last 24 hours was labelled so, "
                       f"or it came after {limit} other {kind} and counts under \"{OVERFLOW}\".")
    response = jsonify({"success": True, "data": {"type": "entry", "kind": kind, "windowEnd": found.window_end,
                                                  "entry": found.entry}})
    response.headers["Cache-Control"] = "no-cache"
    return response
