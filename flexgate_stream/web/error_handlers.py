"""Every error answers JSON ``{"success": false, "error": "..."}``; never a traceback, never a secret of the
request, and never a redirect (one would repeat the request's query, ``?access_token=`` included)."""

from __future__ import annotations

import logging

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException, NotFound
from werkzeug.routing import RequestRedirect

from flexgate_stream.errors import NatsUnavailable, RequestError
from flexgate_stream.logs import redact

log = logging.getLogger(__name__)

RETRY_AFTER = "5"


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    """The JSON error body with ``status``; a token the message quotes from the request is redacted."""
    response = jsonify({"success": False, "error": redact(message)})
    response.status_code = status
    response.headers.update(headers or {})
    return response


def init_app(app: Flask) -> None:
    """Register the JSON error handlers, and 404 where Werkzeug would redirect."""
    app.before_request(_no_redirect)
    app.register_error_handler(RequestError, _request_error)
    app.register_error_handler(NatsUnavailable, _nats_unavailable)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected)


def _no_redirect() -> None:
    # Werkzeug redirects /api//x to /api/x (merged slashes) and /x to /x/ (strict slashes) with the query string in
    # Location, and serves //x as /x. No route is reached that way: the path is not one of ours.
    # The path as sent: decoding it (as _asked_path does) adds no slash, so the raw one is searched.
    req = request._get_current_object()  # type: ignore[attr-defined]
    if isinstance(req.routing_exception, RequestRedirect) or "//" in req.script_root + req.environ.get("PATH_INFO", ""):
        req.routing_exception = NotFound()


def _asked_path() -> str:
    """The path as the client sent it (``request.path`` drops leading slashes: ``//x`` reads ``/x``)."""
    raw: str = request.environ.get("PATH_INFO", "")
    return request.script_root + raw.encode("latin-1").decode("utf-8", "replace")


def _request_error(exc: RequestError) -> Response:
    return error_response(exc.status, str(exc), exc.headers)


def _nats_unavailable(exc: NatsUnavailable) -> Response:
    return error_response(503, f"the message bus is unavailable: {exc}", {"Retry-After": RETRY_AFTER})


def _http_error(exc: HTTPException) -> Response:
    status = exc.code or 500
    valid_methods: list[str] = getattr(exc, "valid_methods", None) or []
    if status == 404:
        message = f"no such endpoint: {_asked_path()}."
    elif status == 405:
        allowed = sorted(m for m in valid_methods if m not in ("HEAD", "OPTIONS"))
        message = f"{request.method} is not allowed on {request.path}; use {' or '.join(allowed) or 'another method'}."
    elif status == 413:
        message = "the request body is too large (at most 64 KiB)."
    else:
        message = (exc.description or exc.name).rstrip(".") + "."
    headers = {"Allow": ", ".join(valid_methods)} if status == 405 and valid_methods else {}
    return error_response(status, message, headers)


def _unexpected(exc: Exception) -> Response:
    log.error("web: %s %s failed", request.method, request.path, exc_info=exc)
    return error_response(500, "internal error; the server log has the details.")
