"""``GET /api/metrics/routes`` and ``GET /api/metrics/upstreams``: every tracked route or upstream, a page at a time.

The pages are the publisher's index (METRICS_INDEX), answered as stored: the web tier never reads PostgreSQL.
"""

from __future__ import annotations

from flask import Blueprint, Response, request

from flexgate_stream.errors import NotFound
from flexgate_stream.web import params
from flexgate_stream.web.extension import current_service

bp = Blueprint("listing", __name__, url_prefix="/api/metrics")


@bp.get("/routes")
def routes() -> Response:
    """Page ``?page=`` (0, the busiest, by default) of every route tracked over the last 24 hours."""
    return _page("routes")


@bp.get("/upstreams")
def upstreams() -> Response:
    """Page ``?page=`` of every upstream tracked over the last 24 hours."""
    return _page("upstreams")


def _page(kind: str) -> Response:
    number = params.page(request.args.get("page"))
    first, page = current_service().index.page(kind, number)
    if first is None:
        raise NotFound(f"no {kind} index has been published yet: the publisher writes it every tick.")
    if page is None:
        raise NotFound(f"the {kind} index has no page {number} now: it has {first.pages} "
                       f"(0 to {first.pages - 1}) as of {first.window_end}.")
    body = b'{"success":true,"data":' + page.data + b"}"
    return Response(body, content_type="application/json", headers={"Cache-Control": "no-cache"})
