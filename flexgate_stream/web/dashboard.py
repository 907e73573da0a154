"""The live dashboard: ``GET /`` serves one HTML page; its ES modules read the SSE streams.

Everything on the page comes from ``/api/stream/metrics`` and ``/api/stream/alerts``; this module
only renders the shell, so it needs neither NATS nor PostgreSQL.
"""

from __future__ import annotations

from flask import Blueprint, Response, render_template

bp = Blueprint("dashboard", __name__)

CHART_JS = "vendor/chartjs-4.6.1/chart.umd.min.js"

# Same origin only: the page loads its own scripts and styles and talks to its own API.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)


@bp.get("/")
def index() -> Response:
    """The dashboard page (a shell; the numbers arrive over the stream)."""
    response = Response(render_template("dashboard.html", chart_js=CHART_JS))
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-cache"
    return response
