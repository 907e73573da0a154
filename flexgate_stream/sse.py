"""Server-sent events: a small pure encoder for frames and the response headers, set in one place."""

from __future__ import annotations

import json
import random

HEADERS = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",  # nginx: pass each frame through at once
}

HEARTBEAT = b": heartbeat\n\n"
_V4_KEEP = ~((0xF << 76) | (0x3 << 62))  # a random UUID's version and variant bits, as uuid.uuid4 sets them
_V4_SET = (0x4 << 76) | (0x2 << 62)


def frame(data: bytes | str | None = None, *, event: str | None = None, id: int | str | None = None,
          retry: int | None = None) -> bytes:
    """One SSE frame (id:, event:, retry:, data: lines, then a blank line) as bytes."""
    lines: list[bytes] = []
    if id is not None:
        lines.append(b"id: " + _field(str(id)))
    if event is not None:
        lines.append(b"event: " + _field(event))
    if retry is not None:
        lines.append(b"retry: %d" % int(retry))
    if data is not None:
        raw = data.encode() if isinstance(data, str) else data
        # A data value may not hold a line break: each line goes on its own data: field.
        lines.extend(b"data: " + line for line in raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n"))
    return b"\n".join(lines) + b"\n\n"


def json_frame(payload: object, *, event: str | None = None, id: int | None = None,
               retry: int | None = None) -> bytes:
    """A frame whose data is compact JSON."""
    return frame(json.dumps(payload, separators=(",", ":")), event=event, id=id, retry=retry)


# The control events a stream sends besides its messages; the dashboard (static/js/stream.js) and the
# original admin UI read these names and fields.


def connected(client_id: str, retry: int) -> bytes:
    """The first frame of every stream: ``{"type": "connected", "clientId"}`` with the reconnect delay."""
    # Byte for byte what json_frame writes, without building a JSON encoder for every stream that opens.
    return b'retry: %d\ndata: {"type":"connected","clientId":%b}\n\n' % (int(retry), json.dumps(client_id).encode())


def client_id() -> str:
    """A new random (version 4) UUID's text: the id a stream's hello tells its client, who alone uses it."""
    # Not str(uuid.uuid4()): its system call for random bytes and its UUID object were ~1.5 % of a stream's opening.
    # The id is no secret, and ``random`` is seeded afresh in every forked worker, so workers do not repeat ids.
    text = "%032x" % (random.getrandbits(128) & _V4_KEEP | _V4_SET)
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def status(is_connected: bool) -> bytes:
    """``event: status``: the server's NATS connection went down or came back."""
    return json_frame({"connected": is_connected}, event="status")


def reset(reason: str, retry: int | None = None) -> bytes:
    """``event: reset``: what the client missed cannot be replayed; start over (from the newest snapshot)."""
    return json_frame({"reason": reason}, event="reset", retry=retry)


def shutdown(reason: str, retry: int) -> bytes:
    """``event: shutdown``: the last frame before the server process ends; reconnect after ``retry`` ms."""
    return json_frame({"reason": reason}, event="shutdown", retry=retry)


def comment(text: str) -> bytes:
    """A comment line, ignored by EventSource (used for heartbeats)."""
    return b": " + _field(text) + b"\n\n"


def _field(value: str) -> bytes:
    if "\n" in value or "\r" in value:
        raise ValueError("an SSE id, event or comment may not contain a line break")
    return value.encode()
