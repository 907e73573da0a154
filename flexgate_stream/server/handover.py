"""A reload without a gap: a worker being replaced keeps serving until the workers replacing it are ready.

On SIGHUP gunicorn starts new workers and at once sends SIGTERM to the old ones. An old worker that stopped
accepting then would leave every request (the clients its streams' last frames send back, monitoring's
``/api/stream/stats`` and ``/healthz``) waiting in the accept queue until a new worker has loaded the app:
one to two seconds, more under a reconnect storm. So each worker marks itself ready once it serves
(``mark_ready``), and a worker told to stop while younger siblings exist (a reload, or a replacement after a
crash) waits, up to ``HANDOVER_SECONDS``, for them to be ready before it stops accepting and ends its
streams (``starting`` and ``ready``). A full stop finds its siblings ready already and ends at once.

The marks are empty files named by PID in one folder per gunicorn master, the same across reloads.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import NamedTuple

HANDOVER_SECONDS = 5.0  # at most this long a replaced worker waits for its replacements (graceful_timeout is 10)


def marks(master: int) -> Path:
    """The folder where the workers of gunicorn master ``master`` mark themselves ready."""
    return Path(tempfile.gettempdir()) / f"flexgate-web-{master}"


def mark_ready(master: int, pid: int) -> None:
    """Worker ``pid`` serves requests now."""
    folder = marks(master)
    folder.mkdir(mode=0o700, exist_ok=True)
    (folder / str(pid)).touch()


def unmark(master: int, pid: int) -> None:
    """Worker ``pid`` is gone (or going)."""
    (marks(master) / str(pid)).unlink(missing_ok=True)


def forget(master: int) -> None:
    """The master is stopping: remove its folder."""
    shutil.rmtree(marks(master), ignore_errors=True)


def ready(master: int, pids: list[int]) -> bool:
    """True when every one of ``pids`` has marked itself ready (or exited: then it cannot be waited for)."""
    folder = marks(master)
    return all((folder / str(pid)).exists() or not Path(f"/proc/{pid}").exists() for pid in pids)


def starting(master: int, pid: int) -> list[int]:
    """The other workers of ``master`` that started after worker ``pid`` and are not ready yet: on SIGTERM,
    the workers replacing it."""
    return [other for other in younger(master, pid) if not ready(master, [other])]


def younger(master: int, pid: int) -> list[int]:
    """The other workers of ``master`` that started after worker ``pid``."""
    own = proc_stat(pid)
    if own is None:
        return []
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == pid:
            continue
        stat = proc_stat(int(entry.name))
        if stat is not None and stat.ppid == master and stat.start_ticks > own.start_ticks:
            found.append(int(entry.name))
    return sorted(found)


class ProcStat(NamedTuple):
    """What the hand-over reads of a process in /proc/<pid>/stat (proc(5))."""

    ppid: int  # field 4
    start_ticks: int  # field 22, starttime: clock ticks after boot


def proc_stat(pid: int) -> ProcStat | None:
    """The parent and start time of process ``pid``, or None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return parse_stat(text)


def parse_stat(text: str) -> ProcStat | None:
    """The fields of one /proc/<pid>/stat line; the command name (field 2) may hold spaces and parentheses."""
    # After the command name's closing parenthesis: state (field 3), ppid (4), ... starttime (22).
    fields = text.rpartition(")")[2].split()
    if len(fields) < 20:
        return None
    return ProcStat(ppid=int(fields[4 - 3]), start_ticks=int(fields[22 - 3]))
