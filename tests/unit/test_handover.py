"""server.handover: which workers a stopping worker waits for, read from /proc and the ready marks."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from flexgate_stream.server import handover

pytestmark = pytest.mark.timeout(20)


def test_a_worker_waits_only_for_younger_siblings_that_are_not_ready():
    master = os.getpid()  # this test plays the gunicorn master; its children play the workers
    older = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    time.sleep(0.05)  # /proc start times count in clock ticks: the second child must start in a later one
    younger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert handover.younger(master, older.pid) == [younger.pid]
        assert handover.starting(master, older.pid) == [younger.pid]
        assert handover.starting(master, younger.pid) == []
        handover.mark_ready(master, younger.pid)
        assert handover.ready(master, [younger.pid])
        assert handover.starting(master, older.pid) == []  # a full stop: nobody to wait for
        handover.unmark(master, younger.pid)
        younger.kill()
        younger.wait()
        assert handover.ready(master, [younger.pid])  # an exited worker cannot be waited for
    finally:
        for proc in (older, younger):
            proc.kill()
            proc.wait()
        handover.forget(master)
    assert not handover.marks(master).exists()


def test_a_stat_line_is_read_by_field_whatever_the_command_name_holds():
    # proc(5): pid (comm) state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt utime stime
    # cutime cstime priority nice num_threads itrealvalue starttime vsize ...
    line = "4242 (gunicorn: worker) [app]) S 4200 4200 4200 0 -1 4194560 900 0 0 0 12 3 0 0 20 0 2 0 987654 1000 9\n"
    assert handover.parse_stat(line) == handover.ProcStat(ppid=4200, start_ticks=987654)
    assert handover.parse_stat("4242 (cut short) S 4200") is None


def test_this_process_stat_names_its_parent():
    stat = handover.proc_stat(os.getpid())
    assert stat is not None and stat.ppid == os.getppid() and stat.start_ticks > 0
    assert handover.proc_stat(2**22 + 1) is None  # above pid_max: no such process
