"""Every message shape that crosses NATS, and the names of its streams and subjects.

The publisher (workers/) writes these; the web tier (flexgate_stream/web, the bridge) reads them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any, Literal, TypedDict

SCHEMA_VERSION = 1

METRICS_STREAM = "METRICS"  # metrics.>: the summary snapshot, 24 h of history
ROUTES_STREAM = "METRICS_ROUTES"  # routes.>: per-route snapshots, kept apart so they never evict the summary
ALERTS_STREAM = "ALERTS"  # alerts.>: rule alerts and gateway events, 7 d
PUBLISHERS_BUCKET = "flexgate_publishers"  # KV: one key per live publisher, refreshed every tick, with a TTL
ALERT_STATE_BUCKET = "flexgate_alert_state"  # KV: one key per firing alert (its firing message), shared by publishers

SUMMARY_SUBJECT = "metrics.summary"
ROUTE_SUBJECT_PREFIX = "routes."  # + route_token(route): one snapshot per busy route
ALERT_SUBJECT_PREFIX = "alerts."  # + severity ("warning", "critical", "info") or gateway event kind


class Point(TypedDict):
    timestamp: str  # ISO 8601, UTC, "Z"
    value: float | None  # None: a latency of a bucket without requests (there is none, not 0)


class Series(TypedDict):
    name: str
    data: list[Point]
    unit: str


class Summary(TypedDict):
    totalRequests: int
    totalRequestsAllTime: int
    avgLatency: float
    errorRate: float
    availability: float
    p50Latency: float
    p95Latency: float
    p99Latency: float
    serverErrors: int
    clientErrors: int
    successfulRequests: int


class Window(TypedDict):
    name: str
    start: str
    end: str


class StatusCount(TypedDict):
    code: int
    count: int


class Breakdown(TypedDict):
    """Figures for one route or one upstream over the window of the object that holds it."""

    name: str
    requests: int
    requestsPerSecond: float
    errorRate: float
    p50Latency: float
    p95Latency: float
    p99Latency: float


class RecentWindow(TypedDict):
    """The same figures over a recent window: the last hour ("1h") or the last 5 minutes ("5m")."""

    window: Window
    summary: Summary  # totalRequestsAllTime is the window's count here
    statusCodes: list[StatusCount]
    routes: list[Breakdown]
    upstreams: list[Breakdown]


class Snapshot(TypedDict):
    type: Literal["metrics"]
    version: int
    summary: Summary
    window: Window
    windowEnd: str
    requestRate: Series
    latency: dict[str, Series]  # keys p50, p95, p99
    errorRate: Series
    statusCodes: list[StatusCount]
    routes: list[Breakdown]
    upstreams: list[Breakdown]
    route: str | None  # set on per-route snapshots, None on metrics.summary
    timestamp: str
    lastHour: RecentWindow | None  # None when the figures come from a full scan
    last5Minutes: RecentWindow | None
    complete: bool  # False while the rollups are still being built from an existing log


class Alert(TypedDict):
    type: Literal["alert"]
    id: str
    rule: str
    severity: str
    state: Literal["firing", "resolved"]
    value: float | None
    threshold: float | None
    route: str | None
    startedAt: str
    at: str


class GatewayEvent(TypedDict):
    """A webhook event from the gateway (circuit breakers, rate limits), republished on alerts.<kind>."""

    type: Literal["event"]
    id: str
    event: str
    timestamp: str
    data: dict[str, Any]


class PublisherBeat(TypedDict):
    """The KV value under the publisher id in PUBLISHERS_BUCKET, rewritten every tick."""

    publisher: str
    host: str
    pid: int
    startedAt: str
    seenAt: str  # the last heartbeat: the process is alive and reaches NATS
    lastTickAt: str | None  # when the last tick finished and published (None before the first)
    lastWindowEnd: str | None
    tickMs: float | None  # duration of the last tick
    tickSeconds: float
    database: str  # "ok" or "unavailable" (PostgreSQL could not be read at the last tick)


def route_token(route: str) -> str:
    """A NATS-subject-safe token for a route name (stable, short)."""
    return hashlib.sha1(route.encode()).hexdigest()[:16]


def route_subject(route: str) -> str:
    """The subject of per-route snapshots for ``route``."""
    return ROUTE_SUBJECT_PREFIX + route_token(route)


def message_id(subject: str, window_end: str) -> str:
    """The Nats-Msg-Id of a message: the same subject and window give the same id on every publisher."""
    return f"{subject}@{window_end}"


def encode(message: Mapping[str, Any]) -> bytes:
    """Compact JSON bytes, the one encoding used on the wire."""
    return json.dumps(message, separators=(",", ":"), allow_nan=False).encode()
