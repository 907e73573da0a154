"""The dashboard page and its static files, through Flask's test client (no browser, no servers)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from flexgate_stream import create_app
from flexgate_stream.settings import Settings
from flexgate_stream.web import dashboard

PACKAGE = Path(dashboard.__file__).resolve().parents[1]
STATIC = PACKAGE / "static"

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def client():
    app = create_app(Settings(nats_servers=("nats://127.0.0.1:1",)))
    return app.test_client()


def test_index_serves_the_dashboard_shell(client):
    response = client.get("/")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    html = response.get_data(as_text=True)
    for testid in ("connection-chip", "last-update", "connection-banner", "value-requests", "value-rps",
                   "value-avg-latency", "value-p95-latency", "value-p99-latency", "value-success-rate",
                   "value-error-rate", "chart-request-rate", "chart-latency", "chart-error-rate",
                   "chart-status-codes", "routes-table", "upstreams-table", "route-filter-clear", "alerts-feed",
                   "token-dialog", "routes-count", "routes-browse", "routes-pager", "routes-page-status",
                   "upstreams-count", "upstreams-browse", "route-entry"):
        assert f'data-testid="{testid}"' in html, testid
    assert 'aria-busy="true"' in html  # the skeleton shows until the first snapshot


def test_index_sets_a_same_origin_content_security_policy(client):
    policy = client.get("/").headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy
    assert "connect-src 'self'" in policy
    assert "unsafe-inline" not in policy


def test_every_asset_the_page_names_is_served(client):
    html = client.get("/").get_data(as_text=True)
    assets = re.findall(r'(?:src|href)="(/static/[^"]+)"', html)
    assert any(a.endswith("chart.umd.min.js") for a in assets)
    assert any(a.endswith("dashboard.js") for a in assets)
    for asset in assets:
        response = client.get(asset)
        assert response.status_code == 200, asset
        if asset.endswith(".js"):
            # Browsers refuse module scripts served with a non-JavaScript type.
            assert response.mimetype in ("text/javascript", "application/javascript"), asset
        response.close()


def test_every_module_import_resolves_to_a_served_file(client):
    modules = sorted((STATIC / "js").glob("*.js"))
    assert modules
    for module in modules:
        source = module.read_text()
        for target in re.findall(r'^import .* from "(\./[^"]+)";$', source, flags=re.M):
            path = (module.parent / target).resolve()
            assert path.is_file(), f"{module.name} imports {target}"
            response = client.get(f"/static/js/{path.name}")
            assert response.status_code == 200
            response.close()


def test_the_vendored_chart_library_has_its_licence_and_pinned_version(client):
    vendor = STATIC / dashboard.CHART_JS
    version = re.search(r"chartjs-(\d+\.\d+\.\d+)/", dashboard.CHART_JS).group(1)
    assert vendor.is_file()
    assert f"Chart.js v{version}" in vendor.read_text()[:200]
    assert "MIT License" in (vendor.parent / "LICENSE.md").read_text()
    assert version in (vendor.parent / "VERSION").read_text()


def test_the_dashboard_module_reads_neither_the_database_nor_nats():
    tree = ast.parse(Path(dashboard.__file__).read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not {name for name in imported if name.split(".")[0] in ("psycopg2", "nats")}
    assert "flexgate_stream.requestlog.database" not in imported
