"""Connections to the request-log database (worker and CLI only; the web tier never imports this)."""

from __future__ import annotations

import psycopg2
import psycopg2.extensions

from flexgate_stream.errors import DatabaseUnavailable


def connect(url: str, *, application_name: str = "flexgate-stream", timeout: int = 5) -> psycopg2.extensions.connection:
    """Open a connection, turning a refusal into a one-sentence DatabaseUnavailable."""
    try:
        return psycopg2.connect(url, connect_timeout=timeout, application_name=application_name)
    except psycopg2.OperationalError as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else "no answer"
        raise DatabaseUnavailable(f"cannot connect to DATABASE_URL ({reason}).") from exc


def timestamp_is_naive(conn: psycopg2.extensions.connection) -> bool:
    """True when ``requests.timestamp`` is ``timestamp without time zone`` (a gateway-written table)."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT data_type FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND table_name = 'requests' AND column_name = 'timestamp'"
        )
        row = cur.fetchone()
    return row is not None and row[0] == "timestamp without time zone"
