"""A new user's first steps: the repository copied into a private (0700) folder, as a clone into a home
folder or a ``mktemp -d`` folder is, then ``make run`` and a fixture-started PostgreSQL from there.

As root, PostgreSQL runs as an unprivileged user who cannot traverse that folder: the launcher must
still start, keep its data across runs, restart a server that dies, and stop on SIGINT sent to its
process group (what Ctrl-C does), even when it was started with SIGINT ignored (``make run &`` in a script).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from flexgate_stream.devstack.processes import dies_with_parent, free_port
from tests.e2e.launching import row_count
from tests.e2e.support import ROOT, SSEClient, alive, descendants
from tests.waiting import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420), pytest.mark.slow(45)]


def _ignore_sigint_and_die_with_parent() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # as a script's `make run &` inherits it
    dies_with_parent(signal.SIGTERM)()


class MakeRun:
    """``make run`` in its own process group, SIGINT ignored, output to a log file."""

    def __init__(self, checkout: Path, port: int) -> None:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("DATABASE_URL", "NATS_", "FLEXGATE_", "PROMETHEUS_", "VIRTUAL_ENV", "PYTEST"))}
        env.update(PORT=str(port), FLEXGATE_DEMO_RPS="100")
        self.port = port
        self.log = checkout.parent / f"make-run-{port}.log"
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(["make", "run"], cwd=checkout, env=env, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True,
                                         preexec_fn=_ignore_sigint_and_die_with_parent)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def banner(self, name: str) -> str:
        def printed() -> re.Match | None:
            if self.proc.poll() is not None:
                raise AssertionError(f"make run exited with {self.proc.returncode}:\n{self.output()[-3000:]}")
            return re.search(rf"^  {name}\s+(\S+)", self.output(), re.M)

        return wait_until(printed, 120, f"{name} in the banner").group(1)

    def get(self, path: str, timeout: float = 3) -> requests.Response | None:
        try:
            return requests.get(f"http://127.0.0.1:{self.port}{path}", timeout=timeout)
        except requests.RequestException:
            return None

    def interrupt_group(self) -> None:
        os.killpg(self.proc.pid, signal.SIGINT)

    def kill_group(self) -> None:
        if self.proc.poll() is None:
            for pid in descendants(self.proc.pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self.proc.kill()
            self.proc.wait(10)


def listening_addresses(port: int) -> set[str]:
    """The local addresses of sockets listening on ``port`` (IPv4), from /proc/net/tcp."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, _remote, state = line.split()[1:4]
        address, hex_port = local.split(":")
        if state == "0A" and int(hex_port, 16) == port:
            found.add(".".join(str(b) for b in reversed(bytes.fromhex(address))))
    return found


def nats_server_pid(launcher: MakeRun) -> int:
    for pid in descendants(launcher.proc.pid):
        try:
            if b"nats-server" in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]:
                return pid
        except OSError:
            continue
    raise AssertionError("no nats-server below make run")


@pytest.fixture(scope="module")
def private_checkout() -> Iterator[Path]:
    """The working tree's files (tracked and new, not ignored) in a fresh folder of mode 0700."""
    base = Path(tempfile.mkdtemp(prefix="flexgate-home-"))
    assert base.stat().st_mode & 0o777 == 0o700
    checkout = base / "flexgate-stream"
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, check=True).stdout.split(b"\0")
    for name in filter(None, (n.decode() for n in listed)):
        source = ROOT / name
        if source.is_file():
            (checkout / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, checkout / name)
    yield checkout
    shutil.rmtree(base, ignore_errors=True)


def test_make_run_from_a_private_folder_survives_a_nats_kill_and_stops_on_group_sigint(private_checkout):
    launcher = MakeRun(private_checkout, free_port())
    relocated = None
    try:
        url = launcher.banner("DATABASE_URL")
        if os.geteuid() == 0:  # the unprivileged server user cannot reach ./var: the banner says where data went
            relocated = Path(launcher.banner("postgres data"))
            assert not str(relocated).startswith(str(private_checkout.parent))
        wait_until(lambda: (r := launcher.get("/healthz")) is not None and r.status_code == 200, 60, "/healthz")
        assert listening_addresses(launcher.port) == {"127.0.0.1"}  # an open API: local only by default
        first = wait_until(lambda: row_count(url), 60, "demo rows")
        wait_until(lambda: row_count(url) > first, 30, "the requests table to grow")

        # kill -9 the embedded nats-server: the launcher starts it again, streams say connected within 10 s.
        stream = SSEClient(f"http://127.0.0.1:{launcher.port}/api/stream/metrics", read_timeout=30)
        try:
            # The hello is a data frame too: wait for the snapshot after it, so the kill lands on a live stream.
            assert stream.next().json()["type"] == "connected"
            stream.data_events(1)
            victim = nats_server_pid(launcher)
            os.kill(victim, signal.SIGKILL)
            statuses = []

            def reconnected() -> bool:
                event = stream.next()
                if event.event == "status":
                    statuses.append(json.loads(event.data)["connected"])
                return statuses[-2:] == [False, True]

            try:
                wait_until(reconnected, 10, "the stream to report NATS connected again", interval=0)
            except AssertionError as exc:
                told = [line for line in launcher.output().splitlines() if "NATS" in line or "nats-server" in line]
                raise AssertionError(f"{exc}; statuses seen {statuses}; the log said: {told[-12:]}") from None
        finally:
            stream.close()
        said = [line for line in launcher.output().splitlines() if f"(pid {victim})" in line]
        assert len(said) == 1 and "nats-server" in said[0], said
        ready = wait_until(lambda: (r := launcher.get("/readyz")) is not None and r.status_code == 200 and r, 10,
                           "/readyz after the restart")
        assert ready.json()["nats"] is True

        started = descendants(launcher.proc.pid)
        assert len(started) >= 6  # python, postgres, nats-server, supervisord, gunicorn, worker at least
        launcher.interrupt_group()  # Ctrl-C: SIGINT to the whole foreground process group
        assert launcher.proc.wait(10) == 0
        left = [pid for pid in started if alive(pid)]
        assert left == [], f"processes left running after SIGINT: {left}"

        # The data survives: a second run of the same checkout finds the first run's rows.
        again = MakeRun(private_checkout, free_port())
        try:
            assert row_count(again.banner("DATABASE_URL")) >= first
            again.interrupt_group()
            assert again.proc.wait(30) == 0
        finally:
            again.kill_group()
        assert "Traceback" not in launcher.output() + again.output()
    finally:
        launcher.kill_group()
        if relocated is not None:
            shutil.rmtree(relocated.parent, ignore_errors=True)


def test_fixture_postgres_runs_from_a_private_folder(private_checkout):
    """The test suite's own PostgreSQL fixture, run from the private checkout with its own venv."""
    venv_python = private_checkout / ".venv" / "bin" / "python"
    subprocess.run(["make", ".venv/bin/.installed"], cwd=private_checkout, check=True, capture_output=True,
                   timeout=300)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "VIRTUAL_ENV"))}
    done = subprocess.run([str(venv_python), "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "tests/integration/test_schema.py"], cwd=private_checkout, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert " passed" in done.stdout
