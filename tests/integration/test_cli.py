"""The Flask CLI as a user runs it: real processes against a real PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FLASK = [sys.executable, "-m", "flask", "--app", "flexgate_stream"]

pytestmark = pytest.mark.timeout(90)


def run(args, env_extra=None, timeout=60):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "NATS_", "FLEXGATE_"))}
    env.update(env_extra or {})
    return subprocess.run(FLASK + args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def count(db, sql="SELECT count(*) FROM requests"):
    with db.cursor() as cur:
        cur.execute(sql)
        return cur.fetchone()[0]


def test_db_upgrade_twice(database_url):
    first = run(["db", "upgrade"], {"DATABASE_URL": database_url})
    assert first.returncode == 0, first.stderr
    assert "applied 1 requests table" in first.stdout
    second = run(["db", "upgrade"], {"DATABASE_URL": database_url})
    assert second.returncode == 0
    assert "applied" not in second.stdout


@pytest.mark.parametrize(
    ("env", "variable"),
    [({"DATABASE_URL": "nonsense"}, "DATABASE_URL"), ({}, "DATABASE_URL"), ({"PORT": "x"}, "PORT")],
)
def test_bad_setting_is_one_sentence_exit_2(env, variable):
    done = run(["db", "upgrade"], env)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert variable in lines[0]
    assert "Traceback" not in done.stderr


def test_unreachable_database_is_one_sentence():
    done = run(["db", "upgrade"], {"DATABASE_URL": "postgresql://x@127.0.0.1:1/x"})
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1
    assert "DATABASE_URL" in done.stderr


@pytest.mark.parametrize("args", [["demo", "traffic", "--rps", "0"], ["demo", "traffic", "--rps", "lots"],
                                  ["demo", "seed", "--rows", "-5"], ["demo", "seed", "--rows", "10", "--hours", "0"]])
def test_bad_demo_arguments_are_one_sentence(database_url, args):
    done = run(args, {"DATABASE_URL": database_url})
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "Invalid value" in done.stderr


def test_demo_seed_fills_history(database_url, db):
    assert run(["db", "upgrade"], {"DATABASE_URL": database_url}).returncode == 0
    done = run(["demo", "seed", "--rows", "20000", "--hours", "2", "--seed", "7"], {"DATABASE_URL": database_url})
    assert done.returncode == 0, done.stderr
    assert count(db) == 20000
    assert count(db, "SELECT count(*) FROM requests WHERE timestamp < now() - interval '2 hours 1 minute'") == 0
    assert count(db, "SELECT count(*) FROM requests WHERE timestamp < now() - interval '1 hour'") > 5000
    # Realistic: many routes with parameters, several upstreams, mostly 2xx, some 4xx and 5xx.
    assert count(db, "SELECT count(DISTINCT upstream) FROM requests") >= 5
    assert count(db, "SELECT count(DISTINCT path) FROM requests") > 1000
    ok = count(db, "SELECT count(*) FROM requests WHERE status_code BETWEEN 200 AND 299")
    client = count(db, "SELECT count(*) FROM requests WHERE status_code BETWEEN 400 AND 499")
    server = count(db, "SELECT count(*) FROM requests WHERE status_code >= 500")
    assert ok > 0.85 * 20000
    assert client > 0 and server > 0
    assert count(db, "SELECT count(*) FROM requests WHERE response_time_ms <= 0") == 0


def test_demo_traffic_writes_rows_continuously(database_url, db):
    assert run(["db", "upgrade"], {"DATABASE_URL": database_url}).returncode == 0
    done = run(["demo", "traffic", "--rps", "200", "--duration", "3", "--seed", "1"], {"DATABASE_URL": database_url})
    assert done.returncode == 0, done.stderr
    rows = count(db)
    assert 300 <= rows <= 900  # 3 one-second batches of Poisson(200)
    # As a gateway stamps them: a request's time is at or before the insert that logs it.
    assert count(db, "SELECT count(*) FROM requests WHERE timestamp > created_at") == 0


def test_demo_writes_gateway_table_in_its_zone(database_url, db):
    with db, db.cursor() as cur:
        cur.execute("CREATE TABLE requests (id BIGSERIAL PRIMARY KEY, timestamp TIMESTAMP NOT NULL DEFAULT NOW(),"
                    " method VARCHAR(10), path TEXT, status_code INT, response_time_ms NUMERIC(10,2),"
                    " upstream VARCHAR(255), client_ip INET, user_agent TEXT, request_size INT, response_size INT,"
                    " error_message TEXT, correlation_id VARCHAR(255), created_at TIMESTAMP DEFAULT NOW())")
    env = {"DATABASE_URL": database_url, "FLEXGATE_REQUESTS_TIMEZONE": "Asia/Kolkata"}
    assert run(["demo", "seed", "--rows", "500", "--hours", "0.5"], env).returncode == 0
    # Read back in the table's zone: every row lies in the last half hour of real time.
    late = count(db, "SELECT count(*) FROM requests WHERE (timestamp AT TIME ZONE 'Asia/Kolkata')"
                     " NOT BETWEEN now() - interval '31 minutes' AND now() + interval '1 second'")
    assert late == 0
