"""Property-based requests against every endpoint of a real gunicorn: paths, query values, headers
(Last-Event-ID, Content-Type, framing), bodies of every shape and size, slow and truncated bodies.

Whatever is sent: no 5xx, every error answered as JSON ``{"success": false, "error": ...}``, an answer
within a bound (no hang), no traceback and no token in the log, and the workers stay up. The number of
examples (``FLEXGATE_FUZZ_EXAMPLES``, default 300) keeps the run under a minute.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections import Counter
from urllib.parse import quote

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.e2e.support import WebServer
from tests.waiting import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240), pytest.mark.slow(20)]

TOKEN = "fuzz-token-51c7"
EXAMPLES = int(os.environ.get("FLEXGATE_FUZZ_EXAMPLES", "300"))
BODY_TIMEOUT = 1.0
ANSWER_WITHIN = 5.0 + BODY_TIMEOUT  # seconds for the status line and headers to arrive
SEEN: Counter[int] = Counter()

PATHS = ["/", "/healthz", "/readyz", "/metrics", "/api/stream/metrics", "/api/stream/alerts", "/api/stream/stats",
         "/api/metrics/live", "/api/events", "/api", "/api/", "/static/js/stream.js", "/favicon.ico"]
METHODS = ["GET", "POST", "HEAD", "OPTIONS", "PUT", "DELETE", "PATCH"]
CONTENT_TYPES = [None, "application/json", "application/json; charset=utf-8", "text/plain",
                 "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "APPLICATION/JSON",
                 "application/json;;", "\u00e9/x"]

text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=80)
header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
                      max_size=60)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4), max_leaves=20)
timestamps = st.one_of(
    st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()),
    st.datetimes().map(lambda d: d.isoformat()),
    st.integers(min_value=-(2**70), max_value=2**70), st.floats(), text,
    st.sampled_from(["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "2026-01-01T00:00:00Z"]))
events = st.fixed_dictionaries(
    {"event": st.sampled_from(["circuit_breaker.opened", "a", "A B", "x" * 300]) | text, "timestamp": timestamps},
    optional={"data": json_values})
raw_json_tokens = st.sampled_from([b"NaN", b"Infinity", b"-Infinity", b"1e999", b'{"a":' * 3000, b"\xff\xfe",
                                   b"[" * 5000, b"9" * 5000])
bodies = st.one_of(
    st.none(),
    events.map(lambda e: json.dumps(e).encode()),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=300),
    raw_json_tokens,
    st.builds(lambda e, n: json.dumps({**e, "data": {"pad": "x" * n}}).encode(), events,
              st.sampled_from([60_000, 66_000, 100_000])),
)
queries = st.dictionaries(st.sampled_from(["route", "lastEventId", "since", "access_token", "x", ""]),
                          st.one_of(text, st.sampled_from(["/api/users/:id", "1", "15m", "8d", TOKEN, "%00"])),
                          max_size=3)


@st.composite
def requests_(draw) -> dict:
    """Half are webhook posts with the right token (so their bodies are read); the rest anything at all."""
    if draw(st.booleans()):
        req = draw(any_request())
        req.update(method="POST", path="/api/events")
        req["headers"]["Authorization"] = f"Bearer {TOKEN}"
        if draw(st.integers(0, 3)):
            req["headers"]["Content-Type"] = "application/json"
        if draw(st.booleans()):
            req["body"] = json.dumps(draw(events)).encode()
        return req
    return draw(any_request())


@st.composite
def any_request(draw) -> dict:
    path = draw(st.one_of(st.sampled_from(PATHS), st.sampled_from(PATHS),
                          text.map(lambda t: "/" + quote(t, safe="/:%"))))
    query = draw(queries)
    if query:
        path += "?" + "&".join(f"{quote(k)}={quote(v, safe='%')}" for k, v in query.items())
    headers = {"Host": "127.0.0.1"}
    auth = draw(st.sampled_from(["none", "header", "wrong"]))
    if auth == "header":
        headers["Authorization"] = f"Bearer {TOKEN}"
    elif auth == "wrong":
        headers["Authorization"] = "Bearer " + draw(header_text)
    content_type = draw(st.sampled_from(CONTENT_TYPES))
    if content_type:
        headers["Content-Type"] = content_type
    for name in draw(st.lists(st.sampled_from(["Last-Event-ID", "Origin", "X-Anything", "Accept"]), max_size=3)):
        headers[name] = draw(header_text)
    return {"method": draw(st.sampled_from(METHODS)), "path": path, "headers": headers, "body": draw(bodies),
            "framing": draw(st.sampled_from(["length", "length", "chunked", "badchunk", "truncated", "slow"]))}


def encode_request(req: dict) -> tuple[bytes, bytes]:
    """The head (request line and headers) and the body bytes as they go on the wire."""
    body = req["body"]
    headers = dict(req["headers"])
    framing = req["framing"]
    if body is not None:
        if framing == "chunked":
            headers["Transfer-Encoding"] = "chunked"
            body = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 4096]), body[i:i + 4096])
                            for i in range(0, len(body), 4096)) + b"0\r\n\r\n"
        elif framing == "badchunk":  # a chunk size that is not hex, or a chunk without its terminator
            headers["Transfer-Encoding"] = "chunked"
            bad_size, no_terminator = b"zz\r\n" + body + b"\r\n0\r\n\r\n", b"%x\r\n%sXX0\r\n\r\n" % (len(body), body)
            body = bad_size if len(body) % 2 else no_terminator
        elif framing == "truncated":
            headers["Content-Length"] = str(len(body) + 10)
        else:
            headers["Content-Length"] = str(len(body))
    lines = [f"{req['method']} {req['path']} HTTP/1.1"] + [f"{k}: {v}" for k, v in headers.items()]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape")
    return head, body or b""


def exchange(port: int, req: dict) -> tuple[int, dict[str, str], bytes]:
    """Send one request (slowly when asked) and read the answer's head, and its body when it has a length."""
    head, body = encode_request(req)
    deadline = time.monotonic() + ANSWER_WITHIN
    with socket.create_connection(("127.0.0.1", port), timeout=ANSWER_WITHIN) as sock:
        try:
            sock.sendall(head)
            if req["framing"] == "slow" and body:
                for i in range(0, min(len(body), 3)):
                    sock.sendall(body[i:i + 1])
                    time.sleep(0.05)
                sock.sendall(body[3:])
            else:
                sock.sendall(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # answered (413, 400...) before the whole body was taken: read what was said
        answer = b""
        while b"\r\n\r\n" not in answer:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            part = sock.recv(65536)
            assert part, f"connection closed without an answer to {req!r:.300}"
            answer += part
        status_head, _, rest = answer.partition(b"\r\n\r\n")
        lines = status_head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.lower(): v for k, _, v in (line.partition(": ") for line in lines[1:])}
        length = int(headers.get("content-length", "0")) if req["method"] != "HEAD" else 0
        while len(rest) < length and status != 200:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            part = sock.recv(65536)
            if not part:
                break
            rest += part
        return status, headers, rest[:length] if length else rest


