"""Session fixtures: real nats-server and PostgreSQL on free ports, with temporary data, stopped by PID.

``make test`` runs the suite on several pytest-xdist workers (``--dist loadgroup``): each worker has its own
session servers, and ``pytest_collection_modifyitems`` below decides which tests must share a worker and which
start first.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg2
import pytest

from flexgate_stream.devstack.servers import NatsServer, PostgresServer
from tests.servers import temporary_postgres


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Order the run (slowest first, browser tests last) and keep on one worker what must share one."""
    items.sort(key=_run_order)
    for item in items:
        group = _worker_group(item)
        if group is not None:
            item.add_marker(pytest.mark.xdist_group(group))


def _run_order(item: pytest.Item) -> tuple[bool, float]:
    """Tests marked ``slow`` first, the slowest first, so that a parallel run does not end waiting on one;
    the tests in Chromium last.

    Playwright's sync API marks its event loop as running on the main thread for as long as the browser
    lives, so any ``asyncio.run`` on that thread (or that worker) fails until the run's Chromium closes.
    """
    slow = item.get_closest_marker("slow")
    return "chromium" in getattr(item, "fixturenames", ()), -(slow.args[0] if slow else 0.0)


def _worker_group(item: pytest.Item) -> str | None:
    """The tests in Chromium share one worker (one browser per run); so do the tests of a module that share
    a module-scoped fixture (its server is started once)."""
    if "chromium" in getattr(item, "fixturenames", ()):
        return "chromium"
    info = getattr(item, "_fixtureinfo", None)
    fixtures = info.name2fixturedefs.values() if info is not None else ()
    if any(defs and defs[-1].scope == "module" for defs in fixtures):
        return item.nodeid.split("::")[0]
    return None


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
