"""``make run``: the whole service on one machine.

Starts PostgreSQL and nats-server (embedded binaries, data under ``FLEXGATE_DATA_DIR``, default
``./var``) unless ``DATABASE_URL`` / ``NATS_SERVERS`` name servers to use, applies the schema, then
runs web, worker and demo traffic under supervisord (``conf/supervisord.conf``). Ctrl-C or SIGTERM
stops everything it started.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from flexgate_stream import database, schema
from flexgate_stream.errors import FlexgateError
from flexgate_stream.localstack import NatsServer, PostgresServer, dies_with_parent, stop_process
from flexgate_stream.settings import Settings, load_or_exit

log = logging.getLogger("devstack")

ROOT = Path(__file__).resolve().parent.parent


class DevStack:
    """The servers this run started, and the supervisord that runs the processes."""

    def __init__(self, settings: Settings, environ: dict[str, str]) -> None:
        self.settings = settings
        self.environ = environ
        self.var = (ROOT / settings.data_dir).resolve() if not settings.data_dir.is_absolute() \
            else settings.data_dir
        self.postgres: PostgresServer | None = None
        self.nats: NatsServer | None = None
        self.supervisord: subprocess.Popen | None = None

    def start_servers(self) -> tuple[str, str]:
        """Start what is not given by the environment; return (DATABASE_URL, NATS_SERVERS)."""
        logs = self.var / "log"
        logs.mkdir(parents=True, exist_ok=True)
        self.var.chmod(0o755)
        database_url = self.settings.database_url
        if not database_url:
            self.postgres = PostgresServer(self.var / "postgres", log_file=logs / "postgres.log").start()
            database_url = self.postgres.url
        nats_servers = ",".join(self.settings.nats_servers)
        if not self.settings.nats_configured:
            self.nats = NatsServer(self.var / "nats", log_file=logs / "nats-server.log").start()
            nats_servers = self.nats.url
        return database_url, nats_servers

    def apply_schema(self, database_url: str) -> None:
        conn = database.connect(database_url, application_name="flexgate-stream-run")
        try:
            for line in schema.upgrade(conn):
                log.info("schema: applied %s", line)
        finally:
            conn.close()

    def run_processes(self, database_url: str, nats_servers: str) -> int:
        """Run supervisord in the foreground until it exits; return its status."""
        (self.var / "run").mkdir(parents=True, exist_ok=True)
        env = dict(self.environ)
        env.update(
            DATABASE_URL=database_url,
            NATS_SERVERS=nats_servers,
            PORT=str(self.settings.port),
            FLEXGATE_VAR=str(self.var),
            FLEXGATE_DEMO=str(self._demo()).lower(),
            FLEXGATE_DEMO_RPS=f"{self.settings.demo_rps:g}",
            PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        )
        supervisord = shutil.which("supervisord", path=env["PATH"])
        if supervisord is None:
            raise FlexgateError("supervisord is not installed: pip install -r requirements.txt.")
        self.supervisord = subprocess.Popen([supervisord, "-n", "-c", str(ROOT / "conf" / "supervisord.conf")],
                                            cwd=ROOT, env=env, start_new_session=True,
                                            preexec_fn=dies_with_parent(signal.SIGTERM))
        return self.supervisord.wait()

    def _demo(self) -> bool:
        """Demo traffic: as FLEXGATE_DEMO says, else only into the database this run started."""
        return self.settings.demo if self.settings.demo is not None else not self.settings.database_url

    def stop(self) -> None:
        """Stop supervisord (and through it every program), then the servers, by PID."""
        if self.supervisord is not None:
            stop_process(self.supervisord, signal.SIGTERM, timeout=30)
        if self.nats is not None:
            self.nats.stop()
        if self.postgres is not None:
            self.postgres.stop()


def _stop_on_sigterm() -> None:
    def handler(signum, _frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGHUP, handler)


def main() -> int:
    """Entry point of ``make run``."""
    settings = load_or_exit()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    _stop_on_sigterm()
    stack = DevStack(settings, dict(os.environ))
    status = 0
    try:
        database_url, nats_servers = stack.start_servers()
        stack.apply_schema(database_url)
        print(
            f"\n  dashboard     http://127.0.0.1:{settings.port}/\n"
            f"  DATABASE_URL  {database_url}\n"
            f"  NATS_SERVERS  {nats_servers}\n"
            f"  logs          {stack.var / 'log'}\n  Ctrl-C stops everything.\n",
            flush=True,
        )
        status = stack.run_processes(database_url, nats_servers)
    except KeyboardInterrupt:
        print("\nstopping...", file=sys.stderr, flush=True)
    except FlexgateError as exc:
        print(f"flexgate-stream: {exc}", file=sys.stderr)
        status = 2
    finally:
        stack.stop()
    return status


if __name__ == "__main__":
    sys.exit(main())
