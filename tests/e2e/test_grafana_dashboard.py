"""conf/grafana/flexgate-stream.json against a real Prometheus (Debian's) scraping a running stack: real
gunicorn, a real publisher on PostgreSQL, nats-server. Every panel's every query must return data."""

from __future__ import annotations

import json
import math
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from flexgate_stream.devstack.processes import dies_with_parent, free_port, stop_process, wait_for
from flexgate_stream.devstack.servers import NatsServer
from flexgate_stream.requestlog import schema
from tests.e2e.support import ROOT, SSEClient, open_spread
from tests.integration.publishers import Worker
from tests.waiting import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(150)]

DASHBOARD = ROOT / "conf" / "grafana" / "flexgate-stream.json"
PANELS = {"Clients", "Delivery", "Freshness", "Publishers", "Tick duration", "Store usage", "Consumer lag", "Errors"}
# What Grafana fills in: a rate window of a few 1 s scrapes, and every instance.
VARIABLES = {"$__rate_interval": "10s", "$instance": ".*", "${instance}": ".*"}


class Prometheus:
    """Debian's prometheus on a free loopback port, with its own config and TSDB, stopped by PID."""

    def __init__(self, workdir: Path, target_port: int) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.tsdb = workdir / "tsdb"
        self.config = workdir / "prometheus.yml"
        self.config.write_text(
            "global: {scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s}\n"
            "scrape_configs:\n"
            "  - job_name: flexgate-stream\n"
            f"    static_configs: [{{targets: ['127.0.0.1:{target_port}']}}]\n")
        self.log = workdir / "prometheus.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, binary: str) -> Prometheus:
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                [binary, f"--config.file={self.config}", f"--storage.tsdb.path={self.tsdb}",
                 f"--web.listen-address=127.0.0.1:{self.port}"],
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                preexec_fn=dies_with_parent(signal.SIGTERM))
        wait_for(self._ready, 30, f"prometheus (log: {self.log})", self.proc)
        return self

    def _ready(self) -> bool:
        try:
            flags = requests.get(self.url + "/api/v1/status/flags", timeout=2).json()["data"]
        except (requests.RequestException, ValueError, KeyError):
            return False
        if flags.get("storage.tsdb.path") != str(self.tsdb):
            raise RuntimeError(f"port {self.port} is served by another Prometheus ({flags.get('storage.tsdb.path')})")
        return requests.get(self.url + "/-/ready", timeout=2).status_code == 200

    def query(self, expr: str) -> list[dict]:
        body = requests.get(self.url + "/api/v1/query", params={"query": expr}, timeout=5).json()
        assert body["status"] == "success", (expr, body)
        return body["data"]["result"]

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)


def panel_queries() -> list[tuple[str, str]]:
    """(panel title, query with Grafana's variables filled in) for every target of every panel."""
    found = []
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        for target in panel["targets"]:
            expr = target["expr"]
            for name, value in VARIABLES.items():
                expr = expr.replace(name, value)
            assert "$" not in expr, f"an unknown variable in {panel['title']}: {expr}"
            found.append((panel["title"], expr))
    return found


def has_data(result: list[dict]) -> bool:
    """At least one series with a number (histogram_quantile over no observations gives NaN)."""
    return any(math.isfinite(float(series["value"][1])) for series in result)


@pytest.fixture
def stack(start_web, db, database_url, tmp_path) -> Iterator[tuple[str, list[SSEClient]]]:
    """nats-server, a publisher ticking every second on PostgreSQL, gunicorn (2 workers), streams on both."""
    nats = NatsServer(tmp_path / "nats", log_file=tmp_path / "nats.log").start()
    schema.upgrade(db)
    publisher = Worker(tmp_path / "publisher.log", {"DATABASE_URL": database_url, "NATS_SERVERS": nats.url,
                                                    "FLEXGATE_TICK_SECONDS": "1"})
    clients: list[SSEClient] = []
    try:
        server = start_web(nats_url=nats.url)  # ready once the publisher has made the streams
        clients = open_spread(server.url + "/api/stream/metrics", 4)
        clients.append(SSEClient(server.url + "/api/stream/alerts"))
        yield server.url, clients
    finally:
        for client in clients:
            client.close()
        stop_process(publisher.proc)
        nats.stop()


def test_every_panel_of_the_dashboard_gets_data_from_a_real_prometheus(stack, tmp_path):
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("prometheus is not installed (apt-get install prometheus), so the dashboard is not checked.")
    dashboard = json.loads(DASHBOARD.read_text())
    assert {panel["title"] for panel in dashboard["panels"]} >= PANELS
    queries = panel_queries()
    assert all(panel["targets"] for panel in dashboard["panels"])

    web_url, _clients = stack
    prometheus = Prometheus(tmp_path, int(web_url.rsplit(":", 1)[1])).start(binary)
    try:
        wait_until(lambda: prometheus.query('up{job="flexgate-stream"} == 1'), 20, "Prometheus scraping gunicorn")
        missing = list(queries)

        def all_answered() -> bool:
            missing[:] = [(title, expr) for title, expr in missing if not has_data(prometheus.query(expr))]
            return not missing

        try:
            wait_until(all_answered, 60, "every panel's queries to return data", interval=1.0)
        except AssertionError:
            raise AssertionError(f"no data for: {missing}") from None
    finally:
        prometheus.stop()
