"""Is the stream live? The publishers' KV heartbeats, the newest snapshot's age, and when it counts as stale.

KV bucket ``flexgate_publishers``, key = publisher id, value = JSON (``messages.PublisherBeat``):
``{"publisher", "host", "pid", "startedAt", "seenAt", "lastTickAt", "lastWindowEnd", "tickMs", "tickSeconds",
"database"}``, written every tick (also while PostgreSQL is down, with ``database: "unavailable"``).
The bucket's TTL (60 s) removes a dead publisher's key; a warm stop deletes it at once.

The web tier judges staleness by the tick period the live publishers report (``tick_period``), so a period
changed in the worker alone is followed; its own FLEXGATE_TICK_SECONDS counts only while no live publisher says.
Pure asyncio nats-py: safe to call from the bridge's loop (no gevent, no PostgreSQL).
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime
from typing import TypedDict

from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from flexgate_stream.messages import METRICS_STREAM, PUBLISHERS_BUCKET, SUMMARY_SUBJECT, PublisherBeat
from flexgate_stream.timestamps import parse_iso

STALE_TICKS = 3  # a publisher (or snapshot) older than three ticks is not live
DEFAULT_TICK_SECONDS = 5.0  # a beat without tickSeconds comes from a publisher with the default period


class LivePublisher(TypedDict):
    beat: PublisherBeat
    age: float  # seconds since seenAt
    live: bool  # heartbeat within three of its ticks


class Liveness(TypedDict):
    newestWindowEnd: str | None  # windowEnd of the newest metrics.summary snapshot
    snapshotAge: float | None  # seconds since that window end; None when the stream holds none
    publishers: list[LivePublisher]
    live: bool  # at least one live publisher


async def newest_window_end(js: JetStreamContext) -> str | None:
    """The windowEnd of the newest ``metrics.summary`` message, from its Nats-Msg-Id (body as fallback)."""
    try:
        msg = await js.get_last_msg(METRICS_STREAM, SUMMARY_SUBJECT)
    except NotFoundError:
        return None
    msg_id = (msg.headers or {}).get("Nats-Msg-Id", "")
    if msg_id.startswith(SUMMARY_SUBJECT + "@"):
        return str(msg_id.split("@", 1)[1])
    end = json.loads(msg.data or b"{}").get("windowEnd")
    return end if isinstance(end, str) else None


async def publisher_beats(js: JetStreamContext) -> list[PublisherBeat]:
    """Every heartbeat in the publishers' KV bucket (expired and stopped publishers are gone)."""
    # Two round trips, the keys' reads at once: the web tier's health probes make them in a worker that may be
    # opening thousands of streams, where each round trip waits its turn (a KV watcher for the keys took several).
    stream = f"KV_{PUBLISHERS_BUCKET}"
    try:
        info = await js.stream_info(stream, subjects_filter=f"$KV.{PUBLISHERS_BUCKET}.>")
    except NotFoundError:
        return []
    subjects = sorted(info.state.subjects or {})
    values = await asyncio.gather(*(_kv_value(js, stream, subject) for subject in subjects))
    return [json.loads(value) for value in values if value]


async def _kv_value(js: JetStreamContext, stream: str, subject: str) -> bytes | None:
    """The value a KV key holds now; None when it was deleted, purged or expired meanwhile."""
    try:
        msg = await js.get_last_msg(stream, subject)
    except NotFoundError:
        return None
    if (msg.headers or {}).get("KV-Operation") in ("DEL", "PURGE"):
        return None
    return msg.data or None


async def read_liveness(js: JetStreamContext, now: float | None = None) -> Liveness:
    """How old the newest snapshot is, and which publishers are live (heartbeat within three ticks)."""
    now = time.time() if now is None else now
    newest, beats = await asyncio.gather(newest_window_end(js), publisher_beats(js))
    snapshot_age = None if newest is None else max(0.0, now - parse_iso(newest).timestamp())
    publishers = []
    for beat in beats:
        age = max(0.0, now - parse_iso(beat.get("seenAt") or beat["startedAt"]).timestamp())
        live = age <= STALE_TICKS * beat_period(beat)
        publishers.append(LivePublisher(beat=beat, age=age, live=live))
    publishers.sort(key=lambda p: p["beat"]["publisher"])
    return Liveness(newestWindowEnd=newest, snapshotAge=snapshot_age, publishers=publishers,
                    live=any(p["live"] for p in publishers))


def beat_period(beat: PublisherBeat) -> float:
    """The tick period a heartbeat reports."""
    return float(beat.get("tickSeconds") or DEFAULT_TICK_SECONDS)


def tick_period(live: Liveness | None, fallback: float) -> float:
    """The tick period snapshots are judged by: the longest any live publisher reports (so no live publisher's
    snapshots count as stale), else ``fallback`` (the web tier's FLEXGATE_TICK_SECONDS)."""
    periods = [beat_period(p["beat"]) for p in live["publishers"] if p["live"]] if live is not None else []
    return max(periods, default=fallback)


def snapshot_time(data: bytes) -> datetime | None:
    """When the snapshot in ``data`` (a message's body) was taken: its window end, else its ``timestamp``; None
    when unreadable."""
    try:
        doc = json.loads(data)
        raw = doc.get("windowEnd") or doc.get("timestamp")
        stamp = parse_iso(raw)
    except (ValueError, TypeError, AttributeError):
        return None
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)


def snapshot_age(data: bytes | None, now: datetime | None = None) -> float | None:
    """Seconds since the snapshot in ``data`` was taken."""
    taken = snapshot_time(data) if data else None
    if taken is None:
        return None
    return max(0.0, ((now or datetime.now(UTC)) - taken).total_seconds())


def is_stale(age: float | None, tick_seconds: float) -> bool:
    """A snapshot older than three ticks (or none at all) is stale."""
    return age is None or age > STALE_TICKS * tick_seconds
