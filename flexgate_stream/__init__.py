"""flexgate-stream: the FlexGate request log as a live metrics stream."""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

from flexgate_stream.settings import Settings, load_or_exit

if TYPE_CHECKING:  # Flask is imported by create_app only, so the publisher worker never loads it
    from flask import Flask, Response

MAX_BODY = 64 * 1024  # the largest request body accepted (webhook events)


def create_app(settings: Settings | None = None, *, cli: bool = True) -> Flask:
    """Build the web application (and, unless ``cli`` is false, its CLI) from ``settings``, or from the environment."""
    from flask import Flask

    settings = settings or load_or_exit()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = Flask(__name__)
    app.config["SETTINGS"] = settings
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY
    app.json.sort_keys = False

    from flexgate_stream.web import auth, errors, events, metrics, openapi, service, stats, stream

    errors.init_app(app)
    auth.init_app(app)
    service.init_app(app, settings)
    app.after_request(_name_worker)

    from flexgate_stream.web import dashboard, health

    app.register_blueprint(health.bp)
    app.register_blueprint(dashboard.bp)
    for module in (stream, stats, events, metrics, openapi):
        app.register_blueprint(module.bp)

    if cli:  # the CLI reaches PostgreSQL; the web process (gunicorn) builds the app without it
        from flexgate_stream.cli import db_cli, demo_cli

        app.cli.add_command(db_cli)
        app.cli.add_command(demo_cli)
    return app


def _name_worker(response: Response) -> Response:
    """Say which worker process answered (load balancing and restarts are visible to operators and tests)."""
    response.headers["X-Flexgate-Worker"] = str(os.getpid())
    return response
