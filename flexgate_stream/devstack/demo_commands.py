"""``flask --app flexgate_stream demo traffic`` and ``demo seed``: demo rows for the request log."""

from __future__ import annotations

import logging
import signal
import sys
import time
from datetime import UTC, datetime, timedelta

import click
import psycopg2
import psycopg2.extensions
from flask import current_app
from flask.cli import with_appcontext

from flexgate_stream.devstack.traffic import RowWriter, TrafficModel
from flexgate_stream.errors import FlexgateError
from flexgate_stream.requestlog import database
from flexgate_stream.requestlog.commands import connect_from_app

log = logging.getLogger(__name__)


def _writer(conn: psycopg2.extensions.connection) -> RowWriter:
    zone = current_app.config["SETTINGS"].requests_timezone
    return RowWriter(conn, zone if database.timestamp_is_naive(conn) else None)


@click.command("traffic")
@with_appcontext
@click.option("--rps", type=click.FloatRange(min=0.1, max=100_000), default=50.0, show_default=True,
              help="Requests per second to write.")
@click.option("--duration", type=click.FloatRange(min=0), default=0.0,
              help="Stop after this many seconds (0: run until interrupted).")
@click.option("--seed", type=int, default=None, help="Random seed, for repeatable rows.")
def demo_traffic(rps: float, duration: float, seed: int | None) -> None:
    """Insert realistic rows continuously: once a second, the requests of the second that just ended."""
    model = TrafficModel(seed)
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    started = time.monotonic()
    conn: psycopg2.extensions.connection | None = None
    writer: RowWriter | None = None
    down = False
    tick = time.time()
    click.echo(f"demo traffic: writing {rps:g} requests/s (Ctrl-C to stop)")
    try:
        while not stopping and (not duration or time.monotonic() - started < duration):
            now = datetime.fromtimestamp(tick, UTC)
            if not model.incidents or model.incidents[-1].end < now:
                model.plan_incidents(now, now + timedelta(minutes=30))
            count = _poisson(model, rps)
            try:
                if conn is None or writer is None:
                    conn = connect_from_app()
                    writer = _writer(conn)
                # Stamped before the insert, as a gateway logs a request once it is served.
                writer.write(list(model.rows(now - timedelta(seconds=1), now, count)))
                if down:
                    log.info("demo traffic: database is back")
                    down = False
            except (FlexgateError, psycopg2.Error) as exc:
                if not down:
                    log.warning("demo traffic: cannot write (%s); retrying every second", str(exc).strip())
                    down = True
                if conn is not None:
                    conn.close()
                conn = None
            tick += 1
            time.sleep(max(0.0, tick - time.time()))
    except KeyboardInterrupt:
        pass
    finally:
        if conn is not None:
            conn.close()


def _poisson(model: TrafficModel, rate: float) -> int:
    """A Poisson-distributed request count with mean ``rate`` (normal approximation when large)."""
    if rate > 50:
        return max(0, round(model.random.gauss(rate, rate ** 0.5)))
    limit, k, p = pow(2.718281828459045, -rate), 0, 1.0
    while True:
        p *= model.random.random()
        if p <= limit:
            return k
        k += 1


@click.command("seed")
@with_appcontext
@click.option("--rows", type=click.IntRange(min=1, max=500_000_000), required=True, help="How many rows.")
@click.option("--hours", type=click.FloatRange(min=0.001, max=24 * 400), default=24.0, show_default=True,
              help="Spread the rows over this many past hours.")
@click.option("--seed", type=int, default=None, help="Random seed, for repeatable rows.")
@click.option("--batch", type=click.IntRange(min=100, max=1_000_000), default=50_000, show_default=True)
def demo_seed(rows: int, hours: float, seed: int | None, batch: int) -> None:
    """Fill history fast with COPY."""
    model = TrafficModel(seed)
    end = datetime.now(UTC)
    start = end - timedelta(hours=hours)
    model.plan_incidents(start, end)
    conn = connect_from_app()
    try:
        writer = _writer(conn)
        with click.progressbar(length=rows, label="seeding requests", file=sys.stderr) as bar:
            left = rows
            while left:
                n = min(batch, left)
                writer.write(list(model.rows(start, end, n)))
                left -= n
                bar.update(n)
    finally:
        conn.close()
    click.echo(f"seeded {rows} rows over the last {hours:g} h")
