"""Servers the tests start themselves, beyond the session fixtures of conftest.py."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from flexgate_stream.devstack.servers import PostgresServer


@contextlib.contextmanager
def temporary_postgres(prefix: str = "flexgate-test-pg-") -> Iterator[PostgresServer]:
    """A PostgreSQL server on throw-away data, stopped and removed on leaving."""
    # Not under pytest's 0700 tmp folder: as root the server runs as an unprivileged user who must reach it.
    base = Path(tempfile.mkdtemp(prefix=prefix))
    base.chmod(0o755)
    server = PostgresServer(base / "data", log_file=base / "postgres.log").start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)
