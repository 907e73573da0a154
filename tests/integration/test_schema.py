from __future__ import annotations

import pytest

from flexgate_stream.requestlog import schema

pytestmark = pytest.mark.timeout(60)


def _columns(db):
    with db.cursor() as cur:
        cur.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_name = 'requests' ORDER BY ordinal_position"
        )
        return dict(cur.fetchall())


def test_fresh_database_gets_requests_with_timestamptz(db):
    applied = schema.upgrade(db)
    assert [line.split()[0] for line in applied] == ["1", "2", "3", "4"]
    cols = _columns(db)
    assert cols["timestamp"] == "timestamp with time zone"
    for name in ("id", "method", "path", "status_code", "response_time_ms", "upstream", "client_ip",
                 "user_agent", "request_size", "response_size", "error_message", "correlation_id", "created_at"):
        assert name in cols
    with db.cursor() as cur:
        cur.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'requests'")
        indexes = {row[0] for row in cur.fetchall()}
    assert {"idx_requests_timestamp", "idx_requests_status_code", "idx_requests_upstream",
            "idx_requests_correlation_id", "idx_requests_timestamp_status"} <= indexes


def test_upgrade_is_idempotent(db):
    schema.upgrade(db)
    assert schema.upgrade(db) == []
    with db.cursor() as cur:
        cur.execute("SELECT version FROM schema_migrations")
        assert sorted(r[0] for r in cur.fetchall()) == [1, 2, 3, 4]


def test_existing_gateway_table_is_left_alone(db):
    with db, db.cursor() as cur:
        cur.execute(
            "CREATE TABLE requests (id BIGSERIAL PRIMARY KEY, timestamp TIMESTAMP NOT NULL DEFAULT NOW(),"
            " method VARCHAR(10), path TEXT, status_code INT, response_time_ms NUMERIC(10,2))"
        )
        cur.execute("INSERT INTO requests (method, path, status_code, response_time_ms) VALUES ('GET','/x',200,1)")
    applied = schema.upgrade(db)
    assert "kept the existing requests table" in applied[0]
    assert _columns(db)["timestamp"] == "timestamp without time zone"
    with db.cursor() as cur:
        cur.execute("SELECT count(*) FROM requests")
        assert cur.fetchone()[0] == 1


def test_a_logged_version_is_merged_once_when_a_publisher_of_the_older_release_saves_the_state(db):
    schema.upgrade(db)
    cell = ("2026-01-01T00:00:00Z", "/a", "up", 3, [200], [3], 3, 6.0, [10], [3])
    with db, db.cursor() as cur:
        cur.execute("INSERT INTO rollup_state (id, version, max_id, low_id, snapshot, pending, requests_before,"
                    " backfill_below, backfill_snapshot, logged_version) VALUES (1, 7, 0, 0, '', '[]', 0, 0, '', 7)")
        cur.execute("INSERT INTO request_rollups VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)", cell)
        for version in (6, 7):  # 6 is in the rollups already, 7 only logged
            cur.execute("INSERT INTO rollup_changes VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                        (version, *cell))
    with db, db.cursor() as cur:
        # A publisher of the release before migration 4 saves its state: the logged version is merged, once.
        cur.execute("UPDATE rollup_state SET version = 8, max_id = 1 WHERE id = 1")
        cur.execute("UPDATE rollup_state SET version = 9, max_id = 2 WHERE id = 1")
        cur.execute("SELECT r.requests, s.logged_version FROM request_rollups AS r, rollup_state AS s")
        assert cur.fetchall() == [(6, None)]
