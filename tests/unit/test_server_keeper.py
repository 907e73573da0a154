"""The launcher's keeper of its embedded servers: restart on death, give up when deaths repeat."""

from __future__ import annotations

import threading

import pytest

from flexgate_stream.devstack.keeper import ServerKeeper

pytestmark = pytest.mark.timeout(10)


class DeadProcess:
    pid = 4242
    returncode = -9

    def poll(self) -> int:
        return self.returncode


class LiveProcess:
    pid = 4243
    returncode = None

    def poll(self) -> None:
        return None


class FakeServer:
    """A server whose process dies; each start gives it a process from ``lives`` (dead or alive)."""

    port = 4222
    log_file = "nats.log"

    def __init__(self, lives: list) -> None:
        self.proc = DeadProcess()
        self.lives = lives
        self.starts = 0

    def start(self) -> FakeServer:
        self.starts += 1
        self.proc = self.lives.pop(0) if self.lives else DeadProcess()
        return self


def test_a_dead_server_is_started_again_once_and_kept(caplog):
    server = FakeServer([LiveProcess()])
    gave_up = threading.Event()
    keeper = ServerKeeper("nats-server", server, gave_up.set, interval=0.01)
    keeper.start()
    try:
        keeper.stopping.wait(0.3)
    finally:
        keeper.stop()
    assert server.starts == 1 and not gave_up.is_set()
    lines = [r.getMessage() for r in caplog.records if "nats-server" in r.getMessage()]
    assert lines == ["nats-server (pid 4242) exited with status -9; starting it again on port 4222 with the same data"]


def test_a_server_that_keeps_dying_is_given_up_with_one_clear_line(caplog):
    server = FakeServer([])
    gave_up = threading.Event()
    keeper = ServerKeeper("postgres", server, gave_up.set, max_restarts=3, window=60, interval=0.01)
    keeper.start()
    try:
        assert gave_up.wait(5)
    finally:
        keeper.stop()
    assert server.starts == 3
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert errors == ["postgres died 4 times within 60 s; giving up (its log: nats.log)"]
