"""How fresh a snapshot this worker holds is (stats read flexgate_stream.liveness from NATS instead)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from flexgate_stream.liveness import STALE_TICKS
from flexgate_stream.timestamps import parse_iso


def snapshot_time(data: bytes) -> datetime | None:
    """When a snapshot's window ended (else its ``timestamp``); None when unreadable."""
    try:
        doc = json.loads(data)
        raw = doc.get("windowEnd") or doc.get("timestamp")
        stamp = parse_iso(raw)
    except (ValueError, TypeError, AttributeError):
        return None
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)


def snapshot_age(data: bytes | None, now: datetime | None = None) -> float | None:
    """Seconds since the snapshot in ``data`` was taken."""
    taken = snapshot_time(data) if data else None
    if taken is None:
        return None
    return max(0.0, ((now or datetime.now(UTC)) - taken).total_seconds())


def is_stale(age: float | None, tick_seconds: float) -> bool:
    """A snapshot older than three ticks (or none at all) is stale."""
    return age is None or age > STALE_TICKS * tick_seconds
