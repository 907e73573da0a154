"""The Flask extension: one worker's StreamService (hub, bridge, metrics), its accessor, and admission of streams."""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Callable, Coroutine
from datetime import timedelta
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

from flask import Flask, current_app, has_request_context, request

from flexgate_stream.errors import AtCapacity, NatsUnavailable
from flexgate_stream.fanout import feeds
from flexgate_stream.fanout.channel import Channel, Subscriber
from flexgate_stream.fanout.client_stream import ClientStream
from flexgate_stream.fanout.feeds import Feed
from flexgate_stream.fanout.group_index import IndexReader
from flexgate_stream.fanout.hub import StreamHub
from flexgate_stream.fanout.stream_writer import StreamWriter, bound_writes
from flexgate_stream.settings import Settings
from flexgate_stream.web.prometheus import WebMetrics

if TYPE_CHECKING:
    from flexgate_stream.fanout.bridge import Bridge

log = logging.getLogger(__name__)


class ThisProcess:
    """This process's id and its text, read once (``os.getpid`` is a system call; the service asked it several
    times a stream's opening) and again in a forked child."""

    pid = os.getpid()
    text = str(pid)

    @classmethod
    def forked(cls) -> None:
        cls.pid = os.getpid()
        cls.text = str(cls.pid)


os.register_at_fork(after_in_child=ThisProcess.forked)

T = TypeVar("T")
EXTENSION = "flexgate_stream"
# What /readyz and /api/stream/stats wait for JetStream: a probe with a 1 s timeout gets an answer (503) even
# while NATS hangs, before the bridge's pings declare the connection lost.
PROBE_TIMEOUT = 0.8


