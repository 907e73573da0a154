"""``GET /api/stream/metrics`` and ``GET /api/stream/alerts``: the SSE endpoints."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from flask import Blueprint, Response, request
from werkzeug.datastructures import Headers

from flexgate_stream import sse
from flexgate_stream.fanout import feeds
from flexgate_stream.fanout.feeds import Feed
from flexgate_stream.web import params
from flexgate_stream.web.extension import current_service

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

bp = Blueprint("stream", __name__, url_prefix="/api/stream")


@bp.get("/metrics")
def stream_metrics() -> Response:
    """Summary snapshots, or one route's (``?route=``) or upstream's (``?upstream=``); resumable with
    Last-Event-ID / ?lastEventId=."""
    query = _query()
    last_id = params.last_event_id(request.environ.get("HTTP_LAST_EVENT_ID"), query.get("lastEventId"))
    group = params.group(query.get("route"), query.get("upstream"))
    return _open(feeds.SUMMARY if group is None else feeds.group_feed(*group), last_id)


@bp.get("/alerts")
def stream_alerts() -> Response:
    """Alerts and gateway events; ``?since=1h`` replays history first, a last event id resumes."""
    query = _query()
    last_id = params.last_event_id(request.environ.get("HTTP_LAST_EVENT_ID"), query.get("lastEventId"))
    since = params.since(query.get("since"))
    return _open(feeds.ALERTS, last_id, since if last_id is None else None)


def _query() -> dict[str, str]:
    """The query's parameters, the first value of each (as ``request.args.get``): werkzeug's ``args.get`` makes
    and catches an HTTP exception for every parameter that is not there, three times a stream's opening."""
    return request.args.to_dict() if request.environ.get("QUERY_STRING") else {}


def _open(feed: Feed, last_id: int | None, since: timedelta | None = None) -> Response:
    stream = current_service().admit(feed, last_id=last_id, since=since, sock=request.environ.get("gunicorn.socket"))
    return StreamResponse(stream, headers=sse.HEADERS, direct_passthrough=True)


class StreamResponse(Response):
    """An SSE response: its headers go out as the view and the hooks set them."""

    def get_wsgi_headers(self, environ: WSGIEnvironment) -> Headers:
        # werkzeug's copies the headers to make Location and Content-Location absolute and to set or drop
        # Content-Length; a stream (200, its length unknown) has none of them.
        return self.headers
