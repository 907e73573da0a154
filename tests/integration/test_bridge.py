"""The bridge against a real nats-server: every message in order to its channel, across a NATS restart, and calls
in flight failed at once when the connection is lost."""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flexgate_stream.devstack.nats_client import NatsClient
from flexgate_stream.devstack.processes import dies_with_parent, stop_process
from flexgate_stream.devstack.servers import NatsServer
from tests.waiting import wait_until

pytestmark = pytest.mark.timeout(90)

ROOT = Path(__file__).resolve().parents[2]


class Driver:
    """tests/integration/bridge_driver.py in a process of its own; its JSON lines on a queue."""

    def __init__(self, nats_url: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.integration.bridge_driver", nats_url],
                                     cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     preexec_fn=dies_with_parent(signal.SIGTERM))
        self.lines: queue.Queue[dict[str, Any]] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(json.loads(line))

    def next(self, *wanted: str, timeout: float = 20) -> dict[str, Any]:
        """The next line that has one of the fields ``wanted``."""
        while True:
            line = self.lines.get(timeout=timeout)
            if any(field in line for field in wanted):
                return line

    def seqs(self, key: str, count: int) -> list[int]:
        found: list[int] = []
        while len(found) < count:
            line = self.next("seq")
            if line["key"] == key:
                found.append(line["seq"])
        return found

    def stop(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        stop_process(self.proc, timeout=10)


def follow_alerts(driver: Driver, publisher: NatsClient) -> None:
    """Publish alerts until one arrives: the alerts consumer starts after the newest alert when it is made (on a
    busy machine that can be after an alert the test publishes next)."""
    for _ in range(20):
        probe = publisher.publish_alert()
        try:
            while (line := driver.next("seq", timeout=1)) != {"seq": probe, "key": "alerts"}:
                assert line["key"] == "alerts", line
            return
        except queue.Empty:
            continue
    raise AssertionError("no alert reached the driver's alerts channel within 20 tries")


@pytest.fixture
def own_nats(tmp_path) -> Iterator[NatsServer]:
    server = NatsServer(tmp_path / "store", log_file=tmp_path / "nats.log").start()
    yield server
    server.stop()


@pytest.mark.own_servers
def test_every_message_reaches_its_channel_in_order_across_a_nats_restart(own_nats):
    publisher = NatsClient(own_nats.url)  # creates the streams, as the publisher does
    driver = Driver(own_nats.url)
    try:
        assert driver.next("connected") == {"connected": True}
        assert driver.next("bounds")["bounds"] == [0, 0]  # an empty METRICS stream, read through bridge.call
        follow_alerts(driver, publisher)
        first = publisher.publish_snapshot()
        wait_until(lambda: driver.seqs("metrics", 1) == [first], 20, "the first snapshot")
        before = [publisher.publish_snapshot() for _ in range(5)]
        alert = publisher.publish_alert()
        assert driver.seqs("metrics", 5) == before
        assert driver.seqs("alerts", 1) == [alert]

        own_nats.kill()
        # The request left waiting (for up to a minute) fails with the connection, not when its time is up.
        told = driver.next("connected", "call_failed") | driver.next("connected", "call_failed")
        assert told["connected"] is False
        assert "connection closed" in told["call_failed"]
        own_nats.start()  # same port, same store
        assert driver.next("connected") == {"connected": True}
        wait_until(lambda: publisher.nc.is_connected, 15, "the test publisher to reconnect")
        after = [publisher.publish_snapshot() for _ in range(3)]
        assert driver.seqs("metrics", 3) == after  # resumed after the last sequence: no gap, no repeat
        assert after == [before[-1] + 1, before[-1] + 2, before[-1] + 3]
    finally:
        driver.stop()
        publisher.close()
