"""Parsing of what clients send: event ids, route names, durations, webhook events. Pure functions."""

from __future__ import annotations

import hashlib
import json
import math
import re
from datetime import UTC, datetime, timedelta
from typing import Literal

from flexgate_stream.errors import BadInput
from flexgate_stream.logs import redact
from flexgate_stream.messages import GatewayEvent
from flexgate_stream.timestamps import iso

MAX_EVENT_ID = 2**63 - 1
MAX_ROUTE = 256
MAX_PAGE = 100_000  # FLEXGATE_MAX_ROUTES' own ceiling: never more pages than that
MAX_SINCE = timedelta(days=7)  # what ALERTS keeps
MAX_DEPTH = 32  # nesting of objects and arrays in a webhook body
EVENT_NAME = re.compile(r"[a-z][a-z0-9_-]*(\.[a-z0-9_-]+){0,4}")
DIGITS = re.compile(r"[0-9]{1,19}")
GroupKind = Literal["routes", "upstreams"]  # the kinds of the index (messages.GroupIndex.kind)
SINCE = re.compile(r"(\d{1,7})(ms|s|m|h|d)")
UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def last_event_id(header: str | None, query: str | None) -> int | None:
    """The resume point: the Last-Event-ID header (newer, sent by EventSource on reconnect), else ?lastEventId=."""
    for name, raw in (("Last-Event-ID header", header), ("lastEventId parameter", query)):
        if raw is None or raw.strip() == "":
            continue
        value = raw.strip()
        if not DIGITS.fullmatch(value) or int(value) > MAX_EVENT_ID:
            raise BadInput(f"the {name} must be a stream sequence number (digits only), got {shown(raw)}.")
        return int(value)
    return None


def route(raw: str | None, parameter: str = "route") -> str | None:
    """A route (or upstream) name as the gateway reports it: 1 to 256 printable characters, no spaces."""
    if raw is None:
        return None
    if not raw or len(raw) > MAX_ROUTE or not raw.isprintable() or any(c.isspace() for c in raw):
        raise BadInput(f"the {parameter} parameter must be 1 to {MAX_ROUTE} printable characters without spaces, "
                       f"got {shown(raw)}.")
    return raw


def group(route_raw: str | None, upstream_raw: str | None) -> tuple[GroupKind, str] | None:
    """The one route or upstream a request asks for (``?route=`` or ``?upstream=``, not both), or None."""
    if route_raw is not None and upstream_raw is not None:
        raise BadInput("give either the route or the upstream parameter, not both.")
    if upstream_raw is not None:
        return "upstreams", str(route(upstream_raw, "upstream"))
    name = route(route_raw)
    return None if name is None else ("routes", name)


def page(raw: str | None) -> int:
    """A page number of the route or upstream index: 0 (the default, the busiest) or more."""
    if raw is None:
        return 0
    value = raw.strip()
    if not DIGITS.fullmatch(value) or int(value) > MAX_PAGE:
        raise BadInput(f"the page parameter must be a page number from 0 to {MAX_PAGE}, got {shown(raw)}.")
    return int(value)


def since(raw: str | None) -> timedelta | None:
    """A look-back such as 90s, 15m, 1h or 7d (at most 7 days, what the alerts stream keeps)."""
    if raw is None:
        return None
    match = SINCE.fullmatch(raw.strip())
    if not match:
        raise BadInput(f"the since parameter must be a duration such as 30s, 15m, 1h or 2d, got {shown(raw)}.")
    span = timedelta(seconds=int(match[1]) * UNITS[match[2]])
    if span > MAX_SINCE:
        raise BadInput(f"the since parameter may reach back at most 7d (what the alerts stream keeps), got {raw}.")
    return span


def gateway_event(body: bytes) -> GatewayEvent:
    """A webhook body ``{event, timestamp, data}`` checked and normalised into a GatewayEvent."""
    try:
        doc = json.loads(body, parse_constant=_no_constant, parse_float=_finite_float)
    except RecursionError:
        raise BadInput(f"the body is nested too deeply (at most {MAX_DEPTH} levels).") from None
    except _NotFinite:
        raise BadInput("the body holds NaN or Infinity, which JSON does not allow; send a finite number "
                       "or null.") from None
    except (ValueError, UnicodeDecodeError):
        raise BadInput("the body is not valid JSON.") from None
    if _depth(doc) > MAX_DEPTH:
        raise BadInput(f"the body is nested too deeply (at most {MAX_DEPTH} levels).")
    if not isinstance(doc, dict):
        raise BadInput("the body must be a JSON object with event, timestamp and data.")
    missing = [name for name in ("event", "timestamp") if name not in doc]
    if missing:
        raise BadInput(f"the body is missing {' and '.join(missing)}.")
    name = doc["event"]
    if not isinstance(name, str) or not EVENT_NAME.fullmatch(name):
        raise BadInput("event must be a dotted lower-case name such as circuit_breaker.opened, "
                       f"got {shown(str(name))}.")
    data = doc.get("data", {})
    if not isinstance(data, dict):
        raise BadInput("data must be a JSON object.")
    stamp = _timestamp(doc["timestamp"])
    digest = hashlib.sha256(json.dumps([name, stamp, data], sort_keys=True).encode()).hexdigest()[:32]
    return GatewayEvent(type="event", id=digest, event=name, timestamp=stamp, data=data)


def _timestamp(raw: object) -> str:
    """An ISO 8601 time (or epoch milliseconds) as UTC ISO with Z."""
    try:
        if isinstance(raw, bool):
            raise TypeError
        if isinstance(raw, int | float):
            moment = datetime.fromtimestamp(raw / 1000, UTC)
        else:
            moment = datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
    except (ValueError, TypeError, OverflowError, OSError):
        raise BadInput(f"timestamp must be an ISO 8601 time such as 2026-01-31T12:00:00Z, got {shown(str(raw))}.")\
            from None
    if moment.tzinfo is None:
        raise BadInput("timestamp must carry a time zone (Z or +hh:mm).")
    try:
        return iso(moment)
    except OverflowError:
        raise BadInput(f"timestamp must be between years 1 and 9999 in UTC, got {shown(str(raw))}.") from None


class _NotFinite(ValueError):
    """NaN, Infinity or a number too large for a double: valid for Python's parser, not for JSON."""


def _no_constant(name: str) -> float:
    raise _NotFinite(name)


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NotFinite(text)
    return value


def _depth(doc: object) -> int:
    """How deeply objects and arrays nest in ``doc`` (0 for a scalar), without recursion."""
    deepest, pending = 0, [(doc, 1)]
    while pending:
        node, level = pending.pop()
        if isinstance(node, dict | list):
            deepest = max(deepest, level)
            pending.extend((child, level + 1) for child in (node.values() if isinstance(node, dict) else node))
    return deepest


def shown(raw: str) -> str:
    """A user value, secrets redacted, shortened and quoted, safe to echo in a message."""
    raw = redact(raw)  # before shortening: a cut token would no longer be recognised
    short = raw if len(raw) <= 40 else raw[:37] + "..."
    return json.dumps(short)
