"""The one logging set-up of every process (the web app, the publisher, the ``make run`` launcher), and log lines
a client cannot forge: request-derived text escaped, tokens never written.

``SafeFormatter`` formats every line of ``configure``'s handler and, through ``web.http_edge.GunicornLogger``,
of gunicorn's error and access logs.
"""

from __future__ import annotations

import logging
import re
from typing import Any

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
REDACTED = "[redacted]"
# ?access_token=..., Authorization: Bearer ..., whatever the case and however it is cut off.
SECRETS = re.compile(r"(?i)(access_token=)[^&\s\"']*|(bearer\s+)[^\s\"',;]+")
UNSAFE = re.compile(r"[^\x20-\x7e\xa0-\U0010ffff]|[\u2028\u2029\u200b-\u200f\u202a-\u202e\u2066-\u2069]")


def redact(text: str) -> str:
    """``text`` with every access token and bearer credential replaced."""
    return SECRETS.sub(lambda m: (m.group(1) or m.group(2)) + REDACTED, text)


def escape(text: str) -> str:
    """``text`` on one line: control characters (newlines, ESC, NUL, ...) and invisible ones as ``\\xNN`` or
    ``\\uNNNN``."""
    return UNSAFE.sub(_escaped, text)


def safe(value: Any) -> Any:
    """A request-derived value fit for a log line: redacted and escaped (non-strings are left as they are;
    gunicorn's access log escapes double quotes itself)."""
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    if not isinstance(value, str):
        return value
    return escape(redact(value))


def _escaped(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


class SafeFormatter(logging.Formatter):
    """A formatter whose message part is redacted and escaped; a traceback keeps its lines (its text is ours)."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        record.message = escape(redact(record.message))
        return super().formatMessage(record)


def configure(level: str | int = logging.INFO) -> None:
    """Log to stderr at ``level`` in the project's format (a no-op when the process has already set logging up)."""
    handler = logging.StreamHandler()
    handler.setFormatter(SafeFormatter(FORMAT))
    logging.basicConfig(level=level, handlers=[handler])
