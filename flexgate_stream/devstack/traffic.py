"""Realistic demo traffic for the request log: routes with path parameters, upstreams, incidents."""

from __future__ import annotations

import bisect
import io
import logging
import math
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg2.extensions

Row = tuple[Any, ...]  # one requests row, in the order of COLUMNS

log = logging.getLogger(__name__)

COLUMNS = ("timestamp", "method", "path", "status_code", "response_time_ms", "upstream", "client_ip",
           "user_agent", "request_size", "response_size", "error_message", "correlation_id")

USER_AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/131.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_2) AppleWebKit/605.1.15 Version/17.2 Safari/605.1.15",
    "okhttp/4.12.0",
    "python-requests/2.32.3",
    "FlexGateMobile/3.4.1 (iOS 17.2)",
)

CLIENT_ERRORS = ((400, "bad request"), (401, "missing credentials"), (404, "not found"), (429, "rate limited"))
SERVER_ERRORS = ((500, "upstream error"), (502, "bad gateway"), (503, "upstream unavailable"),
                 (504, "upstream timeout"))


@dataclass(frozen=True)
class Route:
    """One gateway route: how it is called and how its upstream behaves."""

    method: str
    template: str
    upstream: str
    weight: float
    median_ms: float
    sigma: float
    client_error: float = 0.03
    server_error: float = 0.004


ROUTES: tuple[Route, ...] = (
    Route("GET", "/api/users/{id}", "users-svc", 18, 22, 0.45),
    Route("GET", "/api/users", "users-svc", 6, 45, 0.5),
    Route("POST", "/api/users", "users-svc", 1.5, 80, 0.5, client_error=0.08),
    Route("GET", "/api/orders/{id}", "orders-svc", 12, 35, 0.5),
    Route("POST", "/api/orders", "orders-svc", 4, 140, 0.6, client_error=0.05),
    Route("GET", "/api/products", "catalog-svc", 14, 30, 0.4),
    Route("GET", "/api/products/{id}/reviews", "catalog-svc", 5, 55, 0.55),
    Route("GET", "/api/inventory/{uuid}", "inventory-svc", 7, 18, 0.35),
    Route("GET", "/api/search", "search-svc", 10, 120, 0.7),
    Route("POST", "/api/auth/login", "auth-svc", 3, 95, 0.3, client_error=0.12),
    Route("POST", "/api/payments", "payments-svc", 2, 260, 0.5, server_error=0.01),
    Route("GET", "/api/reports/{id}/download", "reports-svc", 0.8, 900, 0.6),
)


@dataclass
class Incident:
    """One upstream failing or slow between ``start`` and ``end``."""

    upstream: str
    kind: str  # "failing" or "slow"
    start: datetime
    end: datetime

    def covers(self, upstream: str, at: datetime) -> bool:
        return upstream == self.upstream and self.start <= at < self.end


class TrafficModel:
    """Draws request-log rows; the same seed gives the same rows."""

    def __init__(self, seed: int | None = None, incident_every: timedelta = timedelta(minutes=15)) -> None:
        self.random = random.Random(seed)
        self.incident_every = incident_every
        self.incidents: list[Incident] = []
        self._weights = [r.weight for r in ROUTES]
        self._starts: list[datetime] = []

    def plan_incidents(self, start: datetime, end: datetime) -> None:
        """Schedule incidents of one minute, on average one per ``incident_every``."""
        upstreams = sorted({r.upstream for r in ROUTES})
        mean_gap = self.incident_every.total_seconds()
        at = start + timedelta(seconds=self.random.expovariate(1 / mean_gap))
        while at < end:
            kind = self.random.choice(("failing", "slow"))
            self.incidents.append(Incident(self.random.choice(upstreams), kind, at, at + timedelta(minutes=1)))
            at += timedelta(seconds=60 + self.random.expovariate(1 / mean_gap))
        self.incidents = [i for i in self.incidents if i.end > start - timedelta(hours=1)]
        self._starts = [i.start for i in self.incidents]

    def incident_at(self, upstream: str, at: datetime) -> Incident | None:
        """The incident under way at ``at`` on ``upstream``, if any (incidents never overlap in time)."""
        index = bisect.bisect_right(self._starts, at) - 1
        if index >= 0 and self.incidents[index].covers(upstream, at):
            return self.incidents[index]
        return None

    def row(self, at: datetime) -> Row:
        """One request at ``at`` (an aware datetime)."""
        rnd = self.random
        route = rnd.choices(ROUTES, self._weights)[0]
        incident = self.incident_at(route.upstream, at)
        latency = rnd.lognormvariate(math.log(route.median_ms), route.sigma)
        server_error = route.server_error
        if incident is not None and incident.kind == "slow":
            latency *= 12
        if incident is not None and incident.kind == "failing":
            server_error = 0.45
        roll = rnd.random()
        error_message = None
        if roll < server_error:
            status, error_message = rnd.choice(SERVER_ERRORS)
            if status == 504:
                latency = max(latency, 30000 * rnd.uniform(0.98, 1.0))
        elif roll < server_error + route.client_error:
            status, error_message = rnd.choice(CLIENT_ERRORS)
            latency *= 0.3
        else:
            status = 201 if route.method == "POST" else 200
        path = route.template.format(id=rnd.randint(1, 99999), uuid=uuid.UUID(int=rnd.getrandbits(128)))
        if route.template == "/api/search":
            path += f"?q=item{rnd.randint(1, 500)}"
        request_size = rnd.randint(200, 4000) if route.method == "POST" else 0
        response_size = rnd.randint(80, 400) if status >= 400 else int(rnd.lognormvariate(7.5, 1.0))
        client_ip = f"10.{rnd.randint(0, 255)}.{rnd.randint(0, 255)}.{rnd.randint(1, 254)}"
        return (at, route.method, path, status, round(min(latency, 99_999_999.99), 2), route.upstream, client_ip,
                rnd.choice(USER_AGENTS), request_size, response_size, error_message, uuid.uuid4().hex)

    def rows(self, start: datetime, end: datetime, count: int) -> Iterator[Row]:
        """``count`` rows at random instants in [start, end)."""
        span = (end - start).total_seconds()
        for _ in range(count):
            yield self.row(start + timedelta(seconds=self.random.random() * span))


class RowWriter:
    """Writes rows to ``requests`` by COPY, in the zone a gateway-written table expects."""

    def __init__(self, conn: psycopg2.extensions.connection, naive_zone: str | None) -> None:
        self.conn = conn
        self.zone = ZoneInfo(naive_zone) if naive_zone else None

    def _stamp(self, at: datetime) -> str:
        if self.zone is not None:
            return at.astimezone(self.zone).replace(tzinfo=None).isoformat()
        return at.astimezone(UTC).isoformat()

    def write(self, rows: list[Row]) -> None:
        """COPY ``rows`` in one transaction."""
        buf = io.StringIO()
        for row in rows:
            fields = [self._stamp(row[0])] + [_copy_text(v) for v in row[1:]]
            buf.write("\t".join(fields))
            buf.write("\n")
        buf.seek(0)
        with self.conn, self.conn.cursor() as cur:
            cur.copy_expert(f"COPY requests ({', '.join(_quote(c) for c in COLUMNS)}) FROM STDIN", buf)


def _quote(column: str) -> str:
    return f'"{column}"'


def _copy_text(value: object) -> str:
    if value is None:
        return "\\N"
    text = str(value)
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")