@pytest.fixture(scope="module")
def fuzzed(nats_server, nats_client, tmp_path_factory):
    """A server with a token, open events, a short body timeout, and a publisher keeping snapshots fresh."""
    env = {"FLEXGATE_API_TOKENS": TOKEN, "FLEXGATE_BODY_TIMEOUT": str(BODY_TIMEOUT),
           "FLEXGATE_HEARTBEAT_SECONDS": "1"}
    server = WebServer(nats_server.url, tmp_path_factory.mktemp("fuzz"), env, workers=2).start()
    stop = threading.Event()

    def publish() -> None:
        while not stop.wait(0.5):
            nats_client.publish_snapshot()
            nats_client.publish_snapshot(route="/api/users/:id")

    nats_client.publish_snapshot()
    nats_client.publish_snapshot(route="/api/users/:id")
    publisher = threading.Thread(target=publish, daemon=True)
    publisher.start()
    wait_until(lambda: requests.get(server.url + "/api/metrics/live", timeout=5,
                                    headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200,
               10, "a snapshot to be served")
    yield server
    stop.set()
    publisher.join(5)
    server.stop()


def test_any_request_gets_a_bounded_json_answer_and_never_a_5xx(fuzzed):
    workers = fuzzed.worker_pids()
    started = time.monotonic()

    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                     HealthCheck.data_too_large])
    @given(requests_())
    def check(req: dict) -> None:
        status, headers, body = exchange(fuzzed.port, req)
        SEEN[status] += 1
        assert status < 500, f"{status} for {req!r:.300}: {body[:300]!r}"
        if status >= 400 and req["method"] != "HEAD":
            assert headers.get("content-type", "").startswith("application/json"), (req, headers, body[:200])
            doc = json.loads(body)
            assert doc["success"] is False and isinstance(doc["error"], str) and doc["error"]

    check()
    took = time.monotonic() - started
    print(f"\nfuzz: {sum(SEEN.values())} requests in {took:.1f} s, statuses {dict(sorted(SEEN.items()))}")
    log = fuzzed.log_text()
    assert "Traceback" not in log
    assert TOKEN not in log
    assert fuzzed.worker_pids() == workers  # no worker crashed or was restarted
