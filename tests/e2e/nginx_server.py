"""Debian's nginx in front of a test gunicorn, with conf/nginx/flexgate-stream.conf as shipped.

The site file is rendered with a free port, the gunicorn upstream, the access log in the test's folder
and (optionally) a short proxy_read_timeout; each replacement must match exactly once, so a reshaped site
file fails loudly. nginx runs in the foreground (``daemon off``) under its own prefix (pid, temp paths and
logs in the test's folder; the error log at warn, the pod's level) and is stopped by PID.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import uuid
from pathlib import Path

import requests

from flexgate_stream.devstack.processes import dies_with_parent, free_port, stop_process, wait_for

ROOT = Path(__file__).resolve().parents[2]
SITE = ROOT / "conf" / "nginx" / "flexgate-stream.conf"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
MISSING = "nginx is not installed (apt-get install nginx-light), so the tests through nginx are skipped."
IDENTITY_PATH = "/.test-nginx-identity"
SITE_ACCESS_LOG = "access_log /var/log/nginx/flexgate-stream.access.log flexgate_stream;"
SITE_ERROR_LOG = "error_log /var/log/nginx/flexgate-stream.error.log crit;"

# What a distribution's nginx.conf around the site may hold: gzip on for event streams too, so the
# site file must switch it off itself; an access log in the combined format (query string, Referer,
# User-Agent), so the site file must log its own way.
MAIN_CONF = """\
{user}
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
worker_rlimit_nofile 8192;
events {{ worker_connections 4096; }}
http {{
    default_type application/octet-stream;
    access_log {prefix}/combined.log combined;
    client_body_temp_path {prefix}/tmp/body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;
    gzip on;
    gzip_proxied any;
    gzip_min_length 1;
    gzip_types text/event-stream application/json text/plain;
    include {prefix}/site.conf;
}}
"""


def render_site(upstream_port: int, port: int, identity: str, prefix: Path, read_timeout: str | None = None) -> str:
    """The shipped site file pointed at ``upstream_port``, listening on 127.0.0.1:``port``, logging in ``prefix``."""
    text = SITE.read_text()
    replacements = [("server 127.0.0.1:8000;", f"server 127.0.0.1:{upstream_port};"),
                    ("listen 80;", f"listen 127.0.0.1:{port};"),
                    (SITE_ACCESS_LOG, f"access_log {prefix}/access.log flexgate_stream;"),
                    (SITE_ERROR_LOG, f"error_log {prefix}/site-error.log crit;"),
                    ("server_name _;",
                     f'server_name _;\n    location = {IDENTITY_PATH} {{ return 200 "{identity}"; }}')]
    if read_timeout is not None:
        replacements.append(("proxy_read_timeout 120s;", f"proxy_read_timeout {read_timeout};"))
    for old, new in replacements:
        assert text.count(old) == 1, f"{SITE.name} should hold {old!r} exactly once"
        text = text.replace(old, new)
    return text


class NginxServer:
    """nginx on a free 127.0.0.1 port, proxying to gunicorn on ``upstream_port``."""

    def __init__(self, upstream_port: int, prefix: Path, read_timeout: str | None = None) -> None:
        self.upstream_port = upstream_port
        self.prefix = Path(prefix)
        self.read_timeout = read_timeout
        self.identity = uuid.uuid4().hex
        self.port = 0
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 15.0) -> NginxServer:
        if not os.access(NGINX, os.X_OK):
            import pytest

            pytest.skip(MISSING)
        (self.prefix / "tmp").mkdir(parents=True, exist_ok=True)
        # As root the workers would run as nobody, who cannot reach pytest's 0700 folders.
        user = "user root;" if os.geteuid() == 0 else ""
        (self.prefix / "nginx.conf").write_text(MAIN_CONF.format(prefix=self.prefix, user=user))
        for _attempt in range(5):
            self.port = free_port()
            (self.prefix / "site.conf").write_text(
                render_site(self.upstream_port, self.port, self.identity, self.prefix, self.read_timeout))
            args = [NGINX, "-p", str(self.prefix), "-c", str(self.prefix / "nginx.conf"),
                    "-e", str(self.prefix / "error.log"), "-g", "daemon off;"]
            self.proc = subprocess.Popen(args, cwd=self.prefix, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                                         start_new_session=True, preexec_fn=dies_with_parent(signal.SIGTERM))
            try:
                wait_for(self._answers, timeout, f"nginx (log: {self.prefix / 'error.log'})", self.proc)
                return self
            except Exception:
                self.stop()
        raise RuntimeError(f"nginx did not start: {self.error_log()[-2000:]}")

    def _answers(self) -> bool:
        try:
            body = requests.get(self.url + IDENTITY_PATH, timeout=2).text
        except requests.RequestException:
            return False
        if body != self.identity:
            raise RuntimeError(f"port {self.port} is served by another process.")
        return True

    def stop(self) -> None:
        """Fast shutdown (SIGTERM) by PID."""
        if self.proc is not None:
            stop_process(self.proc, signal.SIGTERM, timeout=10)

    def error_log(self) -> str:
        return self._read("error.log")

    def access_log(self) -> str:
        """What the site's access log (format flexgate_stream) holds so far."""
        return self._read("access.log")

    def _read(self, name: str) -> str:
        path = self.prefix / name
        return path.read_text(errors="replace") if path.exists() else ""
