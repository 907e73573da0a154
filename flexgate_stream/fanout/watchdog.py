"""Notices a followed subject whose channel stopped receiving while its stream holds newer messages.

nats-py re-creates an ordered consumer itself after missed heartbeats or a sequence gap, but only
while it notices: a consumer that stays alive without delivering (or a re-creation that failed in a
way nats-py does not retry) leaves the channel silent for good: the consumer is *stuck*. The bridge asks
``stuck`` on its periodic reconcile and re-creates those consumers from the channel's last sequence.

It costs nothing while channels move: a channel is looked at only after it has been quiet for
``stuck_seconds``, then with one stream info per stream and, when the stream grew past the
channel, one direct get per quiet subject, at most once per ``stuck_seconds``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

from nats.aio.client import Client as NATS

from flexgate_stream.fanout import jetstream_api
from flexgate_stream.fanout.channel import Channel
from flexgate_stream.fanout.feeds import Feed


@dataclass
class _Watch:
    """What is known of one channel: its sequence when it last moved, and a newer one NATS held."""

    last_seq: int
    moved_at: float
    checked_at: float = 0.0
    stream_last: int = 0  # the stream's last sequence at the check that found nothing newer
    newer: int = 0  # a sequence on the subject, above last_seq, that NATS held at checked_at


class Watchdog:
    """Tells which followed feeds have been behind their stream, without moving, for ``stuck_seconds``."""

    def __init__(self, stuck_seconds: float) -> None:
        self.stuck_seconds = stuck_seconds
        self._watches: dict[str, _Watch] = {}

    def forget(self, key: str) -> None:
        """Start afresh for ``key`` (it was just re-created or is no longer followed)."""
        self._watches.pop(key, None)

    async def stuck(self, nc: NATS, followed: Iterable[tuple[str, Feed, Channel]]) -> list[tuple[str, int]]:
        """The keys whose channel missed a message NATS has held for ``stuck_seconds``, with that sequence."""
        now = time.monotonic()
        lasts: dict[str, int] = {}
        found = []
        for key, feed, channel in followed:
            watch = self._watches.get(key)
            if watch is None or watch.last_seq != channel.last_seq:
                self._watches[key] = _Watch(channel.last_seq, now)
                continue
            if now - max(watch.moved_at, watch.checked_at) < self.stuck_seconds:
                continue
            if watch.newer:
                found.append((key, watch.newer))
                continue
            if feed.stream not in lasts:
                lasts[feed.stream] = (await jetstream_api.bounds(nc, feed.stream)).last
            watch.checked_at = now
            if lasts[feed.stream] <= max(channel.last_seq, watch.stream_last):
                continue  # the stream did not grow past what was already seen: nothing new on the subject
            request = {"seq": channel.last_seq + 1, "next_by_subj": feed.subject}
            newer = await jetstream_api.direct_get(nc, feed.stream, request)
            watch.newer = newer.seq if newer is not None else 0
            watch.stream_last = lasts[feed.stream] if newer is None else 0
        return found
