"""A followed subject whose consumer is stuck (silent while NATS stays connected) is re-created by the bridge."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from flexgate_stream.devstack.servers import NatsServer
from flexgate_stream.messages import ALERTS_STREAM, METRICS_STREAM
from tests.e2e.support import NatsClient, SSEClient

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90), pytest.mark.slow(15)]


@pytest.fixture
def own_nats(tmp_path):
    """A nats-server of this test's own, so the only consumers on it are the worker's."""
    server = NatsServer(tmp_path / "store", log_file=tmp_path / "nats.log").start()
    yield server
    server.stop()


def pause_consumers(publisher: NatsClient, stream: str) -> list[str]:
    """Pause every consumer on ``stream`` for an hour: each stays alive (heartbeats and all) but delivers nothing."""
    until = (datetime.now(UTC) + timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    names = [info.name for info in publisher.run(publisher.js.consumers_info(stream))]
    for name in names:
        publisher.run(publisher.js.pause_consumer(stream, name, until))
    return names


def data_ids(client: SSEClient, count: int, within: float = 30.0) -> list[int]:
    """The ids of the next ``count`` data events, failing after ``within`` seconds (heartbeats keep the stream busy)."""
    deadline = time.monotonic() + within
    ids: list[int] = []
    while len(ids) < count:
        assert time.monotonic() < deadline, f"only {len(ids)} of {count} events within {within:g} s"
        event = client.next(include_comments=True)
        if event.comment is None and event.event == "message":
            ids.append(int(event.id))
    return ids


def test_silent_consumers_are_recreated_and_clients_miss_nothing(own_nats, start_web):
    publisher = NatsClient(own_nats.url)
    try:
        publisher.publish_snapshot()
        web = start_web(nats_url=own_nats.url, workers=1)
        snapshots = SSEClient(web.url + "/api/stream/metrics")
        alerts = [SSEClient(web.url + "/api/stream/alerts") for _ in range(2)]
        for client in [snapshots, *alerts]:
            client.next()  # the hello frame
        data_ids(snapshots, 1)
        first = publisher.publish_alert()
        for client in alerts:
            assert data_ids(client, 1) == [first]

        paused = pause_consumers(publisher, ALERTS_STREAM) + pause_consumers(publisher, METRICS_STREAM)
        assert len(paused) == 2  # one worker: one consumer per followed subject
        missed = [publisher.publish_alert() for _ in range(5)]
        newest = publisher.publish_snapshot()

        for client in alerts:  # the watchdog needs two looks, STUCK_SECONDS apart: about 12 s
            assert data_ids(client, len(missed)) == missed
        ids = data_ids(snapshots, 1)
        while ids[-1] < newest:
            ids += data_ids(snapshots, 1)
        assert ids[-1] == newest
        later = publisher.publish_alert()
        for client in alerts:
            assert data_ids(client, 1) == [later]

        remaining = {info.name for stream in (ALERTS_STREAM, METRICS_STREAM)
                     for info in publisher.run(publisher.js.consumers_info(stream))}
        assert not remaining & set(paused)  # the silent consumers were deleted, not left behind
        log = web.log_text()
        assert "alerts.> stuck" in log and "metrics.summary stuck" in log
        for client in [snapshots, *alerts]:
            client.close()
    finally:
        publisher.close()
