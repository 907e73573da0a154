"""A gevent process with one Bridge and StreamHub, as a gunicorn worker has: run by test_bridge.py.

Prints one JSON line per event: {"connected": bool} on each NATS state change, {"seq": n, "key": k} for
every frame a followed channel receives, {"bounds": [first, last]} after a JetStream call, and
{"call_failed": why} when a request left waiting (nobody answers it, for a minute) fails; then exits when
stdin closes.
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import json  # noqa: E402
import sys  # noqa: E402

import gevent  # noqa: E402
from gevent.fileobject import FileObject  # noqa: E402

from flexgate_stream.errors import NatsUnavailable  # noqa: E402
from flexgate_stream.fanout import feeds, jetstream_api  # noqa: E402
from flexgate_stream.fanout.bridge import Bridge  # noqa: E402
from flexgate_stream.fanout.hub import Channel, StreamHub  # noqa: E402
from flexgate_stream.messages import METRICS_STREAM  # noqa: E402
from flexgate_stream.settings import Settings  # noqa: E402


def say(**fields: object) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def watch(channel: Channel) -> None:
    sub = hub.attach(channel, channel.next_index)
    while True:
        for frame in sub.take():
            say(seq=frame.seq, key=channel.key)
        channel.wait(1.0)


UNANSWERED = "flexgate.test.unanswered"


async def listen(nc: object) -> None:
    await nc.subscribe(UNANSWERED)  # type: ignore[attr-defined]  # interest, so the request is not refused


async def ask(nc: object) -> None:
    await nc.request(UNANSWERED, b"", timeout=60)  # type: ignore[attr-defined]


def wait_unanswered() -> None:
    """A call left waiting on the first connection, as a stream's JetStream lookup is when NATS dies."""
    bridge.call(listen)
    try:
        bridge.call(ask, timeout=60)
    except NatsUnavailable as exc:
        say(call_failed=str(exc))


def watch_connection() -> None:
    told = False  # the hub starts disconnected: report changes from there
    waiting = None
    while True:
        if hub.connected != told:
            told = hub.connected
            say(connected=told)
            if told:
                say(bounds=list(bridge.call(jetstream_api.bounds, METRICS_STREAM)))
                waiting = waiting or gevent.spawn(wait_unanswered)
        gevent.sleep(0.05)


settings = Settings(nats_servers=(sys.argv[1],))
hub = StreamHub(16, 100)
bridge = Bridge(settings, hub)
bridge.start()
for feed in (feeds.SUMMARY, feeds.ALERTS):
    channel, _ = hub.channel(feed.key, feed.policy)
    bridge.follow(feed, channel)
    gevent.spawn(watch, channel)
gevent.spawn(watch_connection)
FileObject(sys.stdin, "r").read()  # until the test closes stdin
bridge.stop()
