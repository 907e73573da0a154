"""No credential in nginx's logs: the shipped site file in front of a real gunicorn, and the pod's nginx.conf."""

from __future__ import annotations

import re
import socket
import subprocess
from pathlib import Path

import pytest

from tests.e2e.nginx_server import NGINX, ROOT, SITE, SITE_ACCESS_LOG, NginxServer
from tests.e2e.support import SSEClient, WebServer
from tests.waiting import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

TOKEN = "tokSECRETabc123"  # configured
# Not configured: caught by what precedes them.
BEARER, ACCESS, PARAM, KEY = "patBEARER1x", "patACCESS2x", "patTOKEN3x", "patKEY4x"
SECRETS = (TOKEN, BEARER, ACCESS, PARAM, KEY)
AUTH = f"Host: x\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n"
# (request as sent, what its access log line holds)
REQUESTS = [
    (f"GET /api/stream/stats?access_token={TOKEN} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
     '"GET /api/stream/stats HTTP/1.1" 200 '),
    (f"GET /api/stream/stats?token={PARAM}&key={KEY} HTTP/1.1\r\n{AUTH}\r\n", '"GET /api/stream/stats HTTP/1.1" 200 '),
    (f"GET /api/stream/stats?access_token={ACCESS} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
     '"GET /api/stream/stats HTTP/1.1" 401 '),
    (f"GET /healthz?key={KEY} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {BEARER}\r\nConnection: close\r\n"
     f"Referer: http://127.0.0.1/?access_token={TOKEN}\r\nUser-Agent: agent {TOKEN}\r\nX-Api-Key: {TOKEN}\r\n\r\n",
     '"GET /healthz HTTP/1.1" 200 '),
    (f"POST /api/events?token={PARAM} HTTP/1.1\r\n{AUTH}Content-Type: application/json\r\n"
     "Content-Length: 2\r\n\r\n{}",
     '"POST /api/events HTTP/1.1" 4'),
    (f"GET /api/{TOKEN}/stats;token={PARAM} HTTP/1.1\r\n{AUTH}\r\n", '"GET [other] HTTP/1.1" 404 '),
    # Refused by nginx for its size, which its error log would quote with the query string at level error.
    (f"POST /api/events?access_token={TOKEN} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
     "Content-Length: 100000\r\nConnection: close\r\n\r\n", '"POST /api/events HTTP/1.1" 413 '),
    # Refused by nginx itself: a malformed header line, a malformed request line.
    (f"GET /api/stream/stats?key={KEY} HTTP/1.1\r\nHost: x\r\nX-Api-Key {TOKEN}\r\n\r\n",
     '"GET /api/stream/stats HTTP/1.1" 400 '),
    (f"GET /api/line?access_token={TOKEN}&y=\x01 HTTP/1.1\r\nHost: x\r\n\r\n", '"OTHER [other] -" 400 '),
]


def exchange(port: int, request: str) -> bytes:
    """Send ``request`` as it is; the answer, up to the server closing the connection."""
    answer = b""
    with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
        sock.sendall(request.encode("latin-1"))
        while part := sock.recv(65536):
            answer += part
    return answer


def assert_no_secret(front: NginxServer, web: WebServer) -> None:
    """No secret in any log of nginx's prefix (access, error, the http block's combined) nor in gunicorn's."""
    logs = {path.name: path.read_text(errors="replace") for path in front.prefix.glob("*.log")}
    assert set(logs) >= {"access.log", "error.log", "combined.log"}
    logs["gunicorn"] = web.log_text()
    for name, text in logs.items():
        for secret in SECRETS:
            assert secret.lower() not in text.lower(), f"{name} holds {secret}:\n{text[-3000:]}"


def test_no_credential_reaches_a_log_through_nginx_wherever_a_client_puts_it(start_web, start_nginx, nats_client):
    web = start_web({"FLEXGATE_API_TOKENS": TOKEN}, workers=1)
    front = start_nginx(web)
    nats_client.publish_snapshot()  # a fresh snapshot: the stats answer 200
    stream = SSEClient(front.url + "/api/stream/metrics", params={"access_token": TOKEN})
    try:
        assert stream.next().json()["type"] == "connected"
    finally:
        stream.close()
    for request, _logged in REQUESTS:
        assert exchange(front.port, request).startswith(b"HTTP/1.1 ")
    expected = ['"GET /api/stream/metrics HTTP/1.1" 200 '] + [logged for _request, logged in REQUESTS]
    # nginx's probe for its identity, then one line per request.
    wait_until(lambda: len(front.access_log().splitlines()) > len(expected), 15, "a line per request")
    assert_no_secret(front, web)

    def all_logged() -> bool:
        text = front.access_log()
        return all(text.count(line) >= expected.count(line) for line in expected)

    try:
        wait_until(all_logged, 15, "every request in nginx's access log, by method, path and status")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; it holds:\n{front.access_log()}") from None
    line = next(x for x in front.access_log().splitlines() if '"GET /api/stream/stats HTTP/1.1" 200 ' in x)
    assert re.search(rf" \d+ \d+\.\d{{3}} upstream=127\.0\.0\.1:{web.port} upstream_status=200 connect=\d+\.\d{{3}} "
                     r"header=\d+\.\d{3} response=\d+\.\d{3}$", line), line
    assert_no_secret(front, web)


def pod_site() -> str:
    """The shipped site file as podman/Containerfile.services renders it, by the same sed expressions."""
    containerfile = (ROOT / "podman" / "Containerfile.services").read_text()
    found = re.search(r"sed((?:\s+-e\s+\"[^\"]*\"\s*\\?)+)\s+/etc/flexgate/src/flexgate-stream\.conf"
                      r" > /etc/flexgate/nginx/site\.conf", containerfile)
    assert found, "Containerfile.services no longer renders site.conf with sed"
    expressions = re.findall(r"-e\s+\"([^\"]*)\"", found.group(1))
    args = [arg for expression in expressions for arg in ("-e", expression)]
    return subprocess.run(["sed", *args, str(SITE)], capture_output=True, text=True, check=True).stdout


def test_the_pods_nginx_conf_with_its_site_passes_nginx_t_and_logs_to_stdout_in_the_site_format(tmp_path: Path):
    if not Path(NGINX).exists():
        pytest.skip("nginx is not installed")
    site = pod_site()
    assert SITE_ACCESS_LOG not in site
    assert site.count("access_log /dev/stdout flexgate_stream;") == 1
    (tmp_path / "site.conf").write_text(site)
    conf = (ROOT / "podman" / "nginx.conf").read_text().replace("/tmp/nginx", f"{tmp_path}/nginx")  # pid, temp paths
    assert conf.count("include /etc/flexgate/nginx/site.conf;") == 1
    (tmp_path / "nginx.conf").write_text(conf.replace("/etc/flexgate/nginx/site.conf", f"{tmp_path}/site.conf"))
    checked = subprocess.run([NGINX, "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf"),
                              "-e", str(tmp_path / "error.log")], capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0, checked.stderr
    assert "test is successful" in checked.stderr
