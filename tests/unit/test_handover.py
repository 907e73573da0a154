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
