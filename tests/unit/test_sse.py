"""The SSE encoder: frames as EventSource parses them."""

from __future__ import annotations

import uuid

import pytest

from flexgate_stream import sse


def test_full_frame_field_order_and_blank_line():
    assert sse.frame(b'{"a":1}', id=42, event="reset", retry=1500) == (
        b'id: 42\nevent: reset\nretry: 1500\ndata: {"a":1}\n\n')


def test_data_only_frame_accepts_str_and_bytes():
    assert sse.frame("hi") == sse.frame(b"hi") == b"data: hi\n\n"


def test_multiline_data_becomes_several_data_lines():
    assert sse.frame("one\ntwo\r\nthree\rfour") == b"data: one\ndata: two\ndata: three\ndata: four\n\n"


def test_retry_only_frame_has_no_data_line():
    assert sse.frame(retry=3000) == b"retry: 3000\n\n"


def test_json_frame_is_compact():
    assert sse.json_frame({"connected": False}, event="status") == b'event: status\ndata: {"connected":false}\n\n'


def test_heartbeat_is_a_comment():
    assert sse.HEARTBEAT == sse.comment("heartbeat") == b": heartbeat\n\n"


@pytest.mark.parametrize("bad", [{"event": "a\nb"}, {"id": "1\r2"}])
def test_line_breaks_in_fields_are_refused(bad):
    with pytest.raises(ValueError):
        sse.frame("x", **bad)


def test_headers_disable_caching_and_proxy_buffering():
    assert sse.HEADERS["Content-Type"].startswith("text/event-stream")
    assert sse.HEADERS["Cache-Control"] == "no-cache"
    assert sse.HEADERS["X-Accel-Buffering"] == "no"


@pytest.mark.parametrize("client_id", ["0b7f3c1e-9d2a-4c5b-8e6f-1a2b3c4d5e6f", 'a"b\nc'])
def test_the_hello_is_the_json_frame_of_its_fields(client_id):
    assert sse.connected(client_id, 500) == sse.json_frame({"type": "connected", "clientId": client_id}, retry=500)


def test_a_client_id_is_a_random_version_4_uuid():
    ids = {sse.client_id() for _ in range(1000)}
    assert len(ids) == 1000
    for text in list(ids)[:50]:
        parsed = uuid.UUID(text)
        assert str(parsed) == text and parsed.version == 4 and parsed.variant == uuid.RFC_4122
