"""Two publishers in a JetStream cluster: the copy that arrives while the other's is being stored."""

from __future__ import annotations

import asyncio

import pytest
from nats.js.api import PubAck
from nats.js.errors import APIError

from flexgate_stream.settings import Settings
from workers.outbox import Outbox

pytestmark = pytest.mark.timeout(10)


class ClusterJetStream:
    """Answers like a clustered stream leader: 10158 while the other publisher's copy is in process, then
    a duplicate ack."""

    def __init__(self, busy: int, err_code: int = 10158) -> None:
        self.busy, self.err_code, self.calls = busy, err_code, 0

    async def publish(self, subject, payload, headers=None, timeout=None):
        self.calls += 1
        if self.calls <= self.busy:
            raise APIError(code=409, err_code=self.err_code, description="duplicate message id is in process")
        return PubAck(stream="METRICS", seq=7, duplicate=True)


def send(js: ClusterJetStream):
    out = Outbox(Settings(), [], "p1")
    return asyncio.run(out._send(js, "metrics.summary", {"type": "metrics"}, "metrics.summary@t"))


def test_a_copy_in_process_elsewhere_is_retried_and_counts_as_a_duplicate():
    js = ClusterJetStream(busy=2)
    ack = send(js)
    assert ack.duplicate and ack.seq == 7 and js.calls == 3


def test_other_api_errors_are_not_retried():
    js = ClusterJetStream(busy=1, err_code=10077)
    with pytest.raises(APIError):
        send(js)
    assert js.calls == 1
