"""StreamHub: one encoding per message, bounded rings, and the overrun policy of each channel kind."""

from __future__ import annotations

import time

import gevent
import gevent.event
import pytest

from flexgate_stream.fanout.hub import Overrun, Policy, StreamHub


def hub_with(policy: Policy, capacity: int = 4):
    hub = StreamHub(capacity, max_clients=3)
    channel, created = hub.channel("c", policy)
    assert created
    return hub, channel


def test_each_message_is_encoded_once_and_shared_by_every_client():
    hub, channel = hub_with(Policy.LATEST)
    a = hub.attach(channel, channel.next_index)
    b = hub.attach(channel, channel.next_index)
    channel.publish(1, b'{"n":1}')
    fa, fb = a.take(), b.take()
    assert fa[0].sse == b'id: 1\ndata: {"n":1}\n\n'
    assert fa[0].sse is fb[0].sse


def test_clients_get_every_frame_in_order_when_keeping_up():
    hub, channel = hub_with(Policy.LATEST)
    sub = hub.attach(channel, channel.next_index)
    for seq in (3, 4, 5):
        channel.publish(seq, b"x")
    assert [f.seq for f in sub.take()] == [3, 4, 5]
    assert sub.take() == []


def test_redeliveries_and_older_sequences_are_dropped():
    hub, channel = hub_with(Policy.LATEST)
    channel.set_floor(10)
    assert channel.publish(9, b"old") is None
    assert channel.publish(11, b"new") is not None
    assert channel.publish(11, b"again") is None


def test_ring_is_bounded():
    hub, channel = hub_with(Policy.LATEST, capacity=4)
    for seq in range(1, 101):
        channel.publish(seq, b"x")
    assert len(channel.ring) == 4 and channel.latest.seq == 100


def test_slow_snapshot_client_skips_to_the_newest_and_counts_what_it_skipped():
    hub, channel = hub_with(Policy.LATEST, capacity=4)
    slow = hub.attach(channel, channel.next_index)
    for seq in range(1, 11):
        channel.publish(seq, b"x")
    assert [f.seq for f in slow.take()] == [10]
    assert slow.skipped == 9
    channel.publish(11, b"x")
    assert [f.seq for f in slow.take()] == [11]


def test_slow_alerts_client_is_never_skipped_silently():
    hub, channel = hub_with(Policy.EVERY, capacity=4)
    slow = hub.attach(channel, channel.next_index)
    channel.publish(1, b"x")
    assert [f.seq for f in slow.take()] == [1]
    for seq in range(2, 8):
        channel.publish(seq, b"x")
    with pytest.raises(Overrun) as overrun:
        slow.take()
    assert overrun.value.last_seq == 1  # where the client resumes (Last-Event-ID) from JetStream


def test_resume_point_inside_the_ring():
    hub, channel = hub_with(Policy.LATEST)
    for seq in (5, 7, 9):
        channel.publish(seq, b"x")
    assert channel.index_after(7) == channel.ring[2].index
    assert channel.index_after(9) == channel.next_index
    assert channel.index_after(4) is None  # the ring starts after it: JetStream must fill in


def test_client_cap_and_idle_channel_drop():
    hub, channel = hub_with(Policy.LATEST)
    subs = [hub.attach(channel, 0) for _ in range(3)]
    assert hub.full()
    assert [hub.detach(s) for s in subs] == [False, False, True]
    hub.drop("c")
    assert "c" not in hub.channels and not hub.full()


def test_waiting_reader_wakes_on_publish_status_and_close():
    hub, channel = hub_with(Policy.LATEST)
    woke = []

    def reader():
        channel.wait(5)
        woke.append(True)

    for trigger in (lambda: channel.publish(1, b"x"), lambda: hub.set_connected(True), hub.close):
        woke.clear()
        g = gevent.spawn(reader)
        gevent.sleep(0)
        trigger()
        g.join(1)
        assert woke == [True]
    assert hub.connected and hub.closing


def test_stalled_counts_clients_whose_write_has_been_pending_too_long():
    hub, channel = hub_with(Policy.LATEST)
    reading, stuck, idle = (hub.attach(channel, 0) for _ in range(3))
    reading.writer.writing_since = time.monotonic()
    stuck.writer.writing_since = time.monotonic() - 10
    assert hub.stalled(2.0) == 1 and hub.clients == 3
    hub.detach(stuck)
    assert hub.stalled(2.0) == 0 and hub.clients == 2


def _full_socketpair():
    """A non-blocking socket whose buffers are full (its peer reads nothing), and that peer."""
    import socket

    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    try:
        while True:
            ours.send(b"." * 65536)
    except BlockingIOError:
        pass
    return ours, theirs


def _parked(sub):
    woke = []
    g = gevent.spawn(lambda: (sub.park(5), woke.append(True)))
    gevent.sleep(0)
    return g, woke


def test_publish_writes_the_chunk_to_a_parked_client_with_room_without_waking_it():
    import socket

    hub, channel = hub_with(Policy.LATEST)
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    sub = hub.attach(channel, channel.next_index)
    sub.writer.own(ours)
    g, woke = _parked(sub)
    channel.publish(1, b"x")
    channel.publish(1, b"again")  # a redelivery is neither written nor wakes anyone
    assert theirs.recv(100) == b"F\r\nid: 1\ndata: x\n\n\r\n"  # one HTTP/1.1 chunk: size, frame, CRLF
    assert sub.cursor == channel.next_index and sub.last_seq == 1 and sub.take() == []
    gevent.sleep(0.01)
    assert woke == []
    hub.close()  # a state change still wakes every parked client
    g.join(1)
    assert woke == [True]
    ours.close()
    theirs.close()


