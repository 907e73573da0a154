"""Log lines cannot be forged by what a client sends, and never carry a token."""

from __future__ import annotations

import logging

import pytest

from flexgate_stream.logs import SafeFormatter, add_secrets, escape, redact, safe

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


def test_what_follows_token_or_key_is_redacted_whatever_the_parameter():
    assert redact("/api/x?token=abc&api_key=def&x=1") == "/api/x?token=[redacted]&api_key=[redacted]&x=1"
    assert redact("GET /api/x;KEY=abc HTTP/1.1") == "GET /api/x;KEY=[redacted] HTTP/1.1"


def test_configured_secrets_are_redacted_wherever_and_however_they_are_spelled():
    add_secrets(["tokUNIT+/9=", None, ""])
    # a malformed header line, a parameter of any name, the path, and escaped spellings of the value
    assert redact("Invalid HTTP Header: 'X-Api-Key tokUNIT+/9='") == "Invalid HTTP Header: 'X-Api-Key [redacted]'"
    assert "tokUNIT" not in redact("GET /api/x?since=tokUNIT%2B%2F9%3D&y=\\x01 HTTP/1.1")
    assert "tokUNIT" not in redact("/api/tokUNIT%2b/9= and /api/%74%6FkUNIT%252B/9=")
    assert redact("nothing secret: /api/x?y=%41") == "nothing secret: /api/x?y=%41"  # left as it was


def test_formatter_redacts_a_traceback_that_quotes_a_request(caplog):
    add_secrets(["tokTRACE"])
    record = logging.LogRecord("t", logging.ERROR, __file__, 1, "web: failed", (), None)
    try:
        raise ValueError("bad value 'tokTRACE'")
    except ValueError:
        import sys

        record.exc_info = sys.exc_info()
    text = SafeFormatter("%(message)s").format(record)
    assert "tokTRACE" not in text and text.splitlines()[-1] == "ValueError: bad value '[redacted]'"


def test_a_value_made_safe_before_a_secret_was_configured_is_redacted_after():
    path = "/api/x/sekUNIT-7"
    assert safe(path) == path and safe(path) == path  # seen twice: its safe form is remembered
    add_secrets(["sekUNIT-7"])
    assert safe(path) == "/api/x/[redacted]"
    assert safe("a\x1b" * 600) == "a\\x1b" * 600  # too long to be remembered, made safe all the same
