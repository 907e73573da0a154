"""``POST /api/events``: the gateway's webhook events, republished on ``alerts.<kind>``."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify, request

from flexgate_stream.errors import Forbidden
from flexgate_stream.fanout import jetstream_api
from flexgate_stream.messages import ALERT_SUBJECT_PREFIX, encode, message_id
from flexgate_stream.settings import Settings
from flexgate_stream.web import params
from flexgate_stream.web.extension import current_service
from flexgate_stream.web.request_body import MAX_BODY, read_body, require_json

bp = Blueprint("events", __name__, url_prefix="/api")


@bp.post("/events")
def post_event() -> tuple[Response, int]:
    """Accept one ``{event, timestamp, data}`` and store it in ALERTS (202), deduplicated by content."""
    settings: Settings = current_app.config["SETTINGS"]
    if not settings.api_tokens and not settings.events_open:
        raise Forbidden("POST /api/events is closed while FLEXGATE_API_TOKENS is not set: set a token for the "
                        "gateway, or FLEXGATE_EVENTS_OPEN=true to accept events from anyone who can reach it.")
    require_json(request.headers.get("Content-Type"))
    event = params.gateway_event(read_body(request.environ, MAX_BODY, settings.body_timeout_seconds))
    subject = ALERT_SUBJECT_PREFIX + event["event"]
    seq, duplicate = current_service().call(jetstream_api.publish, subject, encode(event),
                                            message_id(subject, event["id"]))
    return jsonify({"success": True, "data": {"id": event["id"], "subject": subject, "seq": seq,
                                              "duplicate": duplicate}}), 202
