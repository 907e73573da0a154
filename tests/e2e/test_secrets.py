"""No token in any log of a running ``make run`` stack, nor in any answer, wherever a client puts it.

The whole stack runs as a user runs it (PostgreSQL, nats-server, supervisord, gunicorn, the publisher, demo
traffic) with ``FLEXGATE_API_TOKENS`` set; clients send the configured token, and other credentials after
``Bearer``, ``access_token=``, ``token=`` and ``key=``, in every place a request has; then every log is read.
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import tempfile
from pathlib import Path

import pytest
import requests

from flexgate_stream.devstack.processes import free_port
from tests.e2e.launching import Launcher
from tests.waiting import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

TOKEN = "tokSECRETabc123"
# Not configured: caught by what precedes them.
BEARER, ACCESS, PARAM, KEY = "patBEARER1x", "patACCESS2x", "patTOKEN3x", "patKEY4x"
SECRETS = (TOKEN, BEARER, ACCESS, PARAM, KEY)
ENCODED = "%74okSECRETabc%3123"  # TOKEN, percent-encoded as a client may

GOOD = f"Host: x\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n"
# (what is sent, what the log holds for it once redacted)
PLACEMENTS = {
    "valid headers": (f"GET /api/a-valid-header HTTP/1.1\r\n{GOOD}User-Agent: agent {TOKEN}\r\n"
                      f"X-Api-Key: {TOKEN}\r\nReferer: /x?key={KEY}\r\n\r\n", '"agent [redacted]"'),
    "malformed header line": (f"GET /api/stream/stats HTTP/1.1\r\nHost: x\r\nX-Api-Key {TOKEN}\r\n\r\n",
                              "'X-Api-Key [redacted]'"),
    "malformed bearer line": (f"GET /api/stream/stats HTTP/1.1\r\nHost: x\r\nAuthorization Bearer {BEARER}\r\n\r\n",
                              "'Authorization Bearer [redacted]'"),
    "query of another name": (f"GET /api/stream/alerts?since={TOKEN} HTTP/1.1\r\n{GOOD}\r\n", None),
    "route parameter": (f"GET /api/metrics/live?route=/{TOKEN} HTTP/1.1\r\n{GOOD}\r\n", None),
    "last event id": (f"GET /api/stream/metrics HTTP/1.1\r\n{GOOD}Last-Event-ID: {TOKEN}\r\n\r\n", None),
    "content type": (f"POST /api/events HTTP/1.1\r\n{GOOD}Content-Type: text/{TOKEN}\r\nContent-Length: 2\r\n\r\n{{}}",
                     None),
    "malformed request line": (f"GET /api/line?since={TOKEN}&token={PARAM}&key={KEY}&access_token={ACCESS}&y=\x01 "
                               "HTTP/1.1\r\nHost: x\r\n\r\n", "/api/line?since=[redacted]&token=[redacted]"),
    "path": (f"GET /api/path/{TOKEN}/x;token={PARAM} HTTP/1.1\r\n{GOOD}\r\n",
             "/api/path/[redacted]/x;token=[redacted]"),
    "encoded path": (f"GET /api/encoded/{ENCODED} HTTP/1.1\r\n{GOOD}\r\n", "/api/encoded/[redacted]"),
    "encoded, malformed line": (f"GET /api/raw/{ENCODED}?y=\x01 HTTP/1.1\r\nHost: x\r\n\r\n", "/api/raw/[redacted]"),
    "method": (f"{TOKEN} /api/method HTTP/1.1\r\nHost: x\r\n\r\n", None),
    "bad content length": (f"GET /api/length/{TOKEN} HTTP/1.1\r\nHost: x\r\nContent-Length: x\r\n\r\n",
                           '"GET /api/length/[redacted] HTTP/1.1" 400'),
    "doubled slash": (f"GET /api//metrics/live?access_token={TOKEN} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                      '"GET /api//metrics/live HTTP/1.1" 404'),
}


def exchange(port: int, request: str) -> bytes:
    """Send ``request`` as it is; the whole answer, up to the server closing the connection."""
    answer = b""
    with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
        sock.sendall(request.encode("latin-1"))
        try:
            while part := sock.recv(65536):
                answer += part
        except ConnectionResetError:
            pass
    return answer


def answered(url: str, headers: dict[str, str]) -> int | None:
    try:
        return requests.get(url, headers=headers, timeout=5).status_code
    except requests.RequestException:
        return None


@pytest.fixture(scope="module")
def stack():
    base = Path(tempfile.mkdtemp(prefix="flexgate-secrets-"))
    base.chmod(0o755)
    launcher = Launcher(base / "var", free_port(), {"FLEXGATE_API_TOKENS": f"other-token,{TOKEN}"})
    try:
        live = f"http://127.0.0.1:{launcher.port}/api/metrics/live"
        wait_until(lambda: answered(live, {"Authorization": f"Bearer {TOKEN}"}) == 200, 120,
                   "make run to serve the publisher's first snapshot")
        yield launcher
    finally:
        if launcher.proc.poll() is None:
            launcher.proc.send_signal(signal.SIGTERM)
            try:
                launcher.proc.wait(60)
            except Exception:
                launcher.proc.kill()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def answers(stack):
    """Every placement's answer, sent once to the running stack."""
    return {name: exchange(stack.port, request) for name, (request, _logged) in PLACEMENTS.items()}


@pytest.mark.parametrize("name", PLACEMENTS)
def test_no_answer_repeats_a_secret(answers, name):
    answer = answers[name]
    status = int(answer.split(b" ", 2)[1])
    assert 400 <= status < 500, answer[:300]
    assert b"\r\nLocation:" not in answer  # never a redirect
    _head, _, body = answer.partition(b"\r\n\r\n")
    assert json.loads(body)["success"] is False, answer[:300]
    for secret in SECRETS:
        assert secret.lower().encode() not in answer.lower(), f"{name}: {answer[:400]!r}"


def test_no_log_of_any_process_holds_a_secret(stack, answers):
    expected = [logged for _request, logged in PLACEMENTS.values() if logged]

    def text() -> str:
        return b"\n".join(stack.every_log().values()).decode(errors="replace")

    wait_until(lambda: all(line in text() for line in expected), 20,
               f"every request in the log: {[line for line in expected if line not in text()]}")
    logs = stack.every_log()
    assert {"postgres.log", "nats-server.log", "supervisord.log"} <= {path.name for path in logs}
    assert "publisher[" in text()  # the publisher's lines are among them
    for path, content in logs.items():
        for secret in SECRETS:
            assert secret.lower().encode() not in content.lower(), f"{secret} in {path}"
        assert b"None HTTP/1.1" not in content
