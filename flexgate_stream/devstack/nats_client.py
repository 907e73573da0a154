"""A NATS connection on its own thread and event loop that publishes like the publisher does (encoded
messages with their Nats-Msg-Id), for the test suite and the benchmarks."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import nats

from flexgate_stream.devstack.samples import sample_alert, sample_snapshot
from flexgate_stream.messages import (
    ALERT_SUBJECT_PREFIX,
    METRICS_STREAM,
    PUBLISHERS_BUCKET,
    SUMMARY_SUBJECT,
    encode,
    index_subject,
    message_id,
    route_subject,
    upstream_subject,
)
from flexgate_stream.tick.stream_setup import ensure_streams

T = TypeVar("T")


class NatsClient:
    """A NATS connection on its own thread and event loop, for tests that publish like the publisher."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.nc = self.run(nats.connect(url, connect_timeout=2, max_reconnect_attempts=-1, reconnect_time_wait=0.2,
                                        error_cb=_ignore))
        self.js = self.nc.jetstream()
        self.run(ensure_streams(self.js))
        self.counter = 0

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.run(self.nc.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)

    def publish_snapshot(self, route: str | None = None, age: float = 0.0, padding: int = 0,
                         upstream: str | None = None) -> int:
        """Publish one snapshot (summary, or one route's or upstream's, ``age`` seconds old, ``padding`` bytes
        bigger); its stream sequence."""
        self.counter += 1
        taken = datetime.now(UTC) - timedelta(seconds=age)
        snapshot = sample_snapshot(self.counter, route=route, upstream=upstream,
                                   end=taken + timedelta(microseconds=self.counter), taken=taken)
        if padding:
            snapshot["padding"] = "x" * padding
        return self.publish(snapshot_subject(snapshot), snapshot)

    def publish(self, subject: str, message: dict[str, Any]) -> int:
        """Publish ``message`` (a Snapshot or a GroupIndex page) as the publisher does; its stream sequence."""
        headers = {"Nats-Msg-Id": message_id(subject, message["windowEnd"])}
        ack = self.run(self.js.publish(subject, encode(message), headers=headers))
        return ack.seq

    def publish_index(self, pages: list[dict[str, Any]]) -> list[int]:
        """Publish GroupIndex pages on index.<kind>.<page>, the last page first and page 0 last (so page 0
        never announces pages not yet written); their stream sequences, in page order."""
        seqs = [self.publish(index_subject(page["kind"], page["page"]), page) for page in reversed(pages)]
        return seqs[::-1]

    def put_beat(self, beat: dict[str, Any]) -> None:
        """Write a publisher heartbeat (messages.PublisherBeat) to the publishers' KV bucket."""
        async def put() -> None:
            kv = await self.js.key_value(PUBLISHERS_BUCKET)
            await kv.put(beat["publisher"], encode(beat))
        self.run(put())

    def publish_alert(self, kind: str = "warning", rule: str = "test") -> int:
        """Publish one firing alert on alerts.<kind>, a new one each call; its stream sequence."""
        self.counter += 1
        alert = sample_alert(rule, "firing", severity=kind, value=1.0, threshold=0.5)
        alert["id"] = f"a{self.counter}-{time.time_ns()}"  # its Nats-Msg-Id: every call is stored
        ack = self.run(self.js.publish(ALERT_SUBJECT_PREFIX + kind, encode(alert),
                                       headers={"Nats-Msg-Id": alert["id"]}))
        return ack.seq

    def stream_bounds(self, stream: str = METRICS_STREAM) -> tuple[int, int]:
        info = self.run(self.js.stream_info(stream))
        return info.state.first_seq, info.state.last_seq


async def _ignore(exc: Exception) -> None:
    """Connection errors are expected while a test restarts nats-server."""


def snapshot_subject(snapshot: dict[str, Any]) -> str:
    """Where the publisher puts ``snapshot``: routes.<token>, upstreams.<token> or metrics.summary."""
    if snapshot.get("route"):
        return route_subject(snapshot["route"])
    if snapshot.get("upstream"):
        return upstream_subject(snapshot["upstream"])
    return SUMMARY_SUBJECT
