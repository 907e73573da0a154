"""The rollups in PostgreSQL: per-minute cells (minute x route x upstream) and the SQL that reads new rows.

A cell holds exact counts per status code, latency count and sum, and a latency sketch (bins and
counts). ``fold_rows`` folds request rows into cells: bins are computed in SQL, routes in Python.
Cells are added to ``request_rollups`` (an additive upsert, ``cell_store``) and logged in ``rollup_changes`` under a
version, so every publisher applies the same changes in the same order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg2.extensions

from flexgate_stream.tick.sketch import LatencySketch, bin_sql

MINUTE_SECONDS = 60  # the length of a rollup cell
UNKNOWN_UPSTREAM = "unknown"  # the upstream of a row that has none
# Valid latencies only: NULL, negative, NaN and absurd values count as requests but not in latency figures.
# Compared as float8: numeric comparisons cost as much as the rest of reading a row.
LATENCY = "CASE WHEN response_time_ms::float8 BETWEEN 0 AND 1e12 THEN response_time_ms::float8 END"
WRAP = 1 << 32
Admit = Callable[[str, int], str]  # a label and its minute -> the label it is counted under


@dataclass(slots=True)
class Cell:
    """The requests of one minute, route and upstream (or a change to them)."""

    minute: int  # epoch seconds // 60
    route: str
    upstream: str
    requests: int = 0
    status_codes: dict[int, int] = field(default_factory=dict)
    latency_count: int = 0
    latency_sum: float = 0.0
    sketch: LatencySketch = field(default_factory=LatencySketch)

    @property
    def key(self) -> tuple[int, str, str]:
        return self.minute, self.route, self.upstream


def merge_cell(into: Cell, change: Cell) -> None:
    """Add the requests of ``change`` into ``into`` (same minute, route and upstream)."""
    into.requests += change.requests
    for code, n in change.status_codes.items():
        into.status_codes[code] = into.status_codes.get(code, 0) + n
    into.latency_count += change.latency_count
    into.latency_sum += change.latency_sum
    into.sketch.merge(change.sketch)


CELL_COLUMNS = (f"(extract(epoch FROM bucket_start) / {MINUTE_SECONDS})::bigint, route, upstream, requests,"
                " status_codes, status_counts, latency_count, latency_sum, latency_bins, latency_counts")


def cell_from_row(row: tuple[Any, ...]) -> Cell:
    """A Cell from the columns of ``CELL_COLUMNS``."""
    minute, route, upstream, requests, codes, counts, lat_count, lat_sum, bins, bin_counts = row
    return Cell(int(minute), route, upstream, int(requests), dict(zip(codes, counts, strict=True)),
                int(lat_count), float(lat_sum), LatencySketch.from_arrays(bins, bin_counts))


class Visibility:
    """Which transactions a read saw committed (``pg_current_snapshot()``'s text), and the 32-bit bounds to test a
    row's ``xmin`` against it."""

    def __init__(self, text: str) -> None:
        self.text = text
        xmin, xmax, xip = text.split(":")
        self.xmin, self.xmax = int(xmin), int(xmax)
        self.xip = [int(x) for x in xip.split(",") if x]

    def params(self, prefix: str) -> dict[str, Any]:
        return {f"{prefix}_xmin": self.xmin % WRAP, f"{prefix}_xmax": self.xmax % WRAP,
                f"{prefix}_xip": [x % WRAP for x in self.xip]}


def visible_sql(prefix: str) -> str:
    """True when the row's inserting transaction had committed in visibility ``prefix`` (32-bit, wrap-safe)."""
    x = "xmin::text::bigint"

    def precedes(a: str, b: str) -> str:
        return f"mod(({a}) - ({b}) + {WRAP}, {WRAP}) >= {WRAP // 2}"

    return (f"({precedes(x, f'%({prefix}_xmin)s')} OR ({precedes(x, f'%({prefix}_xmax)s')}"
            f" AND NOT {x} = ANY(%({prefix}_xip)s::bigint[])))")


def rows_sql(instant: str, where: str) -> str:
    """The request rows matching ``where``, ready to fold in Python: minute, path, upstream, status, latency, bin,
    and the instant in epoch milliseconds.

    Route labels are given in Python (``labels.Labeller``): PostgreSQL's regular expressions cost ~3 us a row,
    Python's well under 1 us, and a tick's time is per row.
    """
    # date_part, not numeric arithmetic (it costs as much as the rest); OFFSET 0 keeps the subquery from being
    # flattened, so the latency is computed once per row, not once per use.
    return (f"SELECT m, path, up, status, lat, {bin_sql('lat')}, ms FROM (SELECT"
            f" floor(date_part('epoch', {instant}) / {MINUTE_SECONDS})::bigint AS m, path,"
            f" floor(date_part('epoch', {instant}) * 1000)::bigint AS ms,"
            f" coalesce(upstream, '{UNKNOWN_UPSTREAM}') AS up, coalesce(status_code, 0) AS status,"
            f" {LATENCY} AS lat"
            f" FROM requests WHERE {where} OFFSET 0) AS r")


class Slots:
    """Cells of ``slot_ms``-long slots (a tick, or a divisor of it) for rows stamped at ``first_ms`` (epoch ms)
    or later: the end of the oldest window still to be published, so in steady state only rows stamped after
    the coming tick's end make slot cells.

    A window ending inside a minute takes the minute's cells less the slots after its end, so it counts
    exactly the rows stamped inside it (``tick/slots.py`` stores and reads them)."""

    def __init__(self, slot_ms: int, first_ms: int) -> None:
        self.slot_ms, self.first = slot_ms, first_ms
        self.cells: dict[tuple[int, str, str], Cell] = {}


def fold_rows(cur: psycopg2.extensions.cursor, sql: str, params: dict[str, Any], label: Callable[[str | None], str],
              admit: tuple[Admit, Admit], slots: Slots | None = None) -> list[Cell]:
    """Run a ``rows_sql`` query and fold its rows into cells, each path under its ``label``; ``admit``: (route,
    upstream) label filters taking the label and the minute (the cardinality limits); ``slots``: also fold
    recent rows into slot cells (their ``minute`` is the slot's number)."""
    cur.execute(sql, params)
    cells: dict[tuple[int, str, str], Cell] = {}
    admit_route, admit_upstream = admit
    slot_cells: dict[tuple[int, str, str], Cell] = slots.cells if slots is not None else {}
    slot_ms, first = (slots.slot_ms, slots.first) if slots is not None else (1, 1 << 62)
    # A path's label and a label's admission do not change within one read: each is asked once per read.
    routes: dict[str | None, str] = {}
    upstreams: dict[str, str] = {}
    for minute, path, upstream, status, lat, bin_key, ms in _rows(cur):
        route = routes.get(path)
        if route is None:
            route = routes[path] = admit_route(label(path), minute)
        up = upstreams.get(upstream)
        if up is None:
            up = upstreams[upstream] = admit_upstream(upstream, minute)
        key = (minute, route, up)  # _count, written out: this loop runs once per row
        cell = cells.get(key)
        if cell is None:
            cell = cells[key] = Cell(minute, route, up)
        cell.requests += 1
        codes = cell.status_codes
        codes[status] = codes.get(status, 0) + 1
        if lat is not None:
            cell.latency_count += 1
            cell.latency_sum += lat
            bins = cell.sketch.bins
            bins[bin_key] = bins.get(bin_key, 0) + 1
        if ms >= first:
            _count(slot_cells, (ms // slot_ms, route, up), status, lat, bin_key)
    for minute, route, up in cells:  # each label counted in the newest of its minutes
        admit_route(route, minute)
        admit_upstream(up, minute)
    for cell in (*cells.values(), *slot_cells.values()):
        cell.sketch.count = cell.latency_count
    return list(cells.values())


def _rows(cur: psycopg2.extensions.cursor, size: int = 5000) -> Iterator[tuple[Any, ...]]:
    """The rows of the last query, a few thousand Python tuples at a time (a backfill chunk reads 100,000)."""
    while True:
        rows = cur.fetchmany(size)
        if not rows:
            return
        yield from rows


def _count(cells: dict[tuple[int, str, str], Cell], key: tuple[int, str, str], status: int, lat: float | None,
           bin_key: Any) -> None:
    cell = cells.get(key)
    if cell is None:
        cell = cells[key] = Cell(*key)
    cell.requests += 1
    codes = cell.status_codes
    codes[status] = codes.get(status, 0) + 1
    if lat is not None:
        cell.latency_count += 1
        cell.latency_sum += lat
        bins = cell.sketch.bins
        bins[bin_key] = bins.get(bin_key, 0) + 1


def load_cells(cur: psycopg2.extensions.cursor, first: int, last: int) -> list[Cell]:
    """The stored cells of minutes ``first`` to ``last`` (inclusive)."""
    cur.execute(f"SELECT {CELL_COLUMNS} FROM request_rollups WHERE bucket_start >= to_timestamp(%s)"
                " AND bucket_start <= to_timestamp(%s)", (first * MINUTE_SECONDS, last * MINUTE_SECONDS))
    return [cell_from_row(row) for row in cur.fetchall()]


def load_changes(cur: psycopg2.extensions.cursor, after: int, upto: int) -> list[Cell]:
    """The changes logged with versions in (``after``, ``upto``], oldest first."""
    cur.execute(f"SELECT {CELL_COLUMNS} FROM rollup_changes WHERE version > %s AND version <= %s ORDER BY version",
                (after, upto))
    return [cell_from_row(row) for row in cur.fetchall()]


def minute_totals(cur: psycopg2.extensions.cursor) -> dict[int, int]:
    """Requests per stored minute (for the all-time count)."""
    cur.execute(f"SELECT (extract(epoch FROM bucket_start) / {MINUTE_SECONDS})::bigint, sum(requests)"
                " FROM request_rollups GROUP BY 1")
    return {int(m): int(n) for m, n in cur.fetchall()}


def prune(cur: psycopg2.extensions.cursor, before_minute: int) -> int:
    """Delete cells older than ``before_minute``; the number of requests they held."""
    cur.execute("WITH d AS (DELETE FROM request_rollups WHERE bucket_start < to_timestamp(%s) RETURNING requests)"
                " SELECT coalesce(sum(requests), 0) FROM d", (before_minute * MINUTE_SECONDS,))
    return int(scalar(cur))


def prune_changes(cur: psycopg2.extensions.cursor, oldest_version: int) -> None:
    """Delete logged changes older than ``oldest_version``."""
    cur.execute("DELETE FROM rollup_changes WHERE version < %s", (oldest_version,))


def load_totals(cur: psycopg2.extensions.cursor, first: int, last: int) -> list[Cell]:
    """One cell per route and upstream summing minutes ``first`` to ``last``, merged in SQL."""
    span = {"a": first * MINUTE_SECONDS, "b": last * MINUTE_SECONDS}
    where = "bucket_start >= to_timestamp(%(a)s) AND bucket_start <= to_timestamp(%(b)s)"
    cur.execute("SELECT route, upstream, sum(requests), sum(latency_count), sum(latency_sum)"
                f" FROM request_rollups WHERE {where} GROUP BY 1, 2", span)
    cells = {(r, u): Cell(-1, r, u, int(n), {}, int(ln), float(ls)) for r, u, n, ln, ls in cur.fetchall()}
    cur.execute("SELECT route, upstream, k, sum(n) FROM request_rollups, unnest(status_codes, status_counts)"
                f" AS u(k, n) WHERE {where} GROUP BY 1, 2, 3", span)
    for r, u, code, n in cur.fetchall():
        cells[(r, u)].status_codes[int(code)] = int(n)
    cur.execute("SELECT route, upstream, k, sum(n) FROM request_rollups, unnest(latency_bins, latency_counts)"
                f" AS u(k, n) WHERE {where} GROUP BY 1, 2, 3", span)
    for r, u, key, n in cur.fetchall():
        if n:
            cells[(r, u)].sketch.add_bin(int(key), int(n))
    return list(cells.values())


def scalar(cur: psycopg2.extensions.cursor) -> Any:
    """The first column of the one row the last query returned."""
    row = cur.fetchone()
    if row is None:
        raise LookupError("the query returned no row")
    return row[0]
