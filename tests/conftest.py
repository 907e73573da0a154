"""Session fixtures: real nats-server and PostgreSQL on free ports, with temporary data, stopped by PID."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg2
import pytest

from flexgate_stream.devstack.servers import NatsServer, PostgresServer
from tests.servers import temporary_postgres


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
    with temporary_postgres() as server:
        yield server


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
