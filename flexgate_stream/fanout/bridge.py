"""The asyncio/gevent boundary: one NATS connection per gunicorn worker, feeding the StreamHub.

This is the only module that imports both asyncio and gevent.

Choice: nats-py runs on an asyncio event loop driven by one greenlet of the monkey-patched worker
(not by a native thread). Why:

- one OS thread: the hub, the bridge and the request greenlets never run at the same time, so a
  message reaches the hub by a plain method call and the hub needs no locks;
- the loop's selector is gevent's (``selectors`` is patched), so the loop parks cooperatively, and
  name resolution goes through gevent's resolver, so ``localhost`` in NATS_SERVERS works;
- a request greenlet calls into the loop with ``loop.call_soon_threadsafe`` (which wakes the
  selector through asyncio's self-pipe) and waits for a libev async watcher: it blocks only itself;
- the loop's turns and its wake-ups are not queued behind the other runnable greenlets (EagerSelector):
  in a storm of openings that queue takes seconds to go round.

The cost: time spent in nats-py's parser is taken from serving requests; at one snapshot per tick
per followed subject that is negligible next to writing the frames.

Each followed subject gets its own ordered consumer (ephemeral, memory-backed, never shared by two
workers) that starts at the subject's newest message, so every worker's clients see every message in
order. The connection is kept by flexgate_stream.nats_link (the publisher's routine too: backoff of at
most 2 s, one log line per state change); on each new connection every consumer is re-created from the
sequence after the last one its channel received, so a NATS restart leaves no gap. The same re-creation
repairs a consumer that is stuck while NATS stays connected (see watchdog.py).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import gevent
import nats.errors
from nats.aio.client import Client as NATS
from nats.js.api import ConsumerConfig, DeliverPolicy

from flexgate_stream.errors import NatsUnavailable
from flexgate_stream.fanout import jetstream_api
from flexgate_stream.fanout.feeds import Feed
from flexgate_stream.fanout.hub import Channel, Policy, StreamHub
from flexgate_stream.fanout.loop_wait import Answer, EagerSelector
from flexgate_stream.fanout.watchdog import Watchdog
from flexgate_stream.nats_link import NatsLink
from flexgate_stream.settings import Settings

log = logging.getLogger(__name__)

T = TypeVar("T")

CONSUMER_HEARTBEAT = 2.0  # an ordered consumer missing two heartbeats is re-created by nats-py
RECONCILE_SECONDS = 2.0  # how often feeds that could not be followed (stream missing) are retried
STUCK_SECONDS = 3 * CONSUMER_HEARTBEAT  # behind the stream this long without moving: re-create the consumer


class Bridge:
    """Owns the worker's NATS connection and one ordered consumer per followed feed."""

    def __init__(self, settings: Settings, hub: StreamHub, on_reconnect: Callable[[], None] | None = None) -> None:
        self.settings = settings
        self.hub = hub
        self.on_reconnect = on_reconnect
        self.name = f"bridge[{os.getpid()}]"
        self.reconnects = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._link: NatsLink | None = None
        self._greenlet: gevent.Greenlet | None = None
        self._feeds: dict[str, tuple[Feed, Channel]] = {}
        self._subs: dict[str, Any] = {}
        self._busy: set[str] = set()
        self._failing: set[str] = set()
        self._watchdog = Watchdog(STUCK_SECONDS)
        self._resuming: set[str] = set()
        self._calls: set[asyncio.Task[Any]] = set()  # calls in flight, failed at once when the connection is lost
        self._stopping = False

    @property
    def connected(self) -> bool:
        return self._nc is not None

    @property
    def _nc(self) -> NATS | None:
        """The connection while it is up."""
        return self._link.nc if self._link is not None else None

    def start(self) -> None:
        """Run the asyncio loop in a greenlet of this (gevent-patched) process."""
        if self._greenlet is None:
            self.name = f"bridge[{os.getpid()}]"
            opts = {**self.settings.nats_connect_options, "name": f"flexgate-web-{os.getpid()}"}
            self._link = NatsLink(opts, self.name, log)
            self._greenlet = gevent.spawn(self._run)

    def stop(self, timeout: float = 2.0) -> None:
        """Close the connection and end the loop, waiting at most ``timeout`` seconds."""
        self._stopping = True
        loop, link = self._loop, self._link
        if link is not None:
            link.stopping = True  # before the loop runs again: a connection closing now is no outage
            if loop is not None and not loop.is_closed():
                loop.call_soon_threadsafe(link.stop)
        if self._greenlet is not None:
            self._greenlet.join(timeout)

    def follow(self, feed: Feed, channel: Channel) -> None:
        """Feed ``channel`` from ``feed``'s subject, now and after every reconnect."""
        self._feeds[feed.key] = (feed, channel)
        self._resuming.discard(feed.key)
        self._submit(self._follow, feed.key)

    def unfollow(self, key: str) -> None:
        """Stop feeding the channel ``key``."""
        self._feeds.pop(key, None)
        self._submit(self._unfollow, key)

    def call(self, fn: Callable[..., Coroutine[Any, Any, T]], *args: Any,
             timeout: float = jetstream_api.TIMEOUT + 1) -> T:
        """Run ``fn(nc, *args)`` on the loop and wait for it in this greenlet; NatsUnavailable when it cannot."""
        loop, nc = self._loop, self._nc
        if loop is None or nc is None or not nc.is_connected:
            raise NatsUnavailable("NATS is not connected; the service keeps reconnecting.")
        answer: Answer[T] = Answer()

        def finished(task: asyncio.Task[T]) -> None:
            self._calls.discard(task)
            if task.cancelled():
                answer.fail(NatsUnavailable("the NATS connection closed before it answered."))
            elif (exc := task.exception()) is not None:
                answer.fail(exc)
            else:
                answer.set(task.result())

        started: list[asyncio.Task[T]] = []

        def submit() -> None:
            task = loop.create_task(fn(nc, *args))
            started.append(task)
            self._calls.add(task)
            task.add_done_callback(finished)

        loop.call_soon_threadsafe(submit)
        try:
            return answer.get(timeout)
        except gevent.Timeout:
            if not loop.is_closed():  # nobody waits for it any more: end it now, not at its own request timeout
                loop.call_soon_threadsafe(_cancel_all, started)
            raise NatsUnavailable(f"NATS did not answer within {timeout:g} s.") from None
        except (TimeoutError, nats.errors.Error) as exc:
            raise NatsUnavailable(f"NATS request failed: {exc or type(exc).__name__}.") from None

    # -- inside the loop ---------------------------------------------------------------------

    def _submit(self, fn: Callable[[str], Coroutine[Any, Any, None]], key: str) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(lambda: loop.create_task(fn(key)))

    def _run(self) -> None:
        loop = self._loop = asyncio.SelectorEventLoop(EagerSelector())
        try:
            loop.run_until_complete(self._main())
        except Exception:
            log.error("%s: the NATS loop ended on an error", self.name, exc_info=True)
        finally:
            loop.run_until_complete(_cancel_others())
            loop.close()

    async def _main(self) -> None:
        if self._link is not None and not self._stopping:
            await self._link.run(self._serve)

    async def _serve(self, nc: NATS) -> None:
        """Follow every feed on this new connection; cancelled when it is lost or the bridge stops."""
        if self._link is not None and self._link.connections > 1:
            self.reconnects += 1
            if self.on_reconnect:
                self.on_reconnect()
        try:
            self.hub.set_connected(True)  # before following, so clients hear "connected" before new frames
            await self._reconcile()
            while True:
                await asyncio.sleep(RECONCILE_SECONDS)
                await self._reconcile()
                await self._repair_stuck(nc)
        finally:
            self._subs.clear()
            self.hub.set_connected(False)
            # nats-py leaves a request on a lost connection waiting for its own timeout: fail it now, so a
            # stream opening (or /api/stream/stats) goes on at once rather than seconds later.
            _cancel_all(list(self._calls))

    async def _reconcile(self) -> None:
        for key in list(self._feeds):
            await self._follow(key)

    async def _repair_stuck(self, nc: NATS) -> None:
        """Re-create each consumer that left its channel behind the stream (nats-py did not notice)."""
        followed = [(key, *self._feeds[key]) for key in self._subs if key in self._feeds and key not in self._busy]
        try:
            stuck = await self._watchdog.stuck(nc, followed)
        except Exception as exc:
            log.debug("%s: cannot check the followed subjects (%s)", self.name, exc or type(exc).__name__)
            return
        for key, newer in stuck:
            if key not in self._feeds or key not in self._subs:
                continue
            feed, channel = self._feeds[key]
            log.warning("%s: %s stuck at sequence %d while NATS holds %d; re-creating its consumer",
                        self.name, feed.subject, channel.last_seq, newer)
            self._watchdog.forget(key)
            self._resuming.add(key)  # from channel.last_seq + 1 even when that is 0, until a consumer is made
            await self._unfollow(key)
            await self._follow(key)

    async def _follow(self, key: str) -> None:
        nc = self._nc
        if nc is None or key in self._subs or key in self._busy or key not in self._feeds:
            return
        feed, channel = self._feeds[key]
        self._busy.add(key)
        try:
            resume = bool(channel.last_seq) or key in self._resuming
            start = channel.last_seq + 1 if resume else await self._first_seq(nc, feed)
            channel.set_floor(start - 1)
            sub = await nc.jetstream().subscribe(
                feed.subject, stream=feed.stream, cb=_deliver_to(channel), ordered_consumer=True,
                idle_heartbeat=CONSUMER_HEARTBEAT, deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                config=ConsumerConfig(opt_start_seq=start))
        except Exception as exc:
            if key not in self._failing:
                self._failing.add(key)
                log.warning("%s: cannot follow %s yet (%s); retrying every %g s", self.name, feed.subject,
                            exc or type(exc).__name__, RECONCILE_SECONDS)
            return
        finally:
            self._busy.discard(key)
        if key in self._failing:
            self._failing.discard(key)
            log.info("%s: following %s from sequence %d", self.name, feed.subject, start)
        if self._feeds.get(key, (None, None))[1] is channel and self._nc is nc:
            self._subs[key] = sub
            self._resuming.discard(key)
        else:
            await _quietly(sub.unsubscribe())

    async def _first_seq(self, nc: NATS, feed: Feed) -> int:
        """Where a new consumer starts: a snapshot feed at its newest message, alerts after the last one."""
        if feed.policy is Policy.LATEST:
            newest = await jetstream_api.last_message(nc, feed.stream, feed.subject)
            if newest is not None:
                return newest.seq
        return (await jetstream_api.bounds(nc, feed.stream)).last + 1

    async def _unfollow(self, key: str) -> None:
        sub = self._subs.pop(key, None)
        if key not in self._feeds:
            self._watchdog.forget(key)
            self._resuming.discard(key)
        nc = self._nc
        if sub is not None:
            await _quietly(sub.unsubscribe())
            if nc is not None:  # at once, rather than when the server notices the interest is gone
                await _quietly(nc.jetstream().delete_consumer(sub._stream, sub._consumer))


def _deliver_to(channel: Channel) -> Callable[[Any], Awaitable[None]]:
    async def deliver(msg: Any) -> None:
        meta = msg.metadata  # parsed from the reply subject: the stream sequence and when JetStream stored it
        channel.publish(meta.sequence.stream, msg.data, meta.timestamp.timestamp())

    return deliver


def _cancel_all(tasks: list[asyncio.Task[Any]]) -> None:
    """Cancel each of ``tasks``."""
    for task in tasks:
        task.cancel()


async def _cancel_others() -> None:
    """Cancel what is left on the loop (subscription tasks, timers) so it closes cleanly."""
    pending = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)


async def _quietly(awaitable: Awaitable[Any]) -> None:
    try:
        await asyncio.wait_for(awaitable, 1.0)
    except Exception:
        pass
