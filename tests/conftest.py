"""Session fixtures: real nats-server and PostgreSQL on free ports, with temporary data, stopped by PID."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest

from flexgate_stream.devstack.servers import NatsServer, PostgresServer


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory) -> Iterator[NatsServer]:
    """A nats-server with JetStream for the whole session."""
    base = tmp_path_factory.mktemp("nats")
    server = NatsServer(base / "store", log_file=base / "nats.log").start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory) -> Iterator[PostgresServer]:
    """A PostgreSQL server for the whole session (run as an unprivileged user when we are root)."""
    # Not under pytest's 0700 tmp folder: as root the server runs as an unprivileged user who must reach it.
    base = Path(tempfile.mkdtemp(prefix="flexgate-test-pg-"))
    base.chmod(0o755)
    server = PostgresServer(base / "data", log_file=base / "postgres.log").start()
    yield server
    server.stop()
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def database_url(postgres_server) -> Iterator[str]:
    """A new, empty database for one test, dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = psycopg2.connect(postgres_server.admin_url())
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    yield postgres_server.admin_url(name)
    with admin.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.close()


@pytest.fixture
def db(database_url) -> Iterator[psycopg2.extensions.connection]:
    """A connection to the test's own database."""
    conn = psycopg2.connect(database_url)
    yield conn
    conn.close()
