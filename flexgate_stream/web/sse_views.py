"""``GET /api/stream/metrics`` and ``GET /api/stream/alerts``: the SSE endpoints."""

from __future__ import annotations

import random

from flask import Blueprint, Response, request

from flexgate_stream import sse
from flexgate_stream.errors import AtCapacity
from flexgate_stream.fanout import feeds
from flexgate_stream.fanout.client_stream import ClientStream
from flexgate_stream.fanout.feeds import Feed
from flexgate_stream.web import params
from flexgate_stream.web.extension import current_service

bp = Blueprint("stream", __name__, url_prefix="/api/stream")


@bp.get("/metrics")
def stream_metrics() -> Response:
    """Summary snapshots, or one route's with ``?route=``; resumable with Last-Event-ID / ?lastEventId=."""
    last_id = params.last_event_id(request.headers.get("Last-Event-ID"), request.args.get("lastEventId"))
    route = params.route(request.args.get("route"))
    return _open(feeds.route_feed(route) if route is not None else feeds.SUMMARY, last_id)


@bp.get("/alerts")
def stream_alerts() -> Response:
    """Alerts and gateway events; ``?since=1h`` replays history first, a last event id resumes."""
    last_id = params.last_event_id(request.headers.get("Last-Event-ID"), request.args.get("lastEventId"))
    since = params.since(request.args.get("since"))
    return _open(feeds.ALERTS, last_id, since if last_id is None else None)


def _open(feed: Feed, last_id: int | None, since=None) -> Response:
    service = current_service()
    hub = service.hub
    if hub.full() or hub.closing:
        wait = {"Retry-After": str(max(1, round(service.settings.retry_ms / 1000 * random.uniform(1, 3))))}
        if hub.closing:
            raise AtCapacity("this server process is shutting down; retry shortly.", headers=wait)
        raise AtCapacity(f"this server process already serves its maximum of {hub.max_clients} streams; "
                         "retry later.", headers=wait)
    sock = request.environ.get("gunicorn.socket")
    if sock is not None:
        # A client that stops reading fails its write after this long instead of holding the stream forever.
        sock.settimeout(service.settings.send_timeout_seconds)
    stream = ClientStream(service, feed, service.open(feed), last_id=last_id, since=since, sock=sock)
    return Response(stream, headers=sse.HEADERS)
