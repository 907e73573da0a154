"""Every message shape that crosses NATS, and the names of its streams and subjects.

The publisher (workers/) writes these; the web tier (flexgate_stream/web, the bridge) reads them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any, Literal, TypedDict

import orjson

SCHEMA_VERSION = 1

METRICS_STREAM = "METRICS"  # metrics.>: the summary snapshot, 24 h of history
ROUTES_STREAM = "METRICS_ROUTES"  # routes.>: per-route snapshots, kept apart so they never evict the summary
ALERTS_STREAM = "ALERTS"  # alerts.>: rule alerts and gateway events, 7 d
INDEX_STREAM = "METRICS_INDEX"  # index.>: the newest paged list of every tracked route and upstream (one per page)
PUBLISHERS_BUCKET = "flexgate_publishers"  # KV: one key per live publisher, refreshed every tick, with a TTL
ALERT_STATE_BUCKET = "flexgate_alert_state"  # KV: one key per firing alert (its firing message), shared by publishers

SUMMARY_SUBJECT = "metrics.summary"
ROUTE_SUBJECT_PREFIX = "routes."  # + route_token(route): one snapshot per busy route
UPSTREAM_SUBJECT_PREFIX = "upstreams."  # + route_token(upstream): one snapshot per busy upstream (METRICS_ROUTES)
ALERT_SUBJECT_PREFIX = "alerts."  # + severity ("warning", "critical", "info") or gateway event kind
INDEX_SUBJECT_PREFIX = "index."  # + "routes." or "upstreams." + page number (0, 1, ...)

OTHER = "(other)"  # the list entry that sums every route or upstream a list leaves out
OVERFLOW = "(overflow)"  # the label of requests beyond FLEXGATE_MAX_ROUTES / FLEXGATE_MAX_UPSTREAMS labels
SUMMARY_MAX_BYTES = 64 * 1024  # a metrics.summary message stays under this at any number of routes


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
    routes: list[Breakdown]  # the busiest, then OTHER for the rest: the entries sum to summary.totalRequests
    upstreams: list[Breakdown]
    routeCount: int  # distinct routes in the window (OVERFLOW counted as one)
    upstreamCount: int


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
    routes: list[Breakdown]  # the busiest, then OTHER for the rest: the entries sum to summary.totalRequests
    upstreams: list[Breakdown]
    routeCount: int  # distinct routes in the window (OVERFLOW counted as one)
    upstreamCount: int
    route: str | None  # set on per-route snapshots, None on metrics.summary
    upstream: str | None  # set on per-upstream snapshots
    timestamp: str
    lastHour: RecentWindow | None  # None when the figures come from a full scan
    last5Minutes: RecentWindow | None
    complete: bool  # False while the rollups are still being built from an existing log


class IndexEntry(TypedDict):
    """One route or upstream in the index: its figures over the last 24 h, hour and 5 minutes."""

    name: str
    last24Hours: Breakdown
    lastHour: Breakdown
    last5Minutes: Breakdown


class GroupIndex(TypedDict):
    """One page of the list of every route (or upstream) tracked over 24 h, busiest first."""

    type: Literal["index"]
    version: int
    kind: Literal["routes", "upstreams"]
    windowEnd: str
    page: int  # 0-based; the pages of one windowEnd together list every tracked group once
    pages: int
    total: int  # groups tracked over 24 h (OVERFLOW counted as one)
    limit: int  # FLEXGATE_MAX_ROUTES or FLEXGATE_MAX_UPSTREAMS
    overflowRequests: int  # requests of the last 24 h counted under OVERFLOW
    entries: list[IndexEntry]


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


class Cardinality(TypedDict):
    """Distinct labels of one kind over the last 24 h, against their limit."""

    labels: int  # distinct labels, OVERFLOW not counted
    limit: int
    overflowRequests: int  # requests of the last 24 h counted under OVERFLOW


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
    cardinality: dict[str, Cardinality]  # keys "routes", "upstreams": labels tracked over the last 24 h


def route_token(route: str) -> str:
    """A NATS-subject-safe token for a route name (stable, short)."""
    return hashlib.sha1(route.encode()).hexdigest()[:16]


def route_subject(route: str) -> str:
    """The subject of per-route snapshots for ``route``."""
    return ROUTE_SUBJECT_PREFIX + route_token(route)


def upstream_subject(upstream: str) -> str:
    """The subject of per-upstream snapshots for ``upstream``."""
    return UPSTREAM_SUBJECT_PREFIX + route_token(upstream)


def index_subject(kind: str, page: int) -> str:
    """The subject of page ``page`` of the index of ``kind`` ("routes" or "upstreams")."""
    return f"{INDEX_SUBJECT_PREFIX}{kind}.{page}"


def message_id(subject: str, window_end: str) -> str:
    """The Nats-Msg-Id of a message: the same subject and window give the same id on every publisher."""
    return f"{subject}@{window_end}"


def encode(message: Mapping[str, Any]) -> bytes:
    """Compact JSON bytes, the one encoding used on the wire.

    Every float of a message is finite where it is made (latencies are filtered as the log is read, webhook bodies
    and alert thresholds are checked as they come in): orjson would write NaN or Infinity as null.
    """
    try:
        return orjson.dumps(message)
    except TypeError:
        # An integer beyond 64 bits or a lone surrogate (a webhook body may hold either): the standard library
        # writes both, and still refuses NaN.
        return json.dumps(message, separators=(",", ":"), allow_nan=False).encode()
