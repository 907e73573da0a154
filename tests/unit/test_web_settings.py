"""The web tier's own settings and helpers: send timeout and buffer, metrics folder, snapshot freshness."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from flexgate_stream.errors import ConfigError
from flexgate_stream.fanout.feeds import SUMMARY
from flexgate_stream.liveness import Liveness, LivePublisher, is_stale, snapshot_age, tick_period
from flexgate_stream.server import gunicorn_hooks
from flexgate_stream.settings import Settings
from flexgate_stream.web.extension import StreamService


def test_send_timeout_and_metrics_dir(tmp_path):
    s = Settings.from_env({"FLEXGATE_SEND_TIMEOUT": "5", "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)})
    assert s.send_timeout_seconds == 5.0 and s.prometheus_multiproc_dir == str(tmp_path)
    assert Settings.from_env({}).send_timeout_seconds == 30.0
    with pytest.raises(ConfigError, match="^PROMETHEUS_MULTIPROC_DIR"):
        Settings.from_env({"PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "missing")})
    with pytest.raises(ConfigError, match="^FLEXGATE_SEND_TIMEOUT"):
        Settings.from_env({"FLEXGATE_SEND_TIMEOUT": "0"})


@pytest.fixture
def accepted() -> Iterator[socket.socket]:
    """The server side of a real loopback TCP connection."""
    with socket.create_server(("127.0.0.1", 0)) as listener, \
            socket.create_connection(listener.getsockname()) as _client:
        server, _ = listener.accept()
        with server:
            yield server


def test_send_buffer_setting():
    assert Settings.from_env({}).send_buffer_bytes == 65536
    assert Settings.from_env({"FLEXGATE_SEND_BUFFER": "16384"}).send_buffer_bytes == 16384
    with pytest.raises(ConfigError, match="^FLEXGATE_SEND_BUFFER must be between 4096"):
        Settings.from_env({"FLEXGATE_SEND_BUFFER": "100"})


def test_an_admitted_stream_socket_has_the_default_send_buffer_and_timeouts(accepted):
    StreamService(Settings()).admit(SUMMARY, sock=accepted).close()
    # The kernel doubles SO_SNDBUF for its bookkeeping, and no longer autotunes it.
    assert accepted.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) == 2 * 65536
    assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == 30_000
    assert accepted.gettimeout() == 30.0


def test_a_gevent_socket_as_gunicorn_hands_it_over_gets_the_timeouts_too(accepted):
    import gevent.socket

    green = gevent.socket.socket(fileno=accepted.detach())  # the gevent worker's sockets wrap the OS socket
    with green:
        StreamService(Settings()).admit(SUMMARY, sock=green).close()
        assert green.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == 30_000
        assert green.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) == 2 * 65536


def test_the_send_buffer_and_timeouts_follow_the_settings(accepted):
    settings = Settings.from_env({"FLEXGATE_SEND_BUFFER": "8192", "FLEXGATE_SEND_TIMEOUT": "2.5"})
    StreamService(settings).admit(SUMMARY, sock=accepted).close()
    assert accepted.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) == 2 * 8192
    assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == 2_500
    assert accepted.gettimeout() == 2.5


def test_metrics_dir_is_created_when_not_configured_and_cleared_of_old_files(tmp_path):
    assert gunicorn_hooks.metrics_dir(str(tmp_path)) == (str(tmp_path), False)
    made, own = gunicorn_hooks.metrics_dir(None)
    assert own
    (tmp_path / "counter_123.db").write_bytes(b"x")
    gunicorn_hooks.clear_metrics_dir(str(tmp_path))
    assert not list(tmp_path.glob("*.db"))
    gunicorn_hooks.clear_metrics_dir(made)


def test_snapshot_age_and_staleness():
    now = datetime(2026, 1, 1, 12, 0, 10, tzinfo=UTC)
    assert snapshot_age(b'{"windowEnd":"2026-01-01T12:00:00Z"}', now) == 10.0
    assert snapshot_age(b'{"timestamp":"2026-01-01T12:00:04Z"}', now) == 6.0
    assert snapshot_age(b"not json", now) is None
    assert not is_stale(14.9, 5.0) and is_stale(15.1, 5.0) and is_stale(None, 5.0)


def test_the_tick_period_is_the_live_publishers_else_the_setting():
    def publisher(tick: float | None, live: bool) -> LivePublisher:
        beat = {"publisher": f"p{tick}", "tickSeconds": tick} if tick is not None else {"publisher": "old"}
        return LivePublisher(beat=beat, age=0.0, live=live)

    def liveness(*publishers: LivePublisher) -> Liveness:
        return Liveness(newestWindowEnd=None, snapshotAge=None, publishers=list(publishers),
                        live=any(p["live"] for p in publishers))

    assert tick_period(None, 5.0) == 5.0  # NATS did not answer
    assert tick_period(liveness(), 5.0) == 5.0
    assert tick_period(liveness(publisher(1.0, True)), 5.0) == 1.0
    assert tick_period(liveness(publisher(1.0, True), publisher(30.0, False)), 5.0) == 1.0  # a dead one counts not
    assert tick_period(liveness(publisher(1.0, True), publisher(2.0, True)), 5.0) == 2.0  # the longest live one
    assert tick_period(liveness(publisher(None, True)), 1.0) == 5.0  # a beat without tickSeconds: the default
