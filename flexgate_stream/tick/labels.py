"""What a request is counted under: its route label and upstream, at most so many distinct ones over 24 h.

A path is labelled with the gateway's route pattern that matches it (``route_patterns``), else with its
id-folded route (``routes.fold_route``). Like OpenTelemetry's cardinality limit, the first
``limit`` distinct labels seen over the last 24 h are kept; requests with any further label are counted
under OVERFLOW, so every total still equals the sum of its parts. Labels are given when rows are folded
into the rollups, so a label never changes once counted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

import psycopg2.extensions

from flexgate_stream.messages import OVERFLOW
from flexgate_stream.tick.rollups import MINUTE_SECONDS, Cell
from flexgate_stream.tick.route_patterns import RoutePatterns
from flexgate_stream.tick.routes import fold_route

log = logging.getLogger("workers.publisher")

MEMO_PATHS = 200_000  # distinct paths whose label is remembered (dropped all at once when full)
# FlexGate's own table of routes (migrations/001_initial_schema.sql), when the gateway shares this database.
ROUTES_COLUMNS = ("SELECT attname FROM pg_attribute WHERE attrelid = to_regclass('routes')"
                  " AND attname IN ('path', 'enabled', 'deleted_at') AND NOT attisdropped")
ENABLED_ROUTES = "SELECT DISTINCT path FROM routes WHERE enabled IS NOT FALSE AND path IS NOT NULL"


def table_patterns(cur: psycopg2.extensions.cursor) -> list[str] | None:
    """The path patterns of the enabled routes in the gateway's ``routes`` table (soft-deleted ones left out);
    None without such a table."""
    cur.execute(ROUTES_COLUMNS)
    columns = {name for (name,) in cur.fetchall()}
    if not {"path", "enabled"} <= columns:
        return None
    cur.execute(ENABLED_ROUTES + (" AND deleted_at IS NULL" if "deleted_at" in columns else ""))
    return sorted(str(path) for (path,) in cur.fetchall())


def newest_labels(cur: psycopg2.extensions.cursor, column: str, first_minute: int) -> list[tuple[str, int]]:
    """Each ``column`` ("route" or "upstream") stored in the rollups since ``first_minute``, with its newest minute."""
    assert column in ("route", "upstream")
    cur.execute(f"SELECT {column}, (extract(epoch FROM max(bucket_start)) / {MINUTE_SECONDS})::bigint"
                " FROM request_rollups WHERE bucket_start >= to_timestamp(%s) GROUP BY 1",
                (first_minute * MINUTE_SECONDS,))
    return [(str(label), int(minute)) for label, minute in cur.fetchall()]


def read_patterns(cur: psycopg2.extensions.cursor, labeller: Labeller, own: tuple[str, ...]) -> None:
    """Label new rows by the gateway's routes table (when it has one) and ``own`` (FLEXGATE_ROUTE_PATTERNS)."""
    table = table_patterns(cur)
    if labeller.use(RoutePatterns([*(table or []), *own])):
        log.info("rollups: labelling requests by %d route patterns (%s from the routes table, %d from"
                 " FLEXGATE_ROUTE_PATTERNS)", len(labeller.patterns.patterns), "none" if table is None else len(table),
                 len(own))


class Labeller:
    """A path's route label: the most specific matching pattern as configured, else its folded route."""

    def __init__(self, patterns: RoutePatterns | None = None) -> None:
        self.patterns = patterns or RoutePatterns()
        self._memo: dict[str | None, str] = {}

    def use(self, patterns: RoutePatterns) -> bool:
        """Label new rows with ``patterns`` from now on; True when they differ from the current ones."""
        if patterns == self.patterns:
            return False
        self.patterns = patterns
        self._memo.clear()
        return True

    def __call__(self, path: str | None) -> str:
        label = self._memo.get(path)
        if label is None:
            if len(self._memo) >= MEMO_PATHS:
                self._memo.clear()
            matched = self.patterns.match(path) if path and self.patterns else None
            label = self._memo[path] = matched or fold_route(path)
        return label


class Limit:
    """The distinct labels of one kind seen over the last 24 h, at most ``limit`` of them."""

    def __init__(self, kind: str, limit: int) -> None:
        self.kind, self.limit = kind, limit
        self.seen: dict[str, int] = {}  # label -> the newest minute it was counted in
        self.warned = False

    def note(self, label: str, minute: int) -> None:
        """``label`` was counted in ``minute`` (by this publisher or another)."""
        if label != OVERFLOW and self.seen.get(label, minute - 1) < minute:
            self.seen[label] = minute

    def admit(self, label: str, minute: int) -> str:
        """``label`` when it is tracked or there is room for it, else OVERFLOW."""
        if label in self.seen or label == OVERFLOW:
            self.note(label, minute)
            return label
        if len(self.seen) < self.limit:
            self.seen[label] = minute
            return label
        if not self.warned:
            self.warned = True
            log.warning("rollups: %d distinct %s in the last 24 h, the limit (FLEXGATE_MAX_%s); requests with"
                        " further ones are counted under %s", len(self.seen), self.kind, self.kind.upper(), OVERFLOW)
        return OVERFLOW

    def expire(self, oldest_minute: int) -> None:
        """Forget labels not counted since before ``oldest_minute``."""
        if any(m < oldest_minute for m in self.seen.values()):
            self.seen = {label: m for label, m in self.seen.items() if m >= oldest_minute}

    def load(self, newest: Iterable[tuple[str, int]]) -> None:
        """Start from the labels stored in the rollups, with the newest minute of each."""
        self.seen = {}
        for label, minute in newest:
            self.note(label, minute)


class Cardinality:
    """The route and upstream limits, applied to cells as they are folded."""

    def __init__(self, max_routes: int, max_upstreams: int) -> None:
        self.routes = Limit("routes", max_routes)
        self.upstreams = Limit("upstreams", max_upstreams)
        self.loaded = False

    @property
    def filters(self) -> tuple[Callable[[str, int], str], Callable[[str, int], str]]:
        """The route and upstream filters ``rollups.fold_rows`` applies to each row."""
        return self.routes.admit, self.upstreams.admit

    def note(self, cells: Iterable[Cell]) -> None:
        """Cells folded by any publisher: their labels are tracked."""
        for cell in cells:
            self.routes.note(cell.route, cell.minute)
            self.upstreams.note(cell.upstream, cell.minute)

    def load(self, cur: psycopg2.extensions.cursor, first_minute: int) -> None:
        """Start from the labels the rollups hold from ``first_minute`` on."""
        self.routes.load(newest_labels(cur, "route", first_minute))
        self.upstreams.load(newest_labels(cur, "upstream", first_minute))
        self.loaded = True

    def expire(self, oldest_minute: int) -> None:
        """Forget labels that left the 24 h window."""
        self.routes.expire(oldest_minute)
        self.upstreams.expire(oldest_minute)
