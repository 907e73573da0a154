"""The one format of time on the wire: ISO 8601 in UTC with a ``Z``, milliseconds unless more are asked for."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal


def iso(at: datetime, timespec: Literal["milliseconds", "microseconds"] = "milliseconds") -> str:
    """``at`` (an aware datetime) as ISO 8601 in UTC with a ``Z``."""
    return at.astimezone(UTC).isoformat(timespec=timespec).replace("+00:00", "Z")


def utc_now_iso() -> str:
    """Now, as ``iso`` writes it."""
    return iso(datetime.now(UTC))


def parse_iso(text: str) -> datetime:
    """An aware datetime from our ISO strings (``Z`` suffix accepted)."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
