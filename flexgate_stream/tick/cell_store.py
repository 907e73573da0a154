"""Cells written to PostgreSQL: the rollups and their change log, and slot cells.

A batch of cells travels as one array literal per column, unnested in SQL: psycopg2's ``execute_values`` renders
every value of every row on its own (~11 us a cell, as much as the server's insert), and a list parameter becomes
``ARRAY[...]``, an expression per element for the server to parse.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg2.extensions

from flexgate_stream.tick.rollups import MINUTE_SECONDS, Cell

# The columns of a batch of cells, as a relation with the rollups' column names (``start``: epoch seconds).
CELLS = ("SELECT to_timestamp(v.start) AS start, v.route, v.upstream, v.requests, v.codes::int[] AS status_codes,"
         " v.counts::bigint[] AS status_counts, v.lat_n AS latency_count, v.lat_sum AS latency_sum,"
         " v.bins::int[] AS latency_bins, v.bin_counts::bigint[] AS latency_counts"
         " FROM unnest(%(start)s::float8[], %(route)s::text[], %(upstream)s::text[], %(requests)s::bigint[],"
         " %(codes)s::text[], %(counts)s::text[], %(lat_n)s::bigint[], %(lat_sum)s::float8[], %(bins)s::text[],"
         " %(bin_counts)s::text[]) AS v(start, route, upstream, requests, codes, counts, lat_n, lat_sum, bins,"
         " bin_counts)")
COLUMNS = ("route, upstream, requests, status_codes, status_counts, latency_count, latency_sum, latency_bins,"
           " latency_counts")

# An upsert's conflict action that adds a cell into the stored one (rollups and slot cells alike).
ADD_INTO_EXISTING = ("DO UPDATE SET requests = r.requests + EXCLUDED.requests,"
                     " latency_count = r.latency_count + EXCLUDED.latency_count,"
                     " latency_sum = r.latency_sum + EXCLUDED.latency_sum,"
                     " (status_codes, status_counts) = (SELECT keys, counts FROM flexgate_merge_counts("
                     "r.status_codes, r.status_counts, EXCLUDED.status_codes, EXCLUDED.status_counts)),"
                     " (latency_bins, latency_counts) = (SELECT keys, counts FROM flexgate_merge_counts("
                     "r.latency_bins, r.latency_counts, EXCLUDED.latency_bins, EXCLUDED.latency_counts))")


def ints(values: Any) -> str:
    """Integers as PostgreSQL's array literal (``{1,2,3}``)."""
    return "{" + ",".join(map(str, values)) + "}"


def texts(values: Any) -> str:
    """Strings as PostgreSQL's array literal, each quoted (so no value reads as NULL or splits)."""
    return "{" + ",".join('"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values) + "}"


def nested(literals: list[str]) -> str:
    """Array literals of integers as the elements of one text array (cast back to arrays in SQL)."""
    return "{" + ",".join('"' + text + '"' for text in literals) + "}"


def cell_params(cells: list[Cell], start: Callable[[Cell], float]) -> dict[str, str]:
    """The parameters of ``CELLS`` for ``cells``; ``start``: a cell's start in epoch seconds."""
    codes: list[str] = []
    counts: list[str] = []
    bins: list[str] = []
    bin_counts: list[str] = []
    for cell in cells:
        for keyed, out, outn in ((cell.status_codes, codes, counts), (cell.sketch.bins, bins, bin_counts)):
            if len(keyed) == 1:  # most cells of a busy tick hold one row
                ((key, n),) = keyed.items()
                out.append(f"{{{key}}}")
                outn.append(f"{{{n}}}")
            else:
                keys = sorted(keyed)
                out.append(ints(keys))
                outn.append(ints(map(keyed.__getitem__, keys)))
    return {"start": "{" + ",".join(repr(float(start(c))) for c in cells) + "}",
            "route": texts(c.route for c in cells), "upstream": texts(c.upstream for c in cells),
            "requests": ints(c.requests for c in cells), "codes": nested(codes), "counts": nested(counts),
            "lat_n": ints(c.latency_count for c in cells),
            "lat_sum": "{" + ",".join(repr(float(c.latency_sum)) for c in cells) + "}",
            "bins": nested(bins), "bin_counts": nested(bin_counts)}


def store_cells(cur: psycopg2.extensions.cursor, cells: list[Cell], version: int) -> None:
    """Log ``cells`` as the changes of ``version`` and add them into the rollups."""
    if not cells:
        return
    cur.execute(f"WITH d AS (INSERT INTO rollup_changes SELECT %(version)s, v.start, {COLUMNS} FROM ({CELLS}) AS v"
                f" RETURNING *) INSERT INTO request_rollups AS r SELECT bucket_start, {COLUMNS} FROM d"
                " ON CONFLICT (bucket_start, route, upstream) " + ADD_INTO_EXISTING,
                cell_params(cells, lambda c: c.minute * MINUTE_SECONDS) | {"version": version})


def merge_logged(cur: psycopg2.extensions.cursor, version: int) -> None:
    """Add the changes logged with ``version`` into the rollups (a version the release before only logged; the
    database's own function, which its trigger also runs: requestlog/schema.py, migration 4)."""
    cur.execute("SELECT flexgate_merge_change(%s)", (version,))


def store_slots(cur: psycopg2.extensions.cursor, cells: list[Cell], length_ms: int) -> None:
    """Add slot cells (``minute`` holding the slot number) into the slots table."""
    if not cells:
        return
    cur.execute(f"INSERT INTO request_rollup_slots AS r SELECT v.start, {COLUMNS} FROM ({CELLS}) AS v"
                " ON CONFLICT (slot_start, route, upstream) " + ADD_INTO_EXISTING,
                cell_params(cells, lambda c: c.minute * length_ms / 1000.0))
