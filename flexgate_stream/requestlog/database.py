"""Connections to the request-log database (worker and CLI only; the web tier never imports this)."""

from __future__ import annotations

import contextlib
import math
import select
import threading
import time
from collections.abc import Iterator

import psycopg2
import psycopg2.extensions

from flexgate_stream.errors import DatabaseUnavailable


class NoAnswer(psycopg2.OperationalError):
    """PostgreSQL did not answer within the caller's deadline; its connection is closed."""


_deadline = threading.local()


def connect(url: str, *, application_name: str = "flexgate-stream", timeout: int = 5) -> psycopg2.extensions.connection:
    """Open a connection, turning a refusal into a one-sentence DatabaseUnavailable."""
    try:
        return psycopg2.connect(url, connect_timeout=timeout, application_name=application_name)
    except psycopg2.OperationalError as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else "no answer"
        raise DatabaseUnavailable(f"cannot connect to DATABASE_URL ({reason}).") from exc


def bound_waits() -> None:
    """Send every wait of this process's connections through ``answer_within``'s deadline.

    Process-wide (psycopg2 has one wait callback), and psycopg2 refuses COPY while it is set: only for a
    process that needs no COPY, such as the publisher.
    """
    psycopg2.extensions.set_wait_callback(_wait)


@contextlib.contextmanager
def answer_within(seconds: float) -> Iterator[None]:
    """On this thread, a connect or a statement that gets no answer within ``seconds`` raises NoAnswer.

    A stopped or unreachable server cannot time its own statements out, and TCP keepalives do not help when
    its kernel still answers for it: only the client can tell. Needs ``bound_waits()``.
    """
    before = getattr(_deadline, "seconds", None)
    _deadline.seconds = seconds
    try:
        yield
    finally:
        _deadline.seconds = before


def _wait(conn: psycopg2.extensions.connection) -> None:
    """psycopg2's wait callback: poll the connection until its operation is done, within the thread's deadline."""
    limit: float | None = getattr(_deadline, "seconds", None)
    ends = None if limit is None else time.monotonic() + limit
    while True:
        state = conn.poll()
        if state == psycopg2.extensions.POLL_OK:
            return
        left = None if ends is None else ends - time.monotonic()
        if left is not None and left <= 0:
            raise NoAnswer(f"no answer within {limit:g} s")  # psycopg2 closes the connection
        poller = select.poll()  # the socket may change while connecting
        poller.register(conn.fileno(), select.POLLIN if state == psycopg2.extensions.POLL_READ else select.POLLOUT)
        poller.poll(None if left is None else max(1, math.ceil(left * 1000)))


def timestamp_is_naive(conn: psycopg2.extensions.connection) -> bool:
    """True when ``requests.timestamp`` is ``timestamp without time zone`` (a gateway-written table)."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT data_type FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND table_name = 'requests' AND column_name = 'timestamp'"
        )
        row = cur.fetchone()
    return row is not None and row[0] == "timestamp without time zone"
