"""The access log: the client address behind a trusted proxy, and every field escaped whichever way it is built."""

from __future__ import annotations

import ast
import sys
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from gunicorn.config import Config
from gunicorn.glogging import Logger

from flexgate_stream.logs import safe
from flexgate_stream.server.http_edge import GunicornLogger, forwarded_client

pytestmark = pytest.mark.timeout(10)

LOOPBACK = ["127.0.0.1", "::1"]
ROOT = Path(__file__).resolve().parents[2]


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


@pytest.mark.parametrize("log_format", ['%(h)s "%(m)s %(U)s %(H)s" %(s)s %(b)s %(M)sms "%(a)s"',  # the conf's
                                        '%(h)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" %({host}i)s %(D)s'])
@pytest.mark.parametrize(("status", "sent"), [("200 OK", 1234), ("503 Service Unavailable", None)])
def test_the_atoms_a_format_prints_are_gunicorns_escaped(log_format, status, sent):
    cfg = Config()
    cfg.set("access_log_format", log_format)
    logger = GunicornLogger(cfg)
    environ = {"REMOTE_ADDR": "127.0.0.1", "REQUEST_METHOD": "GET", "PATH_INFO": "/api/stream/metrics",
               "RAW_URI": "/api/stream/metrics", "QUERY_STRING": "", "SERVER_PROTOCOL": "HTTP/1.1",
               "HTTP_USER_AGENT": 'ev"il\x1b[31m', "HTTP_HOST": "example.test"}
    resp = SimpleNamespace(status=status, sent=sent, headers=[("Content-Type", "text/event-stream")])
    req = SimpleNamespace(headers=[("HOST", "example.test"), ("USER-AGENT", 'ev"il\x1b[31m')])
    took = timedelta(seconds=3, microseconds=456_789)
    found = logger.atoms(resp, req, environ, took)
    gunicorns = Logger.atoms(logger, resp, req, environ, took)
    assert set(found) == logger.format_atoms()
    assert "\\x1b" in found["a"] and "\x1b" not in found["a"]
    found.pop("t", None)  # the time of day: read twice, it may differ
    assert found == {key: safe(gunicorns[key]) for key in found}


def test_requests_are_parsed_by_gunicorns_own_parser_even_where_its_c_parser_is_installed(monkeypatch):
    # With the C parser (gunicorn_h1c, "auto" picks it when installed) a request refused for its Content-Length is
    # no longer logged with its method and path: conf/gunicorn.conf.py names the parser.
    from gunicorn.http import message

    conf = ast.parse((ROOT / "conf" / "gunicorn.conf.py").read_text())
    chosen = [node.value.value for node in conf.body if isinstance(node, ast.Assign)
              and [getattr(t, "id", None) for t in node.targets] == ["http_parser"]
              and isinstance(node.value, ast.Constant)]
    cfg = Config()
    if chosen:
        cfg.set("http_parser", chosen[0])
    monkeypatch.setitem(sys.modules, "gunicorn_h1c", SimpleNamespace(LimitRequestLine=ValueError))
    monkeypatch.setattr(message, "_fast_parser_available", None)
    monkeypatch.setattr(message, "_fast_parser_module", None)
    assert message._check_fast_parser(cfg) is False


def test_a_peers_trust_is_gunicorns_answer_remembered_per_address(monkeypatch):
    from gunicorn.http import message

    from flexgate_stream.server.gevent_worker import peers_remembered

    original = message._ip_in_allow_list
    asked: list[str] = []

    def counted(ip_str: str, allow_list: Any, networks: Any) -> bool:
        asked.append(ip_str)
        return bool(original(ip_str, allow_list, networks))

    monkeypatch.setattr(message, "_ip_in_allow_list", counted)
    peers_remembered()
    cfg = Config()
    cfg.set("forwarded_allow_ips", "127.0.0.1,10.0.0.0/8")
    allowed, networks = cfg.forwarded_allow_ips, cfg.forwarded_allow_networks()
    for peer in ("127.0.0.1", "10.2.3.4", "192.0.2.1", "not an address") * 3:
        assert message._ip_in_allow_list(peer, allowed, networks) == original(peer, allowed, networks)
    assert asked == ["127.0.0.1", "10.2.3.4", "192.0.2.1", "not an address"]  # each address checked once
    anyone = Config()
    anyone.set("forwarded_allow_ips", "*")
    assert message._ip_in_allow_list("192.0.2.1", anyone.forwarded_allow_ips, anyone.forwarded_allow_networks())
