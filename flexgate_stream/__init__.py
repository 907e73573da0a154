"""flexgate-stream: the FlexGate request log as a live metrics stream."""

from __future__ import annotations

import logging

from flask import Flask

from flexgate_stream.settings import Settings, load_or_exit


def create_app(settings: Settings | None = None) -> Flask:
    """Build the web application (and its CLI) from ``settings``, or from the environment."""
    settings = settings or load_or_exit()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = Flask(__name__)
    app.config["SETTINGS"] = settings

    from flexgate_stream.web import health

    app.register_blueprint(health.bp)

    from flexgate_stream.cli import db_cli, demo_cli

    app.cli.add_command(db_cli)
    app.cli.add_command(demo_cli)
    return app
