"""A web worker told to stop while it boots: gunicorn sets its signal handlers only after the gevent patching."""

from __future__ import annotations

import os
import re
import signal

import pytest

from tests.e2e.support import alive
from tests.waiting import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]


def test_a_sigterm_in_a_workers_first_moments_stops_it(start_web):
    web = start_web()
    booted = set(re.findall(r"Booting worker with pid: (\d+)", web.log_text()))
    victim = web.kill_worker()

    def booting() -> int | None:
        new = set(re.findall(r"Booting worker with pid: (\d+)", web.log_text())) - booted
        return int(new.pop()) if new else None

    # The worker logs this line just after its fork, before gunicorn sets its handlers: the SIGTERM lands then.
    replacement = wait_until(booting, 15, f"a worker replacing {victim}", interval=0.001)
    os.kill(replacement, signal.SIGTERM)
    wait_until(lambda: not alive(replacement), 30, f"the worker {replacement} to exit on its SIGTERM")
    assert f"Worker graceful timeout (pid:{replacement})" not in web.log_text()
    wait_until(lambda: len(web.worker_pids()) == 2 and replacement not in web.worker_pids(), 15, "another worker")
