"""One client's stream decides where it enters the ring and what it must replay: the frames a client sees."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import gevent
import pytest

from flexgate_stream.errors import NatsUnavailable
from flexgate_stream.fanout import feeds, jetstream_api
from flexgate_stream.fanout.client_stream import ClientStream
from flexgate_stream.fanout.feeds import Feed
from flexgate_stream.fanout.hub import Channel, StreamHub, Subscriber
from flexgate_stream.fanout.jetstream_api import Bounds, StoredMsg
from flexgate_stream.fanout.stream_writer import REST, StreamWriter
from flexgate_stream.settings import Settings

pytestmark = pytest.mark.timeout(10)


class Counters:
    def __init__(self) -> None:
        self.sent_count = self.resets = self.skipped_count = 0

    def sent(self, label: str, count: int = 1) -> None:
        self.sent_count += count

    def reset(self, label: str) -> None:
        self.resets += 1

    def skipped(self, count: int) -> None:
        self.skipped_count += count


class Host:
    """A worker in miniature: a real hub, and JetStream answered by ``answers`` (or unavailable)."""

    def __init__(self, answers: dict[Callable[..., Any], Any] | None = None) -> None:
        self.hub = StreamHub(capacity=8, max_clients=10)
        self.hub.set_connected(True)
        self.settings = Settings(heartbeat_seconds=0.05, retry_ms=1000, client_queue=8)
        self.metrics = Counters()
        self.answers = answers or {}
        self.calls: list[str] = []

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        self.calls.append(fn.__name__)
        if fn not in self.answers:
            raise NatsUnavailable("no NATS in this test")
        answer = self.answers[fn]
        return answer(*args) if callable(answer) else answer

    def attach(self, feed: Feed, channel: Channel, cursor: int, writer: StreamWriter | None = None) -> Subscriber:
        return self.hub.attach(channel, cursor, writer)

    def release(self, feed: Feed, sub: Subscriber) -> None:
        self.hub.detach(sub)


def frames_of(stream: ClientStream, host: Host, count: int) -> list[tuple[str, str]]:
    """The first ``count`` frames (event, data) the client reads, heartbeats left out."""
    seen: list[tuple[str, str]] = []
    for chunk in stream:
        for raw in chunk.decode().split("\n\n"):
            if not raw or raw.startswith(":"):
                continue
            fields = dict(line.split(": ", 1) for line in raw.split("\n") if ": " in line)
            seen.append((fields.get("event", "message"), fields.get("id", "") + "|" + fields.get("data", "")))
        if len(seen) >= count:
            host.hub.close()
            break
    stream.close()
    return seen[:count]


def channel_with(host: Host, feed: Feed, seqs: list[int]) -> Channel:
    channel, _ = host.hub.channel(feed.key, feed.policy)
    for seq in seqs:
        channel.publish(seq, json.dumps({"n": seq}).encode())
    return channel


def test_a_new_snapshot_client_gets_the_newest_snapshot_at_once():
    host = Host()
    channel = channel_with(host, feeds.SUMMARY, [1, 2, 3])
    frames = frames_of(ClientStream(host, feeds.SUMMARY, channel), host, 2)
    assert frames[0][0] == "message" and '"type":"connected"' in frames[0][1]
    assert frames[1] == ("message", '3|{"n": 3}')


@pytest.mark.parametrize(("stored", "newest"), [(3, 3), (9, 9)])  # JetStream's newest is the ring's, or newer
def test_the_hello_and_the_newest_snapshot_leave_in_one_write(stored, newest):
    host = Host({jetstream_api.last_message: StoredMsg(stored, "metrics.summary", b'{"n": %d}' % stored)})
    channel = channel_with(host, feeds.SUMMARY, [1, 2, 3])
    stream = ClientStream(host, feeds.SUMMARY, channel)
    first = next(iter(stream))
    stream.close()
    assert b'"type":"connected"' in first and first.endswith(b'id: %d\ndata: {"n": %d}\n\n' % (newest, newest))
    assert host.calls == ["last_message"]  # asked after the client arrived: nothing stored before it is missed


def test_the_hello_goes_alone_when_jetstream_is_slow_to_give_the_newest_snapshot():
    def slow(stream: str, subject: str) -> StoredMsg:
        gevent.sleep(1.0)
        return StoredMsg(9, "metrics.summary", b'{"n": 9}')

    host = Host({jetstream_api.last_message: slow})
    channel = channel_with(host, feeds.SUMMARY, [1, 2, 3])
    frames = iter(ClientStream(host, feeds.SUMMARY, channel))
    with gevent.Timeout(0.6):
        hello = next(frames)
    assert b'"type":"connected"' in hello and b"id:" not in hello
    assert next(frames).endswith(b'id: 9\ndata: {"n": 9}\n\n')
    frames.close()


def test_a_new_alerts_client_gets_only_what_comes_next():
    host = Host()
    channel = channel_with(host, feeds.ALERTS, [1, 2])
    stream = ClientStream(host, feeds.ALERTS, channel)
    channel.publish(3, b'{"n": 3}')
    assert frames_of(stream, host, 2)[1] == ("message", '3|{"n": 3}')


def test_a_resume_inside_the_ring_gets_what_followed_from_the_ring_alone():
    host = Host()
    channel = channel_with(host, feeds.ALERTS, [4, 5, 6, 7])
    frames = frames_of(ClientStream(host, feeds.ALERTS, channel, last_id=5), host, 3)
    assert [f[1].split("|")[0] for f in frames[1:]] == ["6", "7"]
    assert host.calls == []  # no JetStream read was needed


def test_a_resume_older_than_the_ring_is_replayed_from_jetstream_then_joins_the_ring():
    stored = [StoredMsg(seq, "alerts.warning", json.dumps({"n": seq}).encode()) for seq in (3, 4, 5)]
    host = Host({jetstream_api.bounds: Bounds(1, 7),
                 jetstream_api.read_after: lambda stream, subject, after, size, upto:
                 [m for m in stored if m.seq > after and (upto is None or m.seq < upto)]})
    channel = channel_with(host, feeds.ALERTS, [6, 7])
    frames = frames_of(ClientStream(host, feeds.ALERTS, channel, last_id=2), host, 6)
    assert [f[1].split("|")[0] for f in frames[1:]] == ["3", "4", "5", "6", "7"]


def test_a_resume_older_than_the_stream_keeps_is_told_to_reset_and_gets_the_newest_snapshot():
    host = Host({jetstream_api.bounds: Bounds(50, 60)})
    channel = channel_with(host, feeds.SUMMARY, [59, 60])
    frames = frames_of(ClientStream(host, feeds.SUMMARY, channel, last_id=10), host, 3)
    assert frames[1][0] == "reset" and "older than the stream keeps" in frames[1][1]
    assert frames[2] == ("message", '60|{"n": 60}')
    assert host.metrics.resets == 1


def test_a_resume_newer_than_the_stream_holds_is_reset():
    host = Host({jetstream_api.bounds: Bounds(1, 5)})
    channel = channel_with(host, feeds.ALERTS, [4, 5])
    frames = frames_of(ClientStream(host, feeds.ALERTS, channel, last_id=99), host, 2)
    assert frames[1][0] == "reset" and "newer than anything the stream holds" in frames[1][1]


def test_a_resume_at_the_newest_sequence_with_an_empty_ring_waits_for_the_next_message():
    host = Host()
    channel, _ = host.hub.channel(feeds.ALERTS.key, feeds.ALERTS.policy)
    channel.set_floor(9)
    stream = ClientStream(host, feeds.ALERTS, channel, last_id=9)
    channel.publish(10, b'{"n": 10}')
    assert frames_of(stream, host, 2)[1] == ("message", '10|{"n": 10}')
    assert host.calls == []


def test_since_replays_history_from_the_first_message_at_that_time():
    stored = [StoredMsg(seq, "alerts.warning", json.dumps({"n": seq}).encode()) for seq in (2, 3)]
    host = Host({jetstream_api.first_since: stored[0],
                 jetstream_api.read_after: lambda stream, subject, after, size, upto:
                 [m for m in stored if m.seq > after and (upto is None or m.seq < upto)]})
    channel = channel_with(host, feeds.ALERTS, [4])
    frames = frames_of(ClientStream(host, feeds.ALERTS, channel, since=timedelta(hours=1)), host, 4)
    assert [f[1].split("|")[0] for f in frames[1:]] == ["2", "3", "4"]


def test_a_client_is_registered_when_admitted_and_released_even_if_never_read():
    host = Host()
    channel = channel_with(host, feeds.SUMMARY, [1])
    stream = ClientStream(host, feeds.SUMMARY, channel)
    assert host.hub.clients == 1
    stream.close()
    stream.close()
    assert host.hub.clients == 0


def test_a_direct_stream_rests_instead_of_parking_and_goes_on_where_it_rested_when_resumed():
    from gevent import socket as gsocket

    host = Host()
    channel = channel_with(host, feeds.SUMMARY, [1])
    ours, theirs = gsocket.socketpair()
    stream = ClientStream(host, feeds.SUMMARY, channel, writer=StreamWriter(ours, chunked=True))
    assert stream.allow_rest()
    frames = iter(stream)
    opening = next(frames)  # the hello and the newest snapshot, in one write
    assert opening.startswith(b"retry: ") and b'"type":"connected"' in opening and b"\n\nid: 1\n" in opening
    assert next(frames) is REST  # nothing to write: the server may end its greenlet
    held = stream.writer.hold()  # the server hands the connection to the writer, on a duplicate of its socket
    resumed: list[bool] = []
    stream.rest(lambda: resumed.append(True))
    channel.publish(2, b'{"n": 2}')  # written by the channel, straight to the socket
    assert theirs.recv(200) == b'16\r\nid: 2\ndata: {"n": 2}\n\n\r\n' and resumed == []
    host.hub.set_connected(False)  # what the stream must write itself
    assert resumed == [True]
    assert b'"connected":false' in next(frames)
    assert next(frames) is REST
    stream.close()
    for sock in (held, ours, theirs):
        sock.close()


def test_a_live_frame_the_stream_writes_itself_is_tallied_once_its_write_is_done():
    import time

    from flexgate_stream.fanout.delays import DelayTally, last_minute

    host = Host()
    channel = channel_with(host, feeds.SUMMARY, [])
    channel.written = DelayTally()
    frames = iter(ClientStream(host, feeds.SUMMARY, channel))  # no socket of its own: it writes every frame
    assert b'"type":"connected"' in next(frames)
    stored = time.time() - 0.25
    gevent.spawn_later(0.01, channel.publish, 2, b'{"n": 2}', stored)
    assert next(frames).startswith(b"id: 2\n")
    assert last_minute([channel.written], time.time())["count"] == 0  # not yet: the server is writing it
    next(frames)  # the server wrote it and asks for more (a heartbeat follows)
    found = last_minute([channel.written], time.time())
    assert found["count"] == 1 and found["p50"] == pytest.approx(0.25, rel=0.2)
    frames.close()


def test_a_stream_without_a_direct_socket_does_not_rest():
    host = Host()
    channel = channel_with(host, feeds.SUMMARY, [1])
    stream = ClientStream(host, feeds.SUMMARY, channel)
    assert not stream.allow_rest()
    stream.close()
