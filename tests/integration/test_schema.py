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
    assert [line.split()[0] for line in applied] == ["1", "2", "3", "4", "5"]
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
        assert sorted(r[0] for r in cur.fetchall()) == [1, 2, 3, 4, 5]


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
