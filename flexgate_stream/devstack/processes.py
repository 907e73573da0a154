"""Processes the dev stack and the tests start: a free port, waiting for readiness, stopping by PID, and the
kernel's promise that a server dies with the process that started it."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from flexgate_stream.errors import LocalStackError

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


# The lowest port free_port picks from: ports below the kernel's ephemeral range and above the usual services'.
LOWEST_PORT = 10000
PORT_TRIES = 64


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now, below the kernel's ephemeral range.

    A port the kernel hands out for port 0 comes from the range it also gives outgoing connections: a server
    restarted on its port (a node of a cluster, NATS under the keeper) could find it taken by any client's
    connection made meanwhile. Ports below that range are never taken that way.
    """
    top = _ephemeral_low()
    for _ in range(PORT_TRIES if top - LOWEST_PORT > PORT_TRIES else 0):
        port = random.randrange(LOWEST_PORT, top)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:  # no room below the range: the kernel's pick
        sock.bind(("127.0.0.1", 0))
        found: int = sock.getsockname()[1]
        return found


def _ephemeral_low() -> int:
    """The first port of the kernel's ephemeral range (32768 when it cannot be read)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def wait_for(predicate: Callable[[], object], timeout: float, what: str,
             proc: subprocess.Popen[bytes] | None = None) -> None:
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


def stop_process(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
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
def output_to(log_file: Path | None) -> Iterator[int | IO[bytes]]:
    """A server's stdout: its log file (appended), or nowhere."""
    if log_file is None:
        yield subprocess.DEVNULL
        return
    with open(log_file, "ab") as out:
        yield out


def venv_bin(name: str) -> str:
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if not found:
        raise LocalStackError(f"{name} was not found: pip install -r requirements-dev.txt.")
    return found


def process_parents() -> dict[int, int]:
    """Every process's parent PID, read from /proc."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    return parents
