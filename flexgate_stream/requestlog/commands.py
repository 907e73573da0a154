"""``flask --app flexgate_stream db upgrade``: create or update the request-log schema."""

from __future__ import annotations

import click
import psycopg2.extensions
from flask import current_app
from flask.cli import with_appcontext

from flexgate_stream.requestlog import database, schema


def connect_from_app() -> psycopg2.extensions.connection:
    """A connection to DATABASE_URL of the current app's settings, named for the CLI."""
    settings = current_app.config["SETTINGS"]
    return database.connect(settings.require_database(), application_name="flexgate-stream-cli")


@click.command("upgrade")
@with_appcontext
def db_upgrade() -> None:
    """Create or update the schema (idempotent)."""
    conn = connect_from_app()
    try:
        applied = schema.upgrade(conn)
    finally:
        conn.close()
    for line in applied:
        click.echo(f"applied {line}")
    click.echo("schema is up to date")
