"""Schema migrations, applied in order and recorded in ``schema_migrations``.

Later features add their own migrations to ``MIGRATIONS``; each runs once, in its own transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import psycopg2.extensions

log = logging.getLogger(__name__)

REQUESTS_TABLE = """
CREATE TABLE requests (
    id BIGSERIAL PRIMARY KEY,
    "timestamp" TIMESTAMPTZ NOT NULL DEFAULT now(),
    method VARCHAR(10) NOT NULL,
    path TEXT NOT NULL,
    status_code INTEGER,
    response_time_ms NUMERIC(10, 2),
    upstream VARCHAR(255),
    client_ip INET,
    user_agent TEXT,
    request_size INTEGER,
    response_size INTEGER,
    error_message TEXT,
    correlation_id VARCHAR(255),
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX idx_requests_timestamp ON requests ("timestamp" DESC);
CREATE INDEX idx_requests_status_code ON requests (status_code);
CREATE INDEX idx_requests_upstream ON requests (upstream);
CREATE INDEX idx_requests_correlation_id ON requests (correlation_id);
CREATE INDEX idx_requests_timestamp_status ON requests ("timestamp" DESC, status_code);
"""


def _create_requests(cur: psycopg2.extensions.cursor) -> str:
    cur.execute("SELECT to_regclass('requests')")
    (found,) = cur.fetchone() or (None,)
    if found is not None:
        return "kept the existing requests table"
    cur.execute(REQUESTS_TABLE)
    return "created requests"


# One rollup cell: minute x route x upstream, exact status counts, latency count, sum and sketch bins.
CELL_COLUMNS = """
    bucket_start TIMESTAMPTZ NOT NULL,
    route TEXT NOT NULL,
    upstream TEXT NOT NULL,
    requests BIGINT NOT NULL,
    status_codes INTEGER[] NOT NULL,
    status_counts BIGINT[] NOT NULL,
    latency_count BIGINT NOT NULL,
    latency_sum DOUBLE PRECISION NOT NULL,
    latency_bins INTEGER[] NOT NULL,
    latency_counts BIGINT[] NOT NULL
"""

ROLLUP_TABLES = "CREATE TABLE request_rollups (" + CELL_COLUMNS + """,
    PRIMARY KEY (bucket_start, route, upstream)
);
CREATE TABLE rollup_changes (
    version BIGINT NOT NULL,""" + CELL_COLUMNS + """);
CREATE INDEX rollup_changes_version ON rollup_changes (version);
CREATE TABLE rollup_state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    version BIGINT NOT NULL,
    max_id BIGINT NOT NULL,
    low_id BIGINT NOT NULL,
    snapshot TEXT NOT NULL,  -- the last read's visibility: pg_current_snapshot() as text
    pending JSONB NOT NULL,
    requests_before BIGINT NOT NULL,
    backfill_below BIGINT NOT NULL,
    backfill_snapshot TEXT NOT NULL,  -- the backfill's visibility, taken at first start
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE FUNCTION flexgate_merge_counts(k1 INTEGER[], c1 BIGINT[], k2 INTEGER[], c2 BIGINT[],
                                      OUT keys INTEGER[], OUT counts BIGINT[])
LANGUAGE sql IMMUTABLE AS $$
    SELECT coalesce(array_agg(k ORDER BY k), '{}'), coalesce(array_agg(c ORDER BY k), '{}')
    FROM (SELECT k, sum(c)::bigint AS c FROM unnest(k1 || k2, c1 || c2) AS t(k, c) GROUP BY k) AS s
    WHERE c <> 0
