"""``GET /api/stream/metrics`` and ``GET /api/stream/alerts``: the SSE endpoints."""

from __future__ import annotations

from datetime import timedelta

from flask import Blueprint, Response, request

from flexgate_stream import sse
from flexgate_stream.fanout import feeds
from flexgate_stream.fanout.feeds import Feed
from flexgate_stream.web import params
from flexgate_stream.web.extension import current_service

bp = Blueprint("stream", __name__, url_prefix="/api/stream")


@bp.get("/metrics")
def stream_metrics() -> Response:
    """Summary snapshots, or one route's (``?route=``) or upstream's (``?upstream=``); resumable with
    Last-Event-ID / ?lastEventId=."""
    last_id = params.last_event_id(request.headers.get("Last-Event-ID"), request.args.get("lastEventId"))
    group = params.group(request.args.get("route"), request.args.get("upstream"))
    return _open(feeds.SUMMARY if group is None else feeds.group_feed(*group), last_id)


@bp.get("/alerts")
def stream_alerts() -> Response:
    """Alerts and gateway events; ``?since=1h`` replays history first, a last event id resumes."""
    last_id = params.last_event_id(request.headers.get("Last-Event-ID"), request.args.get("lastEventId"))
    since = params.since(request.args.get("since"))
    return _open(feeds.ALERTS, last_id, since if last_id is None else None)


def _open(feed: Feed, last_id: int | None, since: timedelta | None = None) -> Response:
    stream = current_service().admit(feed, last_id=last_id, since=since, sock=request.environ.get("gunicorn.socket"))
    return Response(stream, headers=sse.HEADERS, direct_passthrough=True)
