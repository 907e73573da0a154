"""Processes the dev stack and the tests start: a free port, waiting for readiness, stopping by PID, and the
kernel's promise that a server dies with the process that started it."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
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


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


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
