"""JetStream stream definitions, created or updated by the publisher at start."""

from __future__ import annotations

import logging

from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, KeyValueConfig, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError

from flexgate_stream.messages import (
    ALERT_STATE_BUCKET,
    ALERT_SUBJECT_PREFIX,
    ALERTS_STREAM,
    INDEX_STREAM,
    INDEX_SUBJECT_PREFIX,
    METRICS_STREAM,
    PUBLISHERS_BUCKET,
    ROUTE_SUBJECT_PREFIX,
    ROUTES_STREAM,
    UPSTREAM_SUBJECT_PREFIX,
)

log = logging.getLogger(__name__)

HOUR = 3600.0
DAY = 24 * HOUR
MIB = 1024 * 1024


def stream_configs(replicas: int = 1) -> list[StreamConfig]:
    """The streams: METRICS (as the original), METRICS_ROUTES, METRICS_INDEX, ALERTS (as the original)."""
    return [
        StreamConfig(
            name=METRICS_STREAM, subjects=["metrics.>"], retention=RetentionPolicy.LIMITS, max_age=DAY,
            max_bytes=1024 * MIB, max_msgs=100_000, storage=StorageType.FILE, discard=DiscardPolicy.OLD,
            duplicate_window=120.0, num_replicas=replicas, allow_direct=True,
            description="FlexGate metrics snapshots (metrics.summary every tick)",
        ),
        StreamConfig(
            name=ROUTES_STREAM, subjects=[ROUTE_SUBJECT_PREFIX + ">", UPSTREAM_SUBJECT_PREFIX + ">"],
            retention=RetentionPolicy.LIMITS, max_age=HOUR, max_bytes=256 * MIB, max_msgs_per_subject=1000,
            storage=StorageType.FILE,
            discard=DiscardPolicy.OLD, duplicate_window=120.0, num_replicas=replicas, allow_direct=True,
            description="FlexGate per-route and per-upstream metrics snapshots (routes.<token>, upstreams.<token>)",
        ),
        StreamConfig(
            name=INDEX_STREAM, subjects=[INDEX_SUBJECT_PREFIX + ">"], retention=RetentionPolicy.LIMITS,
            max_age=HOUR, max_bytes=256 * MIB, max_msgs_per_subject=1, storage=StorageType.FILE,
            discard=DiscardPolicy.OLD, duplicate_window=120.0, num_replicas=replicas, allow_direct=True,
            description="FlexGate index of every tracked route and upstream (index.<kind>.<page>), newest only",
        ),
        StreamConfig(
            name=ALERTS_STREAM, subjects=[ALERT_SUBJECT_PREFIX + ">"], retention=RetentionPolicy.LIMITS,
            max_age=7 * DAY, max_bytes=100 * MIB, max_msgs=10_000, storage=StorageType.FILE,
            discard=DiscardPolicy.OLD, duplicate_window=120.0, num_replicas=replicas, allow_direct=True,
            description="FlexGate alerts and gateway events",
        ),
    ]


async def ensure_streams(js: JetStreamContext, replicas: int = 1) -> None:
    """Create each stream, or update it to the definition above; also the publishers' KV bucket."""
    for config in stream_configs(replicas):
        try:
            await js.stream_info(config.name or "")
        except NotFoundError:
            await js.add_stream(config)
            log.info("streams: created %s", config.name)
        else:
            await js.update_stream(config)
    for bucket in bucket_configs(replicas):
        await _ensure_bucket(js, bucket)


def bucket_configs(replicas: int = 1) -> list[KeyValueConfig]:
    """The KV buckets: publisher heartbeats (TTL 60 s) and the state of firing alerts (kept 7 days)."""
    return [
        KeyValueConfig(bucket=PUBLISHERS_BUCKET, ttl=60.0, history=1, storage=StorageType.FILE, replicas=replicas),
        KeyValueConfig(bucket=ALERT_STATE_BUCKET, ttl=7 * DAY, history=1, storage=StorageType.FILE,
                       replicas=replicas),
    ]


async def _ensure_bucket(js: JetStreamContext, config: KeyValueConfig) -> None:
    try:
        await js.key_value(config.bucket)
    except Exception:  # nats-py raises BucketNotFoundError or NotFoundError depending on version
        await js.create_key_value(config)
        log.info("streams: created KV bucket %s", config.bucket)