$$;
"""


def _create_rollups(cur: psycopg2.extensions.cursor) -> str:
    cur.execute(ROLLUP_TABLES)
    return "created request_rollups, rollup_changes and rollup_state"


# Slot cells: the same figures per tick-long slot of the recent minutes (flexgate_stream/tick/slots.py).
SLOTS_TABLE = "CREATE TABLE request_rollup_slots (" + CELL_COLUMNS.replace("bucket_start", "slot_start", 1) + """,
    PRIMARY KEY (slot_start, route, upstream)
);
"""


def _create_slots(cur: psycopg2.extensions.cursor) -> str:
    cur.execute(SLOTS_TABLE)
    return "created request_rollup_slots"


# The one version whose cells a tick only logged (NULL: none): merged by the next step of a publisher that knows
# the column, and by the database itself when a publisher that does not (an older release, during a deploy or a
# rollback) updates the state; that release neither merges nor clears it. NULL in an existing row: every logged
# change is already in request_rollups.
LOGGED_VERSION = """
ALTER TABLE rollup_state ADD COLUMN logged_version BIGINT;
CREATE FUNCTION flexgate_merge_change(v BIGINT) RETURNS void LANGUAGE sql AS $$
    INSERT INTO request_rollups AS r
    SELECT bucket_start, route, upstream, requests, status_codes, status_counts, latency_count, latency_sum,
           latency_bins, latency_counts
    FROM rollup_changes WHERE version = v
    ON CONFLICT (bucket_start, route, upstream) DO UPDATE SET requests = r.requests + EXCLUDED.requests,
        latency_count = r.latency_count + EXCLUDED.latency_count,
        latency_sum = r.latency_sum + EXCLUDED.latency_sum,
        (status_codes, status_counts) = (SELECT keys, counts FROM flexgate_merge_counts(
            r.status_codes, r.status_counts, EXCLUDED.status_codes, EXCLUDED.status_counts)),
        (latency_bins, latency_counts) = (SELECT keys, counts FROM flexgate_merge_counts(
            r.latency_bins, r.latency_counts, EXCLUDED.latency_bins, EXCLUDED.latency_counts))
$$;
CREATE FUNCTION flexgate_merge_logged() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM flexgate_merge_change(OLD.logged_version);
    NEW.logged_version := NULL;
    RETURN NEW;
END
$$;
-- An update that leaves a pending version as it was comes from code that does not know the column: the new code
-- either clears it (having merged it) or sets a newer one.
CREATE TRIGGER rollup_state_merge_logged BEFORE UPDATE ON rollup_state FOR EACH ROW
    WHEN (OLD.logged_version IS NOT NULL AND NEW.logged_version = OLD.logged_version)
    EXECUTE FUNCTION flexgate_merge_logged();
"""


def _logged_version(cur: psycopg2.extensions.cursor) -> str:
    cur.execute(LOGGED_VERSION)
    return ("added rollup_state.logged_version (the one version a tick only logged, merged by the next step; an"
            " update by an older release merges it)")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    apply: Callable[[psycopg2.extensions.cursor], str]


MIGRATIONS: list[Migration] = [
    Migration(1, "requests table", _create_requests),
    Migration(2, "request rollups", _create_rollups),
    Migration(3, "rollup slots", _create_slots),
    Migration(4, "a tick's cells merged by the next step", _logged_version),
]


def upgrade(conn: psycopg2.extensions.connection) -> list[str]:
    """Apply every migration not yet recorded; return one line per migration applied."""
    done: list[str] = []
    with conn, conn.cursor() as cur:
        # One upgrade at a time, even when several releases start together.
        cur.execute("SELECT pg_advisory_xact_lock(7251001)")
        cur.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version INTEGER PRIMARY KEY, name TEXT NOT NULL, note TEXT,"
            " applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        )
        cur.execute("SELECT version FROM schema_migrations")
        applied = {row[0] for row in cur.fetchall()}
        for migration in MIGRATIONS:
            if migration.version in applied:
                continue
            note = migration.apply(cur)
            cur.execute(
                "INSERT INTO schema_migrations (version, name, note) VALUES (%s, %s, %s)",
                (migration.version, migration.name, note),
            )
            done.append(f"{migration.version} {migration.name}: {note}")
    return done
