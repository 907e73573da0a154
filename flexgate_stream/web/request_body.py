"""Reading a request body whole, within a size limit and a deadline, whatever its framing."""

from __future__ import annotations

import json
from typing import Any

from flexgate_stream.errors import BadInput, BodyTimeout, TooLarge, UnsupportedMediaType
from flexgate_stream.logs import redact

MAX_BODY = 64 * 1024  # the largest request body accepted (webhook events)
CHUNK = 16 * 1024
# Set in the WSGI environ when a body stopped arriving: the worker (server.gevent_worker) closes the connection right
# after the 408 instead of giving the rest of the body gunicorn's keep-alive time.
CLOSE_CONNECTION = "flexgate.close_connection"


def require_json(content_type: str | None) -> None:
    """Refuse any body that is not declared ``application/json`` (a browser sends text/plain cross-site
    without asking first, so accepting it would let any web page post)."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media != "application/json":
        given = json.dumps(redact(media)[:60]) if media else "none"
        raise UnsupportedMediaType(f"the body must be sent as Content-Type: application/json, got {given}.")


def read_body(environ: dict[str, Any], limit: int, timeout: float) -> bytes:
    """The whole body (declared length or chunked): 413 past ``limit`` bytes, 408 when it takes longer than
    ``timeout`` seconds to arrive."""
    declared = environ.get("CONTENT_LENGTH")
    if declared and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    import gevent

    timer = gevent.Timeout(timeout)
    timer.start()
    try:
        return _read_all(environ["wsgi.input"], limit)
    except gevent.Timeout as exc:
        if exc is not timer:
            raise
        environ[CLOSE_CONNECTION] = True
        raise BodyTimeout(f"the request body did not arrive within {timeout:g} s.") from None
    except (TooLarge, BodyTimeout):
        raise
    except Exception:  # noqa: BLE001 - the WSGI server's reader raises its own errors for bad framing
        raise BadInput("the request body is malformed or was cut off (check its chunked framing or "
                       "Content-Length).") from None
    finally:
        timer.close()


def _read_all(stream: Any, limit: int) -> bytes:
    parts: list[bytes] = []
    size = 0
    while True:
        part = stream.read(CHUNK)
        if not part:
            return b"".join(parts)
        size += len(part)
        if size > limit:
            raise _too_large(limit)
        parts.append(part)


def _too_large(limit: int) -> TooLarge:
    return TooLarge(f"the request body is too large (at most {limit // 1024} KiB).")