def test_publish_wakes_a_parked_client_whose_socket_is_full_and_leaves_the_frame_to_it():
    hub, channel = hub_with(Policy.LATEST)
    ours, theirs = _full_socketpair()
    sub = hub.attach(channel, channel.next_index)
    sub.writer.own(ours)
    g, woke = _parked(sub)
    channel.publish(1, b"x")
    g.join(1)
    assert woke == [True] and sub.writer.pending is None
    assert [f.seq for f in sub.take()] == [1]  # written by the client's own response, which may block
    ours.close()
    theirs.close()


def test_a_parked_client_without_a_socket_is_woken_for_each_frame():
    hub, channel = hub_with(Policy.LATEST)
    sub = hub.attach(channel, channel.next_index)
    g, woke = _parked(sub)
    channel.publish(1, b"x")
    g.join(1)
    assert woke == [True] and [f.seq for f in sub.take()] == [1]


def test_a_chunk_the_socket_takes_only_in_part_is_left_to_the_client_to_finish_first():
    import socket

    listener = socket.create_server(("127.0.0.1", 0))
    ours = socket.create_connection(listener.getsockname())
    theirs, _ = listener.accept()
    listener.close()
    ours.setblocking(False)
    hub, channel = hub_with(Policy.LATEST)
    sub = hub.attach(channel, channel.next_index)
    sub.writer.own(ours)
    g, woke = _parked(sub)
    frame = channel.publish(1, b"x" * 8_000_000)  # more than any loopback socket takes at once
    g.join(1)
    assert woke == [True]
    pending = sub.writer.pending
    assert pending and frame.chunk.endswith(pending) and len(pending) < len(frame.chunk)
    assert sub.writer.writing_since is not None  # counted as a pending write (stalled, if it stays)
    assert sub.last_seq == 1 and sub.take() == []  # the frame is the pending write's, not to be sent again
    ours.close()
    theirs.close()


def test_only_clients_the_pass_wrote_whole_are_tallied_written_and_a_part_write_keeps_its_stored_time():
    import socket

    from flexgate_stream.fanout.delays import DelayTally, last_minute

    hub, channel = hub_with(Policy.LATEST)
    big, _ = hub.channel("big", Policy.LATEST)
    channel.written = big.written = DelayTally()
    whole, whole_peer = socket.socketpair()
    whole.setblocking(False)
    full, full_peer = _full_socketpair()
    listener = socket.create_server(("127.0.0.1", 0))
    part = socket.create_connection(listener.getsockname())
    part_peer, _ = listener.accept()
    listener.close()
    part.setblocking(False)
    subs = {}
    for name, sock, where in (("whole", whole, channel), ("full", full, channel), ("part", part, big)):
        subs[name] = hub.attach(where, where.next_index)
        subs[name].writer.own(sock)
        subs[name].rest(None, lambda: None)
    stored = time.time() - 0.3
    channel.publish(1, b"x", stored)
    big.publish(1, b"x" * 8_000_000, stored)  # more than the TCP socket takes at once
    part = subs["part"].writer
    assert part.pending and part.pending_stored == stored  # its own greenlet finishes, and tallies
    found = last_minute([channel.written], time.time())
    assert found["count"] == 1 and found["p50"] == pytest.approx(0.3, rel=0.2)  # the whole write alone
    for sock in (whole, whole_peer, part, part_peer, full, full_peer):
        sock.close()


@pytest.mark.timeout(10)
def test_a_resting_client_is_written_to_without_being_resumed_and_resumed_once_on_a_state_change():
    import socket

    hub, channel = hub_with(Policy.LATEST)
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    sub = hub.attach(channel, channel.next_index)
    sub.writer.own(ours)
    resumed = []
    sub.rest(None, lambda: resumed.append(True))
    channel.publish(1, b"x")
    assert theirs.recv(100) == b"F\r\nid: 1\ndata: x\n\n\r\n" and resumed == []
    hub.close()
    hub.close()
    assert resumed == [True]  # once: the rest ended with the first wake
    ours.close()
    theirs.close()


@pytest.mark.timeout(10)
def test_a_resting_client_is_resumed_when_its_timeout_passes():
    hub, channel = hub_with(Policy.LATEST)
    sub = hub.attach(channel, channel.next_index)
    resumed = gevent.event.Event()
    sub.rest(0.01, resumed.set)
    assert resumed.wait(5)
    assert sub not in channel.parked


@pytest.mark.timeout(10)
def test_a_resting_client_whose_socket_is_full_is_resumed_to_write_the_frame_itself():
    hub, channel = hub_with(Policy.LATEST)
    ours, theirs = _full_socketpair()
    sub = hub.attach(channel, channel.next_index)
    sub.writer.own(ours)
    resumed = []
    sub.rest(5, lambda: resumed.append(True))
    channel.publish(1, b"x")
    assert resumed == [True] and [f.seq for f in sub.take()] == [1]
    ours.close()
    theirs.close()


@pytest.mark.timeout(10)
def test_a_released_resting_client_is_never_resumed():
    hub, channel = hub_with(Policy.LATEST)
    sub = hub.attach(channel, channel.next_index)
    resumed = []
    sub.rest(0.01, lambda: resumed.append(True))
    hub.detach(sub)
    hub.close()
    gevent.sleep(0.05)
    assert resumed == [] and channel.parked == {}
