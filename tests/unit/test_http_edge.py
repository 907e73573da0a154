"""The access log's client address behind a trusted proxy."""

from __future__ import annotations

import pytest

from flexgate_stream.server.http_edge import forwarded_client

pytestmark = pytest.mark.timeout(10)

LOOPBACK = ["127.0.0.1", "::1"]


def test_the_address_the_proxy_appended_is_the_client():
    assert forwarded_client("127.0.0.1", "203.0.113.9, 198.51.100.4", LOOPBACK) == "198.51.100.4"


def test_an_untrusted_peer_cannot_choose_its_logged_address():
    assert forwarded_client("198.51.100.4", "127.0.0.1", LOOPBACK) is None


def test_networks_and_star_are_trusted():
    assert forwarded_client("10.1.2.3", "2001:db8::1", ["10.0.0.0/8"]) == "2001:db8::1"
    assert forwarded_client("192.0.2.1", "198.51.100.4", ["*"]) == "198.51.100.4"


def test_text_that_is_not_an_address_never_reaches_the_log():
    assert forwarded_client("127.0.0.1", "1.2.3.4, evil\nline", LOOPBACK) is None
    assert forwarded_client("127.0.0.1", "", LOOPBACK) is None
