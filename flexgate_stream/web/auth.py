"""API tokens for /api/* (and /metrics when not public), and the CORS allow-list."""

from __future__ import annotations

import hmac

from flask import Flask, Request, Response, current_app, request

from flexgate_stream.errors import Unauthorized
from flexgate_stream.settings import Settings

ALLOW_HEADERS = "Authorization, Content-Type, Last-Event-ID"
ALLOW_METHODS = "GET, POST, OPTIONS"


def init_app(app: Flask) -> None:
    """Install the token check and CORS."""
    app.before_request(_before)
    app.after_request(_after)



def presented_token(req: Request) -> str | None:
    """The token in ``Authorization: Bearer``, else in ``?access_token=`` (EventSource cannot send headers)."""
    header = req.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return req.args.get("access_token") or None


def token_ok(token: str | None, tokens: tuple[str, ...]) -> bool:
    """True when ``token`` is one of ``tokens``; every token is compared, in constant time."""
    if token is None:
        return False
    given = token.encode()
    found = False
    for known in tokens:
        found |= hmac.compare_digest(given, known.encode())
    return found


def protected(path: str, settings: Settings) -> bool:
    """Whether ``path`` needs a token under ``settings``."""
    if not settings.api_tokens:
        return False
    return path.startswith("/api/") or (path == "/metrics" and not settings.metrics_public)


def allowed_origin(origin: str | None, settings: Settings) -> str | None:
    """The value for Access-Control-Allow-Origin, or None (same origin only)."""
    if not origin:
        return None
    if origin in settings.cors_origins:
        return origin
    return "*" if "*" in settings.cors_origins else None


def _before() -> Response | None:
    settings: Settings = current_app.config["SETTINGS"]
    req = request._get_current_object()  # type: ignore[attr-defined]  # once, not through the proxy each time
    if req.method == "OPTIONS" and req.environ.get("HTTP_ACCESS_CONTROL_REQUEST_METHOD"):
        return _preflight(settings)
    if protected(req.path, settings) and not token_ok(presented_token(req), settings.api_tokens):
        raise Unauthorized("a valid API token is required: send Authorization: Bearer <token> or ?access_token=.",
                           headers={"WWW-Authenticate": 'Bearer realm="flexgate-stream"'})
    return None


def _preflight(settings: Settings) -> Response:
    response = Response(status=204)
    origin = allowed_origin(request.headers.get("Origin"), settings)
    if origin:
        response.headers["Access-Control-Allow-Methods"] = ALLOW_METHODS
        response.headers["Access-Control-Allow-Headers"] = ALLOW_HEADERS
        response.headers["Access-Control-Max-Age"] = "600"
    return response


def _after(response: Response) -> Response:
    settings: Settings = current_app.config["SETTINGS"]
    if not settings.cors_origins:
        return response
    origin = allowed_origin(request.environ.get("HTTP_ORIGIN"), settings)
    if origin:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers.add("Vary", "Origin")
    return response
