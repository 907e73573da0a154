"""The JetStream calls the web tier makes (reads, and the gateway events it publishes), as plain coroutines
run on the bridge's asyncio loop."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from typing import Any, NamedTuple

from nats.aio.client import Client as NATS
from nats.errors import NoRespondersError
from nats.js.errors import NotFoundError

from flexgate_stream import liveness
from flexgate_stream.messages import ALERTS_STREAM, METRICS_STREAM
from flexgate_stream.timestamps import iso

API_PREFIX = "$JS.API"
TIMEOUT = 5.0


class StoredMsg(NamedTuple):
    """A message read back from a stream."""

    seq: int
    subject: str
    data: bytes


class Bounds(NamedTuple):
    """The first and last sequence a stream keeps (first > last when it is empty)."""

    first: int
    last: int


async def bounds(nc: NATS, stream: str) -> Bounds:
    """The sequences ``stream`` keeps now."""
    info = await nc.jetstream(timeout=TIMEOUT).stream_info(stream)
    return Bounds(info.state.first_seq, info.state.last_seq)


async def direct_get(nc: NATS, stream: str, request: dict[str, Any]) -> StoredMsg | None:
    """One DIRECT.GET request; None when no message matches."""
    reply = await nc.request(f"{API_PREFIX}.DIRECT.GET.{stream}", json.dumps(request).encode(), timeout=TIMEOUT)
    headers = reply.headers or {}
    if not reply.data and headers.get("Status"):
        if headers["Status"] == "404":
            return None
        raise NotFoundError(description=headers.get("Description", headers["Status"]))
    return StoredMsg(int(headers["Nats-Sequence"]), headers["Nats-Subject"], reply.data)


async def read_after(nc: NATS, stream: str, subject: str, seq: int, count: int,
                     upto: int | None = None) -> list[StoredMsg]:
    """Up to ``count`` messages on ``subject`` with a sequence above ``seq`` (and below ``upto``), in order."""
    found: list[StoredMsg] = []
    while len(found) < count:
        msg = await direct_get(nc, stream, {"seq": seq + 1, "next_by_subj": subject})
        if msg is None or (upto is not None and msg.seq >= upto):
            break
        found.append(msg)
        seq = msg.seq
    return found


async def first_since(nc: NATS, stream: str, subject: str, since: datetime) -> StoredMsg | None:
    """The first message on ``subject`` stored at or after ``since``."""
    stamp = iso(since, timespec="microseconds")
    return await direct_get(nc, stream, {"start_time": stamp, "next_by_subj": subject})


async def last_message(nc: NATS, stream: str, subject: str) -> StoredMsg | None:
    """The newest message on ``subject``, or None."""
    return await direct_get(nc, stream, {"last_by_subj": subject})


async def last_messages(nc: NATS, stream: str, subjects: list[str]) -> list[StoredMsg | None]:
    """The newest message on each of ``subjects``, asked all at once; None for each when ``stream`` does not
    exist (a publisher older than the stream has not created it)."""
    try:
        return list(await asyncio.gather(*(last_message(nc, stream, subject) for subject in subjects)))
    except NoRespondersError:
        return [None] * len(subjects)


async def stream_summary(nc: NATS, stream: str) -> dict[str, Any] | None:
    """The original /stats shape of one stream, or None when it does not exist."""
    try:
        info = await nc.jetstream(timeout=TIMEOUT).stream_info(stream)
    except NotFoundError:
        return None
    return {
        "name": info.config.name,
        "subjects": list(info.config.subjects or []),
        "messages": info.state.messages,
        "bytes": info.state.bytes,
        "firstSeq": info.state.first_seq,
        "lastSeq": info.state.last_seq,
        "consumerCount": info.state.consumer_count,
    }


async def missing_streams(nc: NATS) -> list[str]:
    """The names of the streams the web tier reads that are missing."""
    names = (METRICS_STREAM, ALERTS_STREAM)
    found = await asyncio.gather(*(stream_summary(nc, name) for name in names))
    return [name for name, summary in zip(names, found, strict=True) if summary is None]


async def publish(nc: NATS, subject: str, payload: bytes, msg_id: str) -> tuple[int, bool]:
    """Publish with a Nats-Msg-Id, so a retried delivery is stored once; the sequence, and whether it was a repeat."""
    ack = await nc.jetstream(timeout=TIMEOUT).publish(subject, payload, headers={"Nats-Msg-Id": msg_id})
    return ack.seq, bool(ack.duplicate)


async def overview(nc: NATS) -> dict[str, Any]:
    """Everything /api/stream/stats reads, in one trip through the bridge (its requests at the same time)."""
    metrics, alerts, live = await asyncio.gather(stream_summary(nc, METRICS_STREAM), stream_summary(nc, ALERTS_STREAM),
                                                 liveness.read_liveness(nc.jetstream(timeout=TIMEOUT)))
    return {"metrics": metrics, "alerts": alerts, "liveness": live}
