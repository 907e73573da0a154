"""The one logging set-up of every process (the web app, the publisher, the ``make run`` launcher), and log lines
a client cannot forge: request-derived text escaped, secrets never written.

``SafeFormatter`` formats every line of ``configure``'s handler and, through ``server.http_edge.GunicornLogger``,
of gunicorn's error and access logs. ``redact`` knows the configured secrets (``add_secrets``: the API tokens,
the NATS and database credentials) as well as the shapes a credential takes in a request, so a token is caught
wherever a client put it: a header, a malformed header line, any query parameter, the path, percent-encoded.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, quote_plus, unquote

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
REDACTED = "[redacted]"
# Whatever follows access_token=, token=, key= (api_key=, x-api-key=, ...) or Bearer, whatever the case and however
# it is cut off.
SECRETS = re.compile(r"(?i)((?:token|key)=)[^&\s\"']*|(bearer\s+)[^\s\"',;]+")
UNSAFE = re.compile(r"[^\x20-\x7e\xa0-\U0010ffff]|[\u2028\u2029\u200b-\u200f\u202a-\u202e\u2066-\u2069]")
# A stretch of a request line, path or query that holds a percent-escape: it is decoded to look for secrets.
ENCODED = re.compile(r"[^\s\"']*%[0-9A-Fa-f]{2}[^\s\"']*")
NOTHING = re.compile(r"(?!)")
# Request-derived values whose safe form is remembered: an access log line's method, path, protocol, address and
# user agent mostly repeat from line to line, and each costs three regular-expression passes. Short ones only.
SAFE_KEPT = 1024
SAFE_KEPT_LENGTH = 512


class _Known:
    """The configured secrets of this process, each also as it reads percent-, JSON- or repr-escaped."""

    values: frozenset[str] = frozenset()
    pattern: re.Pattern[str] = NOTHING
    safe: dict[str, str] = {}  # value -> ``safe(value)`` under these secrets


def add_secrets(values: Iterable[str | None]) -> None:
    """Redact these configured values (and their escaped spellings) from every line and echo of this process."""
    forms = set(_Known.values)
    for value in values:
        if value:
            forms.update({value, quote(value, safe=""), quote(value), quote_plus(value), json.dumps(value)[1:-1],
                          repr(value)[1:-1], value.encode("unicode_escape").decode("ascii")})
    forms.discard("")
    _Known.values = frozenset(forms)
    # Longest first, so a value is never half-replaced because a shorter one it contains matched first; in any case,
    # as a message may lower-case what it quotes (a media type, a header name).
    alternatives = "|".join(re.escape(form) for form in sorted(forms, key=len, reverse=True))
    _Known.pattern = re.compile(alternatives, re.IGNORECASE) if alternatives else NOTHING
    _Known.safe = {}  # made under the secrets known before


def redact(text: str) -> str:
    """``text`` with every configured secret, access token, ``token=``/``key=`` value and bearer credential
    replaced, also where they are percent-encoded."""
    if "%" in text:
        text = ENCODED.sub(_decoded_if_secret, text)
    text = _Known.pattern.sub(REDACTED, text)
    return SECRETS.sub(lambda m: (m.group(1) or m.group(2)) + REDACTED, text)


def _decoded_if_secret(match: re.Match[str]) -> str:
    """A percent-encoded stretch, decoded and redacted when decoding reveals a secret; else as it was."""
    encoded = match.group()
    decoded = encoded
    for _ in range(4):  # %2574 is %74 is t: a client may encode more than once
        once = unquote(decoded, errors="replace")
        if once == decoded:
            break
        decoded = once
    redacted = SECRETS.sub(lambda m: (m.group(1) or m.group(2)) + REDACTED, _Known.pattern.sub(REDACTED, decoded))
    return redacted if redacted != decoded else encoded


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
    kept = _Known.safe
    found = kept.get(value)
    if found is None:
        found = escape(redact(value))
        if len(value) <= SAFE_KEPT_LENGTH:
            if len(kept) >= SAFE_KEPT:
                kept.clear()  # a client sending ever new values gets no further than the next thousand
            kept[value] = found
    return found


def _escaped(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


class SafeFormatter(logging.Formatter):
    """A formatter whose message part is redacted and escaped; a traceback keeps its lines (its text is ours,
    but an exception's message may quote a request, so it is redacted too)."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        record.message = escape(redact(record.message))
        return super().formatMessage(record)

    def formatException(self, ei: Any) -> str:  # noqa: N802 - logging's name
        return redact(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:  # noqa: N802 - logging's name
        return redact(super().formatStack(stack_info))


def configure(level: str | int = logging.INFO, secrets: Iterable[str | None] = ()) -> None:
    """Log to stderr at ``level`` in the project's format (a no-op when the process has already set logging up),
    with ``secrets`` (``Settings.secrets``) redacted from every line."""
    add_secrets(secrets)
    handler = logging.StreamHandler()
    handler.setFormatter(SafeFormatter(FORMAT))
    logging.basicConfig(level=level, handlers=[handler])
