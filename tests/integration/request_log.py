"""Request-log rows for integration tests: a deterministic mix of paths, statuses and latencies, and an insert
that writes them the way a gateway does (optionally into a table whose timestamp has no time zone)."""

from __future__ import annotations

import random
import threading
import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import psycopg2

from flexgate_stream.requestlog import schema

END = datetime(2026, 3, 29, 0, 30, tzinfo=UTC)  # the night Europe/Berlin moves its clocks
PATHS = ["/api/users/42", "/api/users/7?expand=1", "/api/users", "/api/orders/123/items/9",
         "/api/inventory/0b5f2a3c-1d2e-4f50-8a9b-0c1d2e3f4a5b", "/api/blobs/deadbeefdeadbeef01", "/",
         "/api/search?q=x/1", "/api/products/abc", "/api/users/42/", ""]
STATUSES = [200, 200, 200, 201, 204, 301, 400, 404, 429, 500, 502, 503, 0, 99, 700, -5, None]
INSERT = ('INSERT INTO requests ("timestamp", method, path, status_code, response_time_ms, upstream)'
          " VALUES (%s, 'GET', %s, %s, %s, %s)")


def make_rows(seed: int, count: int, end: datetime = END) -> list[tuple]:
    """Rows over 26 h before ``end`` (half in the last hour) and a few after it, with bad values mixed in."""
    rnd = random.Random(seed)
    rows = []
    for i in range(count):
        span = 3600 if i % 2 else 26 * 3600
        at = end - timedelta(seconds=rnd.random() * span) + (timedelta(minutes=5) if i % 50 == 0 else timedelta())
        latency = rnd.choice([None, -3.5, round(rnd.lognormvariate(3.5, 1.0), 2), round(rnd.random() * 2000, 2)])
        upstream = rnd.choice(["users-svc", "orders-svc", None])
        rows.append((at, rnd.choice(PATHS), rnd.choice(STATUSES), latency, upstream))
    return rows


def insert(db, rows: list[tuple], zone: str | None = None) -> None:
    """Insert rows; for a naive (gateway) column, as local wall-clock times in ``zone``."""
    with db, db.cursor() as cur:
        for at, *rest in rows:
            stamp = at.astimezone(ZoneInfo(zone)).replace(tzinfo=None) if zone else at
            cur.execute(INSERT, (stamp, *rest))


GATEWAY_PATHS = ["/api/users/7", "/api/orders/12", "/shop/items/p-1a2b3c/reviews"]


class Gateway(threading.Thread):
    """Rows stamped when inserted, written in the middle of each second only: every row stamped before a
    window's end (a whole second) is committed before that window is shaped, whether live or late."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url, self.stop, self.count = url, threading.Event(), 0

    def run(self) -> None:
        conn = psycopg2.connect(self.url)
        conn.autocommit = True
        with conn.cursor() as cur:
            while not self.stop.is_set():
                if 0.3 <= time.time() % 1.0 <= 0.7:
                    i = self.count
                    cur.execute('INSERT INTO requests ("timestamp", method, path, status_code, response_time_ms,'
                                " upstream) VALUES (clock_timestamp(), 'GET', %s, %s, %s, %s)",
                                (GATEWAY_PATHS[i % 3], 503 if i % 7 == 0 else 200, 5 + i % 90, f"svc-{i % 2}"))
                    self.count += 1
                self.stop.wait(0.02)
        conn.close()


def seeded(db, count: int, seed: int = 11) -> list[tuple]:
    """The schema, then ``count`` rows ending now; the rows."""
    schema.upgrade(db)
    rows = make_rows(seed, count, end=datetime.now(UTC))
    insert(db, rows)
    return rows
