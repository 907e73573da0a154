"""The one NATS reconnect routine (flexgate_stream/nats_link.py) against a real nats-server that goes away and comes
back: one line when it goes, one when it is back, connected again within about 2 s of its return."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from flexgate_stream.devstack.processes import free_port
from flexgate_stream.devstack.servers import NatsServer
from flexgate_stream.nats_link import MAX_DELAY, NatsLink
from flexgate_stream.settings import Settings

pytestmark = pytest.mark.timeout(60)

OUTAGE = 5.0  # longer than the backoff's cap, so the attempts have reached it when NATS returns


async def until(predicate, timeout: float, what: str) -> float:
    """Seconds until ``predicate()`` holds, polled on the loop; fails after ``timeout``."""
    started = time.monotonic()
    while not predicate():
        assert time.monotonic() - started < timeout, f"timed out after {timeout} s waiting for {what}"
        await asyncio.sleep(0.02)
    return time.monotonic() - started


def test_nats_going_and_coming_back_is_two_lines_and_a_reconnect_within_the_backoff_cap(tmp_path, caplog):
    server = NatsServer(tmp_path / "store", port=free_port(), log_file=tmp_path / "nats.log").start()
    served: list[object] = []

    async def serve(nc) -> None:
        served.append(nc)

    async def scenario() -> float:
        link = NatsLink(Settings(nats_servers=(server.url,)).nats_connect_options, "test[1]",
                        logging.getLogger("tests.nats_link"))
        keeper = asyncio.create_task(link.run(serve))
        await until(lambda: link.nc is not None, 10, "the first connection")
        server.kill()
        await until(lambda: link.nc is None, 10, "the link to notice")
        await asyncio.sleep(OUTAGE)
        server.start()
        back = await until(lambda: link.nc is not None, 10, "the link to reconnect")
        await link.drain(1.0)
        await asyncio.wait_for(keeper, 5)
        return back

    try:
        with caplog.at_level(logging.INFO, logger="tests.nats_link"):
            back = asyncio.run(scenario())
    finally:
        server.stop()
    lines = [r.getMessage() for r in caplog.records]
    print(f"connected again {back:.2f} s after nats-server started; lines: {lines}")
    assert [line.split(" (")[0].split(" after")[0] for line in lines] == [
        "test[1]: NATS connected to " + server.url.removeprefix("nats://"), "test[1]: NATS is unavailable",
        "test[1]: NATS is back"]
    assert back < MAX_DELAY * 1.2 + 0.5  # the longest delay, its jitter, and the connect itself
    assert len(served) == 2  # the process redid its work on the new connection
