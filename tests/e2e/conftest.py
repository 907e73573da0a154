"""End-to-end fixtures: real gunicorn (conf/gunicorn.conf.py, 2 gevent workers) against real nats-server.

Usage, for any e2e test (the dashboard's browser tests included)::

    def test_page(web_server, nats_client):
        # a shared server for the session: 2 workers, the session nats_server, short timings
        # (FLEXGATE_HEARTBEAT_SECONDS=1, FLEXGATE_TICK_SECONDS=1, FLEXGATE_RETRY_MS=500, FLEXGATE_BODY_TIMEOUT=1), and
        # FLEXGATE_EVENTS_OPEN=true so tests post gateway events without a token
        seq = nats_client.publish_snapshot()            # like the publisher: encode() + Nats-Msg-Id
        stream = SSEClient(web_server.url + "/api/stream/metrics")
        ...

    def test_locked(start_web):
        # a server of your own, with environment overrides; stopped by PID at the end of the test
        server = start_web({"FLEXGATE_API_TOKENS": "s3cret"})  # also nats_url=, workers=, ready=False
        server.url, server.pid, server.worker_pids()
        server.kill_worker()          # SIGKILL one worker; gunicorn starts another
        seconds = server.stop()       # SIGTERM the master, wait, return how long it took

``WebServer`` starts gunicorn on a free 127.0.0.1 port with its own PROMETHEUS_MULTIPROC_DIR, and waits
until ``/readyz`` answers ready from a worker whose master is the process it started (``server`` field)
and every worker is up. ``NatsClient`` publishes snapshots and alerts from the test process;
``SSEClient`` reads a stream (``next()``, ``data_events(n)``, ``last_id``); ``open_spread(url, n)`` opens n
streams over both workers. All in tests/e2e/support.py.

    def test_proxied(nginx_server, start_nginx, start_web):
        # Debian's nginx with conf/nginx/flexgate-stream.conf in front of the session web_server
        requests.get(nginx_server.url + "/healthz")
        # or in front of a server of your own, with a short proxy_read_timeout
        front = start_nginx(start_web(), read_timeout="2s")

    def test_dashboard(web_server, browser):
        # the run's one Chromium (tests using it run last); the contexts this test opens close after it
        page = new_page(browser, web_server.url)      # tests/e2e/dashboard_support.py

Status: /api/stream/metrics (and ?route=, ?upstream=), /api/stream/alerts, /api/stream/stats, /api/metrics/live,
/api/metrics/routes and /upstreams, POST /api/events, /healthz, /readyz and /metrics work end to end against these
fixtures (tests/e2e/test_stream_*.py, test_stats_health.py, test_security.py, test_lifecycle.py).
``NatsClient.publish_index(pages)`` and ``put_beat(beat)`` publish the index and publisher heartbeats;
tests/contract.py checks fixtures against the message contract.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.e2e.dashboard_support import launch_chromium
from tests.e2e.nginx_server import NginxServer
from tests.e2e.support import NatsClient, WebServer


@pytest.fixture(scope="session")
def chromium():
    """One headless Chromium (Playwright) for the whole run; tests open their own contexts in it."""
    yield from launch_chromium()


@pytest.fixture
def browser(chromium):
    """The session's Chromium; every context (with its pages) the test opened is closed after it."""
    before = set(chromium.contexts)
    yield chromium
    for context in chromium.contexts:
        if context not in before:
            context.close()


@pytest.fixture(scope="session")
def nats_client(nats_server) -> Iterator[NatsClient]:
    """A publishing connection to the session nats_server; the streams exist once it is made."""
    client = NatsClient(nats_server.url)
    yield client
    client.close()


@pytest.fixture(scope="session")
def web_server(nats_server, nats_client, tmp_path_factory) -> Iterator[WebServer]:
    """One gunicorn (2 workers) for the session, on the session nats_server."""
    server = WebServer(nats_server.url, tmp_path_factory.mktemp("web")).start()
    yield server
    server.stop()


@pytest.fixture
def start_web(nats_server, nats_client, tmp_path) -> Iterator[Callable[..., WebServer]]:
    """A factory of gunicorn servers with environment overrides, all stopped after the test."""
    started: list[WebServer] = []

    def start(env: dict[str, str] | None = None, *, nats_url: str | None = None, workers: int = 2,
              ready: bool = True) -> WebServer:
        workdir = tmp_path / f"web{len(started)}"
        workdir.mkdir()
        server = WebServer(nats_url or nats_server.url, workdir, env, workers)
        started.append(server)
        return server.start(ready=ready)

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def nginx_server(web_server, tmp_path_factory) -> Iterator[NginxServer]:
    """nginx (conf/nginx/flexgate-stream.conf) in front of the session web_server."""
    server = NginxServer(web_server.port, tmp_path_factory.mktemp("nginx")).start()
    yield server
    server.stop()


@pytest.fixture
def start_nginx(tmp_path) -> Iterator[Callable[..., NginxServer]]:
    """A factory of nginx servers in front of a given WebServer, all stopped after the test."""
    started: list[NginxServer] = []

    def start(web: WebServer, read_timeout: str | None = None) -> NginxServer:
        server = NginxServer(web.port, tmp_path / f"nginx{len(started)}", read_timeout)
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.stop()
