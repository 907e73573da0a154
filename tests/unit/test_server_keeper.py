"""The launcher's keeper of its embedded servers: restart on death, give up when deaths repeat."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from flexgate_stream.devstack.keeper import ServerKeeper
from tests.waiting import wait_until

pytestmark = pytest.mark.timeout(10)

README = Path(__file__).resolve().parents[2] / "README.md"


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


def test_a_server_that_keeps_dying_is_given_up_at_its_third_death_as_the_readme_says(caplog):
    # README: "after 3 deaths within 60 s it gives up": two starts again, none after the third death.
    server = FakeServer([])
    gave_up = threading.Event()
    keeper = ServerKeeper("postgres", server, gave_up.set, interval=0.01)
    keeper.start()
    try:
        assert gave_up.wait(5)
    finally:
        keeper.stop()
    assert server.starts == 2
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert errors == ["postgres died 3 times within 60 s; giving up (its log: nats.log)"]
    assert "after 3 deaths within 60 s it gives up" in " ".join(README.read_text().split())


def test_deaths_further_apart_than_the_window_are_survived():
    server = FakeServer([])
    gave_up = threading.Event()
    keeper = ServerKeeper("nats-server", server, gave_up.set, window=0.05, interval=0.1)
    keeper.start()
    try:
        wait_until(lambda: server.starts >= 4, 5, "four starts again")
    finally:
        keeper.stop()
    assert not gave_up.is_set()
