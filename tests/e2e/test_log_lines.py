"""What clients send never forges a log line, writes terminal escapes or NULs, or puts a token in a log."""

from __future__ import annotations

import socket

import pytest
import requests

from tests.e2e.support import WebServer
from tests.waiting import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

TOKEN = "log-token-9d2e"
FORGED = "2026-11-30 10:00:00,000 ERROR FORGED"


@pytest.fixture(scope="module")
def locked(nats_server, nats_client, tmp_path_factory):
    server = WebServer(nats_server.url, tmp_path_factory.mktemp("logs"), {"FLEXGATE_API_TOKENS": TOKEN},
                       workers=1).start()
    yield server
    server.stop()


def send_raw(port: int, data: bytes) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        while sock.recv(65536):
            pass


def logged_lines(server: WebServer, marker: str) -> list[str]:
    return [line for line in server.log_text().splitlines() if marker in line]


@pytest.mark.parametrize("path", ["/api/x%0A2026-11-30%2010:00:00,000%20ERROR%20FORGED",
                                  "/api/x%0D%0A2026-11-30%2010:00:00,000%20ERROR%20FORGED",
                                  "/x%0A2026-11-30%2010:00:00,000%20ERROR%20FORGED"])
def test_a_path_cannot_forge_a_log_line(locked, path):
    response = requests.get(locked.url + path, timeout=5)
    assert response.status_code in (401, 404)
    wait_until(lambda: logged_lines(locked, "FORGED"), 5, "the request in the access log")
    text = locked.log_text()
    assert not any(line.startswith(FORGED) for line in text.splitlines())
    assert "\\x0a2026-11-30" in text


def test_terminal_escapes_nuls_and_quotes_are_escaped(locked):
    requests.get(locked.url + "/api/esc%1B%5B31mRED%00NUL%22q", headers={"User-Agent": 'ua" 200 0 1ms "x'}, timeout=5)
    wait_until(lambda: logged_lines(locked, "RED"), 5, "the request in the access log")
    raw_log = locked.log.read_bytes()
    assert b"\x1b" not in raw_log and b"\x00" not in raw_log
    line = logged_lines(locked, "RED")[-1]
    assert '\\x1b[31mRED\\x00NUL\\"q' in line
    assert 'ua\\" 200 0 1ms \\"x' in line  # a quote cannot close the field and fake the ones after it


def test_no_token_reaches_the_log_from_a_malformed_request_line(locked):
    send_raw(locked.port, b"GET /api/metrics/live?access_token=SECRET-1&x=\x01 HTTP/1.1\r\nHost: x\r\n\r\n")
    send_raw(locked.port, f"GET /api/x?access_token={TOKEN}&y=\x02 HTTP/1.1\r\n\r\n".encode())
    send_raw(locked.port, b"GET /api/m HTTP/1.1\r\nAuthorization: Bearer SECRET-2\r\nContent-Length: x\r\n\r\n")
    wait_until(lambda: len(logged_lines(locked, "malformed request")) >= 3, 5, "three refused requests logged")
    text = locked.log_text()
    assert "SECRET-1" not in text and "SECRET-2" not in text and TOKEN not in text
    assert "access_token=[redacted]" in text


def test_a_good_token_in_the_query_never_reaches_the_log(locked):
    assert requests.get(locked.url + "/api/stream/stats", params={"access_token": TOKEN}, timeout=5).status_code
    assert TOKEN not in locked.log_text()


@pytest.mark.parametrize(("head", "logged"), [
    (b"POST /api/events/dup%0A2026 HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
     '"POST /api/events/dup\\x0a2026 HTTP/1.1" 400 '),
    (b"GET /api/bad-length%1B[31m HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
     '"GET /api/bad-length\\x1b[31m HTTP/1.1" 400 '),
])
def test_a_refused_content_length_is_logged_with_its_method_and_path_escaped(locked, head, logged):
    send_raw(locked.port, head)
    wait_until(lambda: logged_lines(locked, logged), 5, f"the access line {logged}")
    assert "None HTTP/1.1" not in locked.log_text()
