"""``POST /api/events``: the gateway's webhook events, republished on ``alerts.<kind>``."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from flexgate_stream.fanout import jetstream_api
from flexgate_stream.messages import ALERT_SUBJECT_PREFIX, encode, message_id
from flexgate_stream.web import params
from flexgate_stream.web.extension import current_service

bp = Blueprint("events", __name__, url_prefix="/api")


@bp.post("/events")
def post_event() -> tuple[Response, int]:
    """Accept one ``{event, timestamp, data}`` and store it in ALERTS (202), deduplicated by content."""
    event = params.gateway_event(request.get_data(cache=False))
    subject = ALERT_SUBJECT_PREFIX + event["event"]
    seq, duplicate = current_service().call(jetstream_api.publish, subject, encode(event),
                                            message_id(subject, event["id"]))
    return jsonify({"success": True, "data": {"id": event["id"], "subject": subject, "seq": seq,
                                              "duplicate": duplicate}}), 202
