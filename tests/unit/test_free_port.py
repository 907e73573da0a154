"""The ports the dev stack and the tests give their servers: free, and out of the range outgoing connections use."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from flexgate_stream.devstack.processes import free_port

pytestmark = pytest.mark.timeout(30)


def test_a_free_port_is_below_the_range_the_kernel_gives_outgoing_connections_and_can_be_listened_on():
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    ports = {free_port() for _ in range(20)}
    # A server restarted on such a port (a cluster node, NATS under the keeper) cannot find it taken by a client's
    # outgoing connection made while it was down.
    assert all(port < low for port in ports), sorted(ports)
    assert len(ports) > 1  # not one fixed port: parallel test workers pick their own
    for port in ports:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))
            sock.listen()
