"""nats-server hangs (SIGSTOP, not a crash): probes answer within 1 s throughout, 503 while NATS cannot answer,
the worker notices within 10 s, and all is 200 again after SIGCONT."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator

import pytest
import requests

from flexgate_stream.devstack.servers import NatsServer
from tests.e2e.support import NatsClient, WebServer
from tests.waiting import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120), pytest.mark.slow(9)]

PROBES = ("/healthz", "/readyz", "/api/stream/stats")
CLIENT_TIMEOUT = 1.0  # a monitoring probe's timeout


@pytest.fixture
def own_nats(tmp_path) -> Iterator[NatsServer]:
    """A nats-server of this test's own, to stop and continue by its PID."""
    server = NatsServer(tmp_path / "store", log_file=tmp_path / "nats.log").start()
    yield server
    server.stop()


def probe(web: WebServer, path: str) -> tuple[int, float, dict]:
    """Status, seconds and JSON body of one probe; a probe slower than CLIENT_TIMEOUT fails the test."""
    started = time.monotonic()
    try:
        response = requests.get(web.url + path, timeout=CLIENT_TIMEOUT)
    except requests.Timeout:
        pytest.fail(f"{path} did not answer within {CLIENT_TIMEOUT:g} s")
    seconds = time.monotonic() - started
    assert seconds < CLIENT_TIMEOUT, f"{path} took {seconds:.2f} s"
    return response.status_code, seconds, response.json()


def statuses(web: WebServer) -> dict[str, int]:
    return {path: probe(web, path)[0] for path in PROBES}


def test_probes_answer_503_within_a_second_while_nats_hangs(own_nats, start_web):
    publisher = NatsClient(own_nats.url)
    try:
        publisher.publish_snapshot()
        # A long tick: the one snapshot stays fresh, so only NATS decides the answers.
        web = start_web({"FLEXGATE_TICK_SECONDS": "60"}, nats_url=own_nats.url, workers=1)
        assert statuses(web) == dict.fromkeys(PROBES, 200)
        assert own_nats.proc is not None
        pid = own_nats.proc.pid
        os.kill(pid, signal.SIGSTOP)
        stopped = time.monotonic()
        try:
            first_503: dict[str, float] = {}
            noticed = None
            slowest = 0.0
            while noticed is None or time.monotonic() - stopped < noticed + 2.0:  # and a little past: 503 stays
                assert noticed is not None or time.monotonic() - stopped < 10.0, \
                    f"the worker did not notice within 10 s; first 503s at {first_503}"
                for path in PROBES:
                    status, seconds, body = probe(web, path)
                    slowest = max(slowest, seconds)
                    if path == "/healthz":
                        assert status == 200
                        continue
                    assert status == 503 or path not in first_503, f"{path} answered {status} after a 503"
                    if status == 503:
                        first_503.setdefault(path, round(time.monotonic() - stopped, 2))
                    if path == "/api/stream/stats" and body["data"]["connected"] is False and noticed is None:
                        noticed = time.monotonic() - stopped
            assert set(first_503) == {"/readyz", "/api/stream/stats"}
            assert max(first_503.values()) < 10.0
            print(f"first 503s {first_503} s after SIGSTOP; the worker noticed after {noticed:.1f} s; "
                  f"slowest probe {slowest:.2f} s")
        finally:
            os.kill(pid, signal.SIGCONT)
        continued = time.monotonic()
        wait_until(lambda: statuses(web) == dict.fromkeys(PROBES, 200), 20, "every probe to answer 200 again")
        print(f"200 again {time.monotonic() - continued:.1f} s after SIGCONT")
        assert "NATS is unavailable (connection lost)" in web.log_text()
    finally:
        publisher.close()
