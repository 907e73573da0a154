"""The publisher's NATS link against a nats-server that hangs (SIGSTOP): it calls the connection lost within 10 s,
as the web tier does (the same connect options), and reconnects after SIGCONT."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest

from flexgate_stream.devstack.servers import NatsServer
from flexgate_stream.settings import Settings
from workers.jetstream_link import JetStreamLink

pytestmark = pytest.mark.timeout(60)


async def until(predicate, timeout: float, what: str) -> float:
    """Seconds until ``predicate()`` holds, polled on the loop; fails after ``timeout``."""
    started = time.monotonic()
    while not predicate():
        assert time.monotonic() - started < timeout, f"timed out after {timeout} s waiting for {what}"
        await asyncio.sleep(0.05)
    return time.monotonic() - started


def test_the_publisher_notices_a_hung_nats_within_10_s_and_reconnects(tmp_path):
    server = NatsServer(tmp_path / "store", log_file=tmp_path / "nats.log").start()
    assert server.proc is not None
    pid = server.proc.pid

    async def scenario() -> tuple[float, float]:
        link = JetStreamLink(Settings(nats_servers=(server.url,)), "hang")
        keeper = asyncio.create_task(link.run())
        await until(lambda: link.ready, 10, "the first connection")
        os.kill(pid, signal.SIGSTOP)
        try:
            lost = await until(lambda: not link.ready, 10, "the link to call the connection lost")
        finally:
            os.kill(pid, signal.SIGCONT)
        back = await until(lambda: link.ready, 20, "the link to reconnect")
        await link.close()
        await asyncio.wait_for(keeper, 5)
        return lost, back

    try:
        lost, back = asyncio.run(scenario())
    finally:
        server.stop()
    print(f"lost after {lost:.1f} s of the hang; reconnected {back:.1f} s after SIGCONT")
