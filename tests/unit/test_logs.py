"""Log lines cannot be forged by what a client sends, and never carry a token."""

from __future__ import annotations

import logging

import pytest

from flexgate_stream.logs import SafeFormatter, escape, redact, safe

pytestmark = pytest.mark.timeout(10)


def test_control_and_invisible_characters_are_escaped():
    assert escape("a\nb\r\x1b[31m\x00\x7f\x85\u2028\u202e") == "a\\x0ab\\x0d\\x1b[31m\\x00\\x7f\\x85\\u2028\\u202e"
    assert escape("plain /api/users/:id ünï €") == "plain /api/users/:id ünï €"


def test_tokens_are_redacted_wherever_they_appear():
    assert redact("GET /a?x=1&access_token=s3cret&y=2") == "GET /a?x=1&access_token=[redacted]&y=2"
    assert redact("'ACCESS_TOKEN=s3cret") == "'ACCESS_TOKEN=[redacted]"
    assert redact("Authorization: Bearer abc.def") == "Authorization: Bearer [redacted]"
    assert safe(b"/x\n") == "/x\\x0a" and safe(3) == 3


def test_formatter_escapes_the_message_but_keeps_the_traceback(caplog):
    record = logging.LogRecord("t", logging.ERROR, __file__, 1, "web: %s failed", ("/x\nERROR forged",), None)
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        record.exc_info = sys.exc_info()
    text = SafeFormatter("%(levelname)s %(message)s").format(record)
    first, *rest = text.splitlines()
    assert first == "ERROR web: /x\\x0aERROR forged failed"
    assert rest[0].startswith("Traceback") and rest[-1] == "ValueError: boom"
