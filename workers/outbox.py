"""What one tick sends: snapshots, alert changes (with their shared state) and the liveness heartbeat."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import time
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, cast

import nats.errors
from nats.js import JetStreamContext
from nats.js.api import PubAck
from nats.js.errors import APIError, NoKeysError, NotFoundError
from nats.js.kv import KeyValue

from flexgate_stream.liveness import newest_window_end
from flexgate_stream.messages import (
    ALERT_STATE_BUCKET,
    ALERT_SUBJECT_PREFIX,
    PUBLISHERS_BUCKET,
    SUMMARY_SUBJECT,
    Alert,
    Cardinality,
    PublisherBeat,
    encode,
    index_subject,
    message_id,
    route_subject,
    upstream_subject,
)
from flexgate_stream.settings import Settings
from flexgate_stream.tick.alerts import AlertTracker, Rule, observe
from flexgate_stream.tick.figures import WindowFigures
from flexgate_stream.tick.snapshot import (
    busiest_routes,
    busiest_upstreams,
    index_pages,
    route_snapshot,
    summary_snapshot,
    upstream_snapshot,
)
from flexgate_stream.timestamps import iso, parse_iso, utc_now_iso

log = logging.getLogger("workers.publisher")

RETENTION = timedelta(hours=24)  # the METRICS stream's max_age: older windows would expire at once
CATCH_UP_BATCH = 120  # missed windows published per tick at most
IN_PROCESS = 10158  # JetStream: a message with the same Nats-Msg-Id is being stored right now
IN_PROCESS_TRIES = 4
HEADROOM = 512  # bytes of max_payload left for the headers (Nats-Msg-Id) and the protocol line
INDEX_PAGE_BYTES = 256 * 1024  # entries per index page at most (less when the server's max_payload is smaller)


class Outbox:
    """Sends a tick's messages with Nats-Msg-Id dedupe and keeps the publisher's KV heartbeat."""

    def __init__(self, settings: Settings, rules: list[Rule], ident: str) -> None:
        self.settings, self.rules, self.ident = settings, rules, ident
        self.tracker = AlertTracker()
        self.beat = PublisherBeat(publisher=ident, host=socket.gethostname(), pid=os.getpid(),
                                  startedAt=utc_now_iso(), seenAt=utc_now_iso(), lastTickAt=None,
                                  lastWindowEnd=None, tickMs=None, tickSeconds=settings.tick_seconds, database="ok",
                                  cardinality={})
        self.beats: KeyValue | None = None
        self.alert_state: KeyValue | None = None
        self.ticks = 0
        self.published: datetime | None = None  # the newest window end this publisher stored
        self.max_payload = 1024 * 1024  # the server's, learnt at each (re)connection
        self.oversized: set[str] = set()  # subject families a message was too large for (said once each)
        self.newest_stored: datetime | None = None  # the newest window in JetStream, at the last due_windows

    async def attach(self, js: JetStreamContext) -> None:
        """On (re)connect: open the buckets, adopt firing alerts, announce this publisher."""
        self.beats = await js.key_value(PUBLISHERS_BUCKET)
        self.alert_state = await js.key_value(ALERT_STATE_BUCKET)
        try:
            keys = await self.alert_state.keys()
        except (NoKeysError, NotFoundError):
            keys = []
        for key in keys:
            firing = await self._firing(key)
            if firing is not None:
                self.tracker.adopt(key, firing)
        await self.heartbeat()

    async def heartbeat(self, **changes: object) -> None:
        """Write this publisher's KV entry, with ``changes`` applied and ``seenAt`` now."""
        self.beat.update(cast(PublisherBeat, {**changes, "seenAt": utc_now_iso()}))
        if self.beats is not None:
            await self.beats.put(self.ident, encode(dict(self.beat)))

    async def due_windows(self, js: JetStreamContext, window_end: datetime) -> list[datetime]:
        """The windows to publish now: every one missed since the newest stored (oldest first), then ``window_end``.

        Bounded by the stream's retention and, per tick, by CATCH_UP_BATCH (the rest follow next tick,
        before the current window, so windows stay in order).
        """
        stored = await newest_window_end(js)
        newest = max(filter(None, [self.published, parse_iso(stored) if stored else None]), default=None)
        self.newest_stored = newest
        if newest is not None and newest >= window_end:
            return []
        step = timedelta(seconds=self.settings.tick_seconds)
        oldest = window_end - RETENTION + step
        if newest is None:
            return [window_end]
        start = max(newest + step, oldest)
        missed: list[datetime] = []
        at = start
        while at < window_end and len(missed) < CATCH_UP_BATCH:
            missed.append(at)
            at += step
        return missed if len(missed) == CATCH_UP_BATCH else [*missed, window_end]

    def messages(self, figures: WindowFigures) -> list[tuple[str, Mapping[str, Any]]]:
        """The snapshots of ``figures``: summary, the busiest routes' and upstreams' (the index is apart)."""
        top = self.settings.top_routes
        out: list[tuple[str, Mapping[str, Any]]] = [(SUMMARY_SUBJECT, summary_snapshot(figures, top))]
        out += [(route_subject(name), route_snapshot(figures, name, entry, top))
                for name, entry in busiest_routes(figures, top)]
        out += [(upstream_subject(name), upstream_snapshot(figures, name, entry, top))
                for name, entry in busiest_upstreams(figures, top)]
        return out

    def index_messages(self, figures: WindowFigures) -> list[tuple[str, Mapping[str, Any]]]:
        """The index pages of every tracked route and upstream, when ``figures`` has the index."""
        out: list[tuple[str, Mapping[str, Any]]] = []
        if figures.index is not None:
            page_bytes = min(INDEX_PAGE_BYTES, self.max_payload - 4 * HEADROOM)
            for kind, limit in (("routes", self.settings.max_routes), ("upstreams", self.settings.max_upstreams)):
                overflow = figures.labels.get(kind, (0, 0))[1]
                out += [(index_subject(kind, page["page"]), page)
                        for page in index_pages(figures, kind, limit, overflow, page_bytes)]
        return out

    async def publish_index(self, js: JetStreamContext, figures: WindowFigures) -> None:
        """Store the index pages of every tracked route and upstream, as of ``figures.window_end``."""
        end = iso(figures.window_end)
        pages = self.index_messages(figures)
        # Page 0 says how many pages there are: it is stored last, so a reader never finds it ahead of the others.
        firsts = [item for item in pages if item[0].endswith(".0")]
        rest = [item for item in pages if not item[0].endswith(".0")]
        for batch in (rest, firsts):
            await asyncio.gather(*(self._send(js, subject, page, message_id(subject, end)) for subject, page in batch))

    def cardinality(self, figures: WindowFigures) -> dict[str, Cardinality]:
        """Distinct labels per kind against their limits, for the heartbeat."""
        limits = {"routes": self.settings.max_routes, "upstreams": self.settings.max_upstreams}
        return {kind: Cardinality(labels=labels, limit=limits[kind], overflowRequests=overflow)
                for kind, (labels, overflow) in figures.labels.items()}

    async def publish(self, js: JetStreamContext, figures: WindowFigures, started: float,
                      catching_up: bool = False) -> None:
        """Publish the tick's snapshots and alert changes, then the heartbeat."""
        end = iso(figures.window_end)
        busiest = busiest_routes(figures, self.settings.top_routes)
        sent = await asyncio.gather(*(self._send(js, subject, message, message_id(subject, end))
                                      for subject, message in self.messages(figures)))
        acks = [ack for ack in sent if ack is not None]
        if figures.index is not None:
            await self.publish_index(js, figures)
        await self._alerts(js, figures, [route for route, _ in busiest], end)
        tick_ms = (time.perf_counter() - started) * 1000
        self.published = max(filter(None, [self.published, figures.window_end]))
        if catching_up:
            log.info("publisher[%s]: published missed window %s (%d messages, %d already stored)", self.ident, end,
                     len(acks), sum(1 for ack in acks if ack.duplicate))
            return
        await self.heartbeat(lastTickAt=utc_now_iso(), lastWindowEnd=end, tickMs=round(tick_ms, 1), database="ok",
                             cardinality=self.cardinality(figures))
        self.ticks += 1
        slow = tick_ms > self.settings.tick_seconds * 500
        log.log(logging.INFO if self.ticks == 1 or slow else logging.DEBUG,
                "publisher[%s]: tick %s took %.1f ms (%d messages, %d already stored)", self.ident, end, tick_ms,
                len(acks), sum(1 for ack in acks if ack.duplicate))

    async def _send(self, js: JetStreamContext, subject: str, message: Mapping[str, Any],
                    msg_id: str) -> PubAck | None:
        """Store one message; None when it cannot fit the server's max_payload (said in one error line)."""
        payload = encode(message)
        if len(payload) + HEADROOM > self.max_payload:
            self._too_large(subject, msg_id, len(payload))
            return None
        for attempt in range(1, IN_PROCESS_TRIES + 1):
            try:
                return await js.publish(subject, payload, headers={"Nats-Msg-Id": msg_id}, timeout=2)
            except nats.errors.MaxPayloadError:
                self._too_large(subject, msg_id, len(payload))
                return None
            except APIError as exc:
                # In a cluster, the other publisher's copy may be in the leader's hands right now: ask again,
                # and the answer is a duplicate ack (or, if that copy failed, ours is stored).
                if exc.err_code != IN_PROCESS or attempt == IN_PROCESS_TRIES:
                    raise
                await asyncio.sleep(0.05 * attempt)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _too_large(self, subject: str, msg_id: str, size: int) -> None:
        family = subject.split(".", 1)[0]
        if family in self.oversized:
            return
        self.oversized.add(family)
        log.error("publisher[%s]: not publishing %s: %d bytes, over the NATS server's max_payload of %d bytes (raise"
                  " max_payload; further %s.* messages too large are not logged)", self.ident, msg_id, size,
                  self.max_payload, family)

    async def _alerts(self, js: JetStreamContext, figures: WindowFigures, routes: list[str], end: str) -> None:
        observations = observe(self.rules, figures, routes)
        for obs in observations:
            if obs.firing and obs.key not in self.tracker.active:
                firing = await self._firing(obs.key)  # announced by another publisher already?
                if firing is not None:
                    self.tracker.adopt(obs.key, firing)
        before = dict(self.tracker.active)
        try:
            for key, alert in self.tracker.step(observations, end):
                if alert["state"] == "resolved" and await self._firing(key) is None:
                    continue  # another publisher resolved it already
                await self._send(js, ALERT_SUBJECT_PREFIX + alert["severity"], alert, alert["id"])
                log.info("publisher[%s]: alert %s %s (%s)", self.ident, alert["rule"], alert["state"],
                         alert["route"] or "all traffic")
                if self.alert_state is None:
                    continue  # attach() opens the bucket before any tick publishes
                if alert["state"] == "firing":
                    await self.alert_state.put(key, encode(alert))
                else:
                    await self.alert_state.delete(key)
        except BaseException:
            self.tracker.active = before  # announce again on the next tick
            raise

    async def _firing(self, key: str) -> Alert | None:
        if self.alert_state is None:
            return None
        try:
            entry = await self.alert_state.get(key)
        except NotFoundError:
            return None
        return cast(Alert, json.loads(entry.value)) if entry.value else None

    async def retire(self, js: JetStreamContext, timeout: float) -> None:
        """Remove this publisher's heartbeat at a warm stop, so liveness drops at once."""
        if self.beats is None:
            return
        try:
            await asyncio.wait_for(self.beats.delete(self.ident), timeout)
        except Exception:  # noqa: BLE001 - the TTL removes it anyway
            pass
