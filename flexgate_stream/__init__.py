"""flexgate-stream: the FlexGate request log as a live metrics stream."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from flexgate_stream import logs
from flexgate_stream.settings import Settings, load_or_exit

if TYPE_CHECKING:  # Flask is imported by create_app only, so the publisher worker never loads it
    from flask import Flask, Request, Response
    from flask.sessions import SessionInterface

    from flexgate_stream.web.extension import ThisProcess

def create_app(settings: Settings | None = None) -> Flask:
    """Build the web application and its CLI from ``settings``, or from the environment."""
    # Imported here, not at the top: every process imports this package (the worker too), and only the web
    # process and the CLI may load Flask.
    from flask.json.provider import DefaultJSONProvider

    from flexgate_stream.cli import db_cli, demo_cli
    from flexgate_stream.web import (
        auth,
        dashboard,
        error_handlers,
        events,
        extension,
        health,
        listing,
        openapi,
        request_body,
        sse_views,
        stats,
    )
    from flexgate_stream.web.flask_app import App

    settings = settings or load_or_exit()
    logs.configure(settings.log_level, settings.secrets)
    app = App(__name__)
    app.config["SETTINGS"] = settings
    app.config["MAX_CONTENT_LENGTH"] = request_body.MAX_BODY
    app.session_interface = _no_sessions()  # no cookies: not even the check for a secret key, on every request
    if isinstance(app.json, DefaultJSONProvider):
        app.json.sort_keys = False  # fields in the order the original sent them

    error_handlers.init_app(app)
    auth.init_app(app)
    extension.init_app(app, settings)
    app.after_request(partial(_name_worker, extension.ThisProcess))
    for module in (health, dashboard, sse_views, stats, listing, events, openapi):
        app.register_blueprint(module.bp)
    app.cli.add_command(db_cli)
    app.cli.add_command(demo_cli)
    return app


def _no_sessions() -> SessionInterface:
    """A session interface for an app that keeps no sessions: every request shares one empty, read-only session."""
    from flask.sessions import NullSession, SessionInterface

    class NoSessions(SessionInterface):
        none = NullSession()

        def open_session(self, app: Flask, request: Request) -> NullSession:
            return self.none

    return NoSessions()


def _name_worker(process: type[ThisProcess], response: Response) -> Response:
    """Say which worker process answered (load balancing and restarts are visible to operators and tests)."""
    response.headers.add("X-Flexgate-Worker", process.text)  # no other code sets it: nothing to replace
    return response
