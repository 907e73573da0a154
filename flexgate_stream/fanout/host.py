"""What one client stream needs from the worker that serves it (web.extension.StreamService), as protocols."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, Protocol, TypeVar

from flexgate_stream.fanout.channel import Channel, Subscriber
from flexgate_stream.fanout.feeds import Feed
from flexgate_stream.fanout.hub import StreamHub
from flexgate_stream.fanout.stream_writer import StreamWriter
from flexgate_stream.settings import Settings

T = TypeVar("T")


class StreamCounters(Protocol):
    """What a client stream counts (web.prometheus.WebMetrics)."""

    def sent(self, label: str, count: int = 1) -> None: ...

    def reset(self, label: str) -> None: ...

    def skipped(self, count: int) -> None: ...


class StreamHost(Protocol):
    """The worker serving a client stream: its hub, settings, counters and JetStream, and the stream's registration."""

    @property
    def hub(self) -> StreamHub: ...

    @property
    def settings(self) -> Settings: ...

    @property
    def metrics(self) -> StreamCounters: ...

    def call(self, fn: Callable[..., Coroutine[Any, Any, T]], *args: Any) -> T: ...

    def attach(self, feed: Feed, channel: Channel, cursor: int, writer: StreamWriter | None = None) -> Subscriber: ...

    def release(self, feed: Feed, sub: Subscriber) -> None: ...
