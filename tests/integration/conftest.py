"""Integration fixtures: real publisher processes against the session's nats-server and a test's database."""

from __future__ import annotations

import signal

import pytest

from flexgate_stream.devstack.processes import stop_process
from tests.integration.publishers import Worker


@pytest.fixture
def workers(tmp_path):
    """A factory of publisher processes, all killed after the test."""
    started: list[Worker] = []

    def start(database_url: str, nats_url: str, **extra: str) -> Worker:
        env = {"DATABASE_URL": database_url, "NATS_SERVERS": nats_url, "FLEXGATE_TICK_SECONDS": "1", **extra}
        worker = Worker(tmp_path / f"publisher-{len(started)}.log", env)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        stop_process(worker.proc, signal.SIGKILL, timeout=5)
