"""Parsing of client input: event ids, routes, look-backs, webhook events."""

from __future__ import annotations

from datetime import timedelta

import pytest

from flexgate_stream.errors import BadInput
from flexgate_stream.web import params


def test_last_event_id_header_wins_and_blank_means_none():
    assert params.last_event_id("12", "3") == 12
    assert params.last_event_id(None, "3") == 3
    assert params.last_event_id("", "  ") is None
    assert params.last_event_id(None, None) is None


@pytest.mark.parametrize("raw", ["x", "-1", "1.0", "1e3", "0x10", "9" * 20, "١٢"])
def test_malformed_event_ids_name_the_source(raw):
    with pytest.raises(BadInput, match="lastEventId parameter"):
        params.last_event_id(None, raw)
    with pytest.raises(BadInput, match="Last-Event-ID header"):
        params.last_event_id(raw, None)


def test_routes():
    assert params.route(None) is None
    assert params.route("/api/users/:id") == "/api/users/:id"
    for bad in ("", "a b", "x" * 257, "tab\there", "nl\n"):
        with pytest.raises(BadInput, match="route"):
            params.route(bad)


def test_one_route_or_one_upstream_never_both():
    assert params.group(None, None) is None
    assert params.group("/api/orders", None) == ("routes", "/api/orders")
    assert params.group(None, "orders-svc") == ("upstreams", "orders-svc")
    with pytest.raises(BadInput, match="either the route or the upstream parameter, not both"):
        params.group("/api/orders", "orders-svc")
    with pytest.raises(BadInput, match="the upstream parameter must be"):
        params.group(None, "orders svc")


def test_index_pages():
    assert params.page(None) == 0
    assert params.page(" 12 ") == 12
    for raw in ("", "-1", "1.5", "x", "9" * 25, str(params.MAX_PAGE + 1)):
        with pytest.raises(BadInput, match="page parameter"):
            params.page(raw)


def test_since_durations():
    assert params.since("90s") == timedelta(seconds=90)
    assert params.since("15m") == timedelta(minutes=15)
    assert params.since("7d") == timedelta(days=7)
    assert params.since(None) is None
    for bad in ("1y", "abc", "-1h", "8d", "", "1.5h"):
        with pytest.raises(BadInput, match="since"):
            params.since(bad)


def test_gateway_event_is_normalised_with_a_stable_id():
    body = b'{"event":"circuit_breaker.opened","timestamp":"2026-01-31T13:00:00+01:00","data":{"upstream":"a"}}'
    event = params.gateway_event(body)
    assert event["type"] == "event"
    assert event["event"] == "circuit_breaker.opened"
    assert event["timestamp"] == "2026-01-31T12:00:00.000Z"
    assert event["data"] == {"upstream": "a"}
    assert params.gateway_event(body)["id"] == event["id"]  # a retried delivery is the same event


def test_gateway_event_accepts_epoch_milliseconds_and_missing_data():
    event = params.gateway_event(b'{"event":"rate_limit.exceeded","timestamp":1767225600000}')
    assert event["timestamp"] == "2026-01-01T00:00:00.000Z" and event["data"] == {}


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"{", "not valid JSON"),
        (b"\xff", "not valid JSON"),
        (b'"text"', "JSON object"),
        (b"{}", "missing event and timestamp"),
        (b'{"event":"a.b"}', "missing timestamp"),
        (b'{"event":"A B","timestamp":"2026-01-01T00:00:00Z"}', "event must be"),
        (b'{"event":"alerts.>","timestamp":"2026-01-01T00:00:00Z"}', "event must be"),
        (b'{"event":"a.b","timestamp":"soon"}', "timestamp must be"),
        (b'{"event":"a.b","timestamp":true}', "timestamp must be"),
        (b'{"event":"a.b","timestamp":"2026-01-01T00:00:00"}', "time zone"),
        (b'{"event":"a.b","timestamp":"2026-01-01T00:00:00Z","data":"x"}', "data must be"),
        (b'{"event":"a","timestamp":"0001-01-01T00:00:00+01:00"}', "between years 1 and 9999"),
        (b'{"event":"a","timestamp":"9999-12-31T23:59:59-01:00"}', "between years 1 and 9999"),
        (b'{"event":"a","timestamp":1e300}', "timestamp must be"),
        (b'{"event":"a","timestamp":"2026-01-01T00:00:00Z","data":{"x":NaN}}', "NaN or Infinity"),
        (b'{"event":"a","timestamp":"2026-01-01T00:00:00Z","data":{"x":[-Infinity]}}', "NaN or Infinity"),
        (b'{"event":"a","timestamp":"2026-01-01T00:00:00Z","data":{"x":1e999}}', "NaN or Infinity"),
        (b'{"a":' * 10000 + b"1" + b"}" * 10000, "nested too deeply"),
        (b'{"event":"a","timestamp":"2026-01-01T00:00:00Z","data":' + b"[" * 500 + b"]" * 500 + b"}",
         "nested too deeply"),
    ],
)
def test_bad_events_say_what_is_wrong(body, says):
    with pytest.raises(BadInput, match=says):
        params.gateway_event(body)