class StreamService:
    """What the stream views share in one worker process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.hub = StreamHub(settings.client_queue, settings.max_clients)
        self.metrics = WebMetrics(settings)
        self.bridge: Bridge | None = None  # imported only in a gevent worker: see start()
        self.index = IndexReader(self.call)
        self._pid: int | None = None

    @property
    def started(self) -> bool:
        return self._pid == ThisProcess.pid

    def start(self) -> None:
        """Start the bridge in this process (a gevent-patched gunicorn worker); idempotent."""
        if self.started:
            return
        from gevent import monkey

        if not monkey.is_module_patched("socket"):
            raise NatsUnavailable("the stream service runs in gunicorn's gevent workers (see conf/gunicorn.conf.py).")
        from flexgate_stream.fanout.bridge import Bridge

        self._pid = ThisProcess.pid
        self.bridge = Bridge(self.settings, self.hub, on_reconnect=self.metrics.reconnects.inc)
        self.bridge.start()
        for feed in (feeds.SUMMARY, feeds.ALERTS):
            self.open(feed)
        self.metrics.watch(self.hub, lambda: self.summary)

    def shutdown(self, grace: float = 2.0) -> None:
        """Ask every stream to send its last frame and end; after ``grace`` seconds cut the ones still open: their
        clients stalled (stopped reading), so their last write never finished."""
        self.hub.close()
        import gevent

        gevent.spawn_later(grace, self._cut_stalled)

    def _cut_stalled(self) -> None:
        stalled = [sub.writer for sub in self.hub.subscribers if sub.writer.sock is not None]
        if stalled:
            log.warning("web[%s]: cutting %d streams whose clients stopped reading", os.getpid(), len(stalled))
        for writer in stalled:
            writer.cut()

    def stop(self, timeout: float = 1.0) -> None:
        """End every stream and close the NATS connection."""
        self.hub.close()
        if self.bridge is not None and self.started:
            self.bridge.stop(timeout)

    @property
    def summary(self) -> Channel | None:
        return self.hub.channels.get(feeds.SUMMARY.key)

    def open(self, feed: Feed) -> Channel:
        """The channel of ``feed``, followed from NATS when it is new; 503 when it would be one per-route or
        per-upstream feed (one JetStream consumer each) more than FLEXGATE_MAX_ROUTE_FEEDS."""
        if not feed.shared and feed.key not in self.hub.channels and self.route_feeds >= self.settings.max_route_feeds:
            raise AtCapacity(f"this server process already follows its maximum of {self.settings.max_route_feeds} "
                             "routes and upstreams; retry later or stream the summary.", headers={"Retry-After": "30"})
        channel, created = self.hub.channel(feed.key, feed.policy)
        if created:
            # Counted once per frame, not per client.
            channel.on_delivered = partial(self.metrics.delivered, feed.label, feed.key == feeds.SUMMARY.key)
            channel.written = self.metrics.written[feed.label]
            if self.bridge is not None:
                self.bridge.follow(feed, channel)
        return channel

    def admit(self, feed: Feed, *, last_id: int | None = None, since: timedelta | None = None,
              sock: Any = None) -> ClientStream:
        """A new client stream of ``feed``, or AtCapacity (503, Retry-After) while full or shutting down."""
        if self.hub.full() or self.hub.closing:
            wait = {"Retry-After": str(max(1, round(self.settings.retry_ms / 1000 * random.uniform(1, 3))))}
            if self.hub.closing:
                raise AtCapacity("this server process is shutting down; retry shortly.", headers=wait)
            raise AtCapacity(f"this server process already serves its maximum of {self.hub.max_clients} streams; "
                             "retry later.", headers=wait)
        if sock is not None:
            bound_writes(sock, self.settings.send_timeout_seconds, self.settings.send_buffer_bytes)
        writer = StreamWriter(sock, chunked=_writes_chunks(sock))
        return ClientStream(self, feed, self.open(feed), last_id=last_id, since=since, writer=writer)

    @property
    def route_feeds(self) -> int:
        """Per-route and per-upstream feeds followed now (each holds a JetStream consumer)."""
        return sum(1 for key in self.hub.channels if key.startswith(feeds.GROUP_KEY_PREFIXES))

    def attach(self, feed: Feed, channel: Channel, cursor: int, writer: StreamWriter | None = None) -> Subscriber:
        """Register one client stream (and its socket's writer, so shutdown can cut it if it stalls)."""
        self.metrics.opened(feed.label)
        return self.hub.attach(channel, cursor, writer)

    def release(self, feed: Feed, sub: Subscriber) -> None:
        """Forget one client stream; a per-route or per-upstream feed nobody reads any more is dropped."""
        self.metrics.closed(feed.label)
        if self.hub.detach(sub) and not feed.shared:
            self.hub.drop(feed.key)
            if self.bridge is not None:
                self.bridge.unfollow(feed.key)

    def call(self, fn: Callable[..., Coroutine[Any, Any, T]], *args: Any, timeout: float | None = None) -> T:
        """Run a JetStream coroutine from ``flexgate_stream.fanout.jetstream_api`` and wait for its result (at most
        ``timeout`` seconds, else the bridge's default)."""
        if self.bridge is None or not self.started:
            raise NatsUnavailable("the stream service is not running in this process.")
        if timeout is None:
            return self.bridge.call(fn, *args)
        return self.bridge.call(fn, *args, timeout=timeout)

    @property
    def connected(self) -> bool:
        return self.started and self.bridge is not None and self.bridge.connected


def _writes_chunks(sock: Any) -> bool:
    """True when gunicorn will send this response with chunked transfer-encoding on a plain (not TLS) gevent
    socket, so the hub may write pre-encoded chunks to it directly."""
    if sock is None or not has_request_context() or hasattr(sock, "getpeercert") or not hasattr(sock, "_sock"):
        return False
    return request.method == "GET" and request.environ.get("SERVER_PROTOCOL") == "HTTP/1.1"


def init_app(app: Flask, settings: Settings) -> StreamService:
    """Attach a StreamService to ``app``; it starts in the worker (post_worker_init) or on first use."""
    service = StreamService(settings)
    app.extensions[EXTENSION] = service
    return service


def service_of(app: Flask) -> StreamService:
    """The StreamService attached to ``app`` (not started here)."""
    service: StreamService = app.extensions[EXTENSION]
    return service


def current_service() -> StreamService:
    """The StreamService of the current app, started in this process if it was not yet."""
    service = service_of(current_app)
    service.start()
    return service
