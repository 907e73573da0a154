"""Request rows generated inside PostgreSQL (generate_series), shaped like the demo traffic or heavy-tailed.

Loading 10 M rows this way, into a table without indexes and building the indexes afterwards,
takes minutes instead of the quarter of an hour COPY into an indexed table took.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from flexgate_stream.devstack.traffic import ROUTES
from flexgate_stream.requestlog import schema

TABLE, INDEXES = schema.REQUESTS_TABLE.split(";", 1)


def _route_case() -> str:
    """SQL: a route number 1..len(ROUTES) drawn with the demo weights from uniform ``w``."""
    total = sum(r.weight for r in ROUTES)
    parts, acc = [], 0.0
    for i, route in enumerate(ROUTES[:-1], start=1):
        acc += route.weight / total
        parts.append(f"WHEN w < {acc!r} THEN {i}")
    return f"CASE {' '.join(parts)} ELSE {len(ROUTES)} END"


def _array(values, kind: str) -> str:
    if kind == "text":
        return "ARRAY[" + ", ".join("'" + str(v).replace("'", "''") + "'" for v in values) + "]::text[]"
    return "ARRAY[" + ", ".join(repr(float(v)) for v in values) + "]::float8[]"


def rows_sql(kind: str = "demo", paths: int = 0) -> str:
    """INSERT ... SELECT of %(n)s rows timestamped in [%(end)s - %(span)s s, %(end)s); ``kind`` demo or heavy.

    ``paths`` > 0: every path is one of that many slug paths (``/shop/items/p-<hex>/reviews``), which route
    folding leaves distinct, as a gateway whose URLs carry slugs rather than numeric ids."""
    z = "sqrt(-2 * ln(1 - random())) * cos(2 * pi() * random())"
    if kind == "heavy":  # Pareto, alpha 1.1: most requests fast, a long tail to minutes
        latency = "least(99999999.99, 5 / power(1 - random(), 1 / 1.1))"
    else:
        latency = f"(m.med)[k] * exp((m.sig)[k] * {z})"
    path = ("replace(replace((m.tmpl)[k], '{id}', (random() * 1e6)::int::text), '{uuid}',"
            " CASE WHEN (m.tmpl)[k] LIKE '%%{uuid}%%' THEN gen_random_uuid()::text ELSE '' END)")
    if paths:
        path = f"'/shop/items/p-' || lpad(to_hex(floor(random() * {int(paths)})::int), 9, '0') || '/reviews'"
    return (
        "INSERT INTO requests (\"timestamp\", method, path, status_code, response_time_ms, upstream, created_at)"
        f" SELECT t, (m.meth)[k], {path},"
        " CASE WHEN v < (m.se)[k] THEN 502 + (random() * 2)::int WHEN v < (m.se)[k] + (m.ce)[k] THEN 404"
        " WHEN v < 0.1 THEN 201 ELSE 200 END,"
        f" round(({latency})::numeric, 2), (m.up)[k], t"
        f" FROM (SELECT %(end)s::timestamptz - random() * %(span)s * interval '1 second' AS t,"
        f" {_route_case()} AS k, random() AS v FROM (SELECT random() AS w FROM generate_series(1, %(n)s)) g"
        " ORDER BY t) r,"
        f" (SELECT {_array([x.method for x in ROUTES], 'text')} AS meth,"
        f" {_array([x.template for x in ROUTES], 'text')} AS tmpl, {_array([x.upstream for x in ROUTES], 'text')}"
        f" AS up, {_array([x.median_ms for x in ROUTES], 'f')} AS med, {_array([x.sigma for x in ROUTES], 'f')}"
        f" AS sig, {_array([x.client_error for x in ROUTES], 'f')} AS ce,"
        f" {_array([x.server_error for x in ROUTES], 'f')} AS se) m"
    )


def seed(conn, rows: int, end: datetime, kind: str = "demo", chunk: int = 1_000_000, paths: int = 0) -> None:
    """Create ``requests`` without indexes, load ``rows`` over the 24 h before ``end``, then index and analyse."""
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(TABLE)
        chunks = max(1, -(-rows // chunk))
        span = 86400 / chunks
        for i in range(chunks):  # oldest slice first, each in time order: ids grow with time, as in a real log
            n = rows // chunks + (1 if i < rows % chunks else 0)
            cur.execute(rows_sql(kind, paths), {"n": n, "end": end - timedelta(seconds=span * (chunks - 1 - i)),
                                         "span": span})
        cur.execute(INDEXES)
        cur.execute("VACUUM ANALYZE requests")
    schema.upgrade(conn)
    conn.autocommit = False


def arrive(conn, rows: int, end: datetime, span: float, kind: str = "demo", paths: int = 0) -> None:
    """New traffic: ``rows`` rows timestamped in the ``span`` seconds before ``end``."""
    with conn, conn.cursor() as cur:
        cur.execute(rows_sql(kind, paths), {"n": rows, "end": end, "span": span})
