"""How the request log's ``timestamp`` column is compared with UTC instants in SQL."""

from __future__ import annotations

from datetime import datetime
from typing import Any


class TimeColumn:
    """How ``requests.timestamp`` is compared with UTC instants, for a timestamptz or a naive column."""

    def __init__(self, naive_zone: str | None) -> None:
        self.naive_zone = naive_zone

    def bound(self, param: str) -> str:
        """SQL for an instant parameter, in the column's own type (so the timestamp index is used)."""
        if self.naive_zone is None:
            return f"%({param})s"
        return f"(%({param})s AT TIME ZONE %(zone)s)"

    def instant(self) -> str:
        """SQL for the column as an absolute instant."""
        return '"timestamp"' if self.naive_zone is None else '("timestamp" AT TIME ZONE %(zone)s)'

    def between(self, low: str, high: str) -> str:
        """A WHERE clause: low <= timestamp < high."""
        return f'"timestamp" >= {self.bound(low)} AND "timestamp" < {self.bound(high)}'

    def params(self, **values: datetime | int) -> dict[str, Any]:
        """Query parameters: the instants (and ids) given, and the zone of a naive column."""
        return {**values, "zone": self.naive_zone or "UTC"}
