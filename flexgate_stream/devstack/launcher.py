"""``make run``: the whole service on one machine.

Starts PostgreSQL and nats-server (embedded binaries, data under ``FLEXGATE_DATA_DIR``, default
``./var``) unless ``DATABASE_URL`` / ``NATS_SERVERS`` name servers to use, applies the schema, then
runs web, worker and demo traffic under supervisord (``conf/supervisord.conf``). A server that dies is
started again on the same port with the same data. Ctrl-C, SIGINT, SIGTERM or SIGHUP stops everything it
started: the programs first, while the servers they use still answer, then the servers.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path
from types import FrameType

from flexgate_stream import logs
from flexgate_stream.devstack.keeper import ServerKeeper
from flexgate_stream.devstack.processes import dies_with_parent, stop_process
from flexgate_stream.devstack.servers import NatsServer, PostgresServer
from flexgate_stream.errors import FlexgateError
from flexgate_stream.requestlog import database, schema
from flexgate_stream.settings import Settings, load_or_exit

log = logging.getLogger("devstack")

ROOT = Path(__file__).resolve().parents[2]
LOCAL_BIND = "127.0.0.1"  # make run serves an open API: local only unless FLEXGATE_BIND says otherwise
PROGRAMS_STOP_SECONDS = 40  # the programs' stopwaitsecs in conf/supervisord.conf add up to 30


class DevStack:
    """The servers this run started, their keepers, and the supervisord that runs the processes."""

    def __init__(self, settings: Settings, environ: dict[str, str]) -> None:
        self.settings = settings
        self.environ = environ
        self.var = (ROOT / settings.data_dir).resolve() if not settings.data_dir.is_absolute() \
            else settings.data_dir
        self.postgres: PostgresServer | None = None
        self.nats: NatsServer | None = None
        self.keepers: list[ServerKeeper] = []
        self.supervisord: subprocess.Popen[bytes] | None = None
        self.supervisord_env: dict[str, str] = {}
        self.gave_up = threading.Event()

    def start_servers(self) -> tuple[str, str]:
        """Start what is not given by the environment; return (DATABASE_URL, NATS_SERVERS)."""
        logs = self.var / "log"
        logs.mkdir(parents=True, exist_ok=True)
        database_url = self.settings.database_url
        if not database_url:
            self.postgres = PostgresServer(self.var / "postgres", log_file=logs / "postgres.log",
                                           durable=True).start()
            self.keepers.append(ServerKeeper("postgres", self.postgres, self._give_up))
            database_url = self.postgres.url
        nats_servers = ",".join(self.settings.nats_servers)
        if not self.settings.nats_configured:
            self.nats = NatsServer(self.var / "nats", log_file=logs / "nats-server.log").start()
            self.keepers.append(ServerKeeper("nats-server", self.nats, self._give_up))
            nats_servers = self.nats.url
        for keeper in self.keepers:
            keeper.start()
        return database_url, nats_servers

    @property
    def relocated_postgres(self) -> Path | None:
        """Where PostgreSQL keeps its data when its user could not reach ``var/postgres``."""
        if self.postgres is None or self.postgres.data_dir == self.postgres.requested_dir:
            return None
        return self.postgres.data_dir

    def _give_up(self) -> None:
        self.gave_up.set()
        if self.supervisord is not None and self.supervisord.poll() is None:
            self.supervisord.terminate()

    def apply_schema(self, database_url: str) -> None:
        conn = database.connect(database_url, application_name="flexgate-stream-run")
        try:
            for line in schema.upgrade(conn):
                log.info("schema: applied %s", line)
        finally:
            conn.close()

    def run_processes(self, database_url: str, nats_servers: str) -> int:
        """Run supervisord in the foreground until it exits; return its status (1 when a server gave up)."""
        (self.var / "run").mkdir(parents=True, exist_ok=True)
        env = dict(self.environ)
        env.update(
            DATABASE_URL=database_url,
            NATS_SERVERS=nats_servers,
            PORT=str(self.settings.port),
            FLEXGATE_BIND=self.bind_host,
            FLEXGATE_VAR=str(self.var),
            FLEXGATE_DEMO=str(self._demo()).lower(),
            FLEXGATE_DEMO_RPS=f"{self.settings.demo_rps:g}",
            PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        )
        supervisord = shutil.which("supervisord", path=env["PATH"])
        if supervisord is None:
            raise FlexgateError("supervisord is not installed: pip install -r requirements.txt.")
        self.supervisord_env = env
        self.supervisord = subprocess.Popen([supervisord, "-n", "-c", str(ROOT / "conf" / "supervisord.conf")],
                                            cwd=ROOT, env=env, start_new_session=True,
                                            preexec_fn=dies_with_parent(signal.SIGTERM))
        status = self.supervisord.wait()
        return 1 if self.gave_up.is_set() else status

    @property
    def bind_host(self) -> str:
        return self.settings.bind_host or LOCAL_BIND

    def _demo(self) -> bool:
        """Demo traffic: as FLEXGATE_DEMO says, else only into the database this run started."""
        return self.settings.demo if self.settings.demo is not None else not self.settings.database_url

    def stop(self) -> None:
        """Stop supervisord (and through it every program), then the keepers, then the servers, by PID.

        The web server and the publisher end while NATS and PostgreSQL still answer, so an ordinary stop
        logs no warning.
        """
        if self.supervisord is not None:
            self._stop_programs(self.supervisord)
        for keeper in self.keepers:
            # A server the keeper started again gets its stop signal as the keeper's thread ends: the kernel's
            # parent-death signal follows the thread that forked it. The server's stop() below waits for it.
            keeper.stop()
        if self.nats is not None:
            self.nats.stop()
        if self.postgres is not None:
            self.postgres.stop()

    def _stop_programs(self, supervisord: subprocess.Popen[bytes]) -> None:
        """Ask supervisord to shut down through its control socket, as a signal would make it log a warning."""
        if supervisord.poll() is not None:
            return
        ctl = shutil.which("supervisorctl", path=self.supervisord_env.get("PATH"))
        try:
            asked = ctl is not None and subprocess.run(
                [ctl, "-c", str(ROOT / "conf" / "supervisord.conf"), "shutdown"], cwd=ROOT, env=self.supervisord_env,
                capture_output=True, timeout=10).returncode == 0
        except subprocess.TimeoutExpired:
            asked = False
        if asked:
            try:
                supervisord.wait(PROGRAMS_STOP_SECONDS)
                return
            except subprocess.TimeoutExpired:
                pass
        stop_process(supervisord, signal.SIGTERM, timeout=PROGRAMS_STOP_SECONDS)


def _stop_on_signals() -> None:
    """SIGINT (Ctrl-C, or ``kill -INT`` where a script started us with it ignored), SIGTERM and SIGHUP stop us."""

    def handler(signum: int, _frame: FrameType | None) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)  # the stop runs to its end; the servers die with us anyway
        raise KeyboardInterrupt

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, handler)


def banner(stack: DevStack, database_url: str, nats_servers: str) -> str:
    """What ``make run`` prints once everything is up."""
    host = "127.0.0.1" if stack.bind_host in ("0.0.0.0", "::") else stack.bind_host
    lines = [
        f"  dashboard     http://{host}:{stack.settings.port}/   (listening on {stack.bind_host})",
        f"  DATABASE_URL  {database_url}",
        f"  NATS_SERVERS  {nats_servers}",
        f"  logs          {stack.var / 'log'}",
    ]
    if stack.relocated_postgres is not None:
        lines.append(f"  postgres data {stack.relocated_postgres}   (its user cannot reach {stack.var})")
    lines.append(f"  Ctrl-C, or kill -INT {os.getpid()}, stops everything.")
    return "\n" + "\n".join(lines) + "\n"


def main() -> int:
    """Entry point of ``make run``."""
    settings = load_or_exit()
    logs.configure(secrets=settings.secrets)
    _stop_on_signals()
    stack = DevStack(settings, dict(os.environ))
    status = 0
    try:
        database_url, nats_servers = stack.start_servers()
        stack.apply_schema(database_url)
        # A DATABASE_URL given with a password is shown without it, as in every log line.
        print(logs.redact(banner(stack, database_url, nats_servers)), flush=True)
        status = stack.run_processes(database_url, nats_servers)
    except KeyboardInterrupt:
        print("\nstopping...", file=sys.stderr, flush=True)
    except FlexgateError as exc:
        print(f"flexgate-stream: {exc}", file=sys.stderr)
        status = 2
    except OSError as exc:
        print(f"flexgate-stream: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": ") + ".", file=sys.stderr)
        status = 2
    finally:
        stack.stop()
    return status


if __name__ == "__main__":
    sys.exit(main())
