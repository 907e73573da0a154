"""The nginx site's access log names every route of the app, and nothing a client made up."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from flexgate_stream import create_app
from flexgate_stream.settings import Settings

pytestmark = pytest.mark.timeout(30)

SITE = Path(__file__).resolve().parents[2] / "conf" / "nginx" / "flexgate-stream.conf"


def logged_path(status: int, request_uri: str) -> str:
    """What the site's map makes of a request (first matching regex, as nginx does), here with Python's re."""
    block = re.search(r'map "\$status \$request_uri" \$flexgate_stream_path \{(.*?)\n\}', SITE.read_text(), re.S)
    assert block, f"{SITE.name} lost its map of logged paths"
    default = re.search(r'default "([^"]*)";', block.group(1))
    assert default
    for pattern, value in re.findall(r'"~([^"]*)" (\S+);', block.group(1)):
        assert value == "$1"
        found = re.search(pattern, f"{status} {request_uri}")
        if found:
            return found.group(1)
    return default.group(1)


def test_every_route_of_the_app_is_logged_by_its_path_whatever_the_answer():
    app = create_app(Settings(nats_servers=("nats://127.0.0.1:1",)))
    routes = [rule.rule for rule in app.url_map.iter_rules() if rule.endpoint != "static"]
    assert "/api/stream/metrics" in routes
    for route in routes:
        for status in (200, 401, 404, 502):
            assert logged_path(status, f"{route}?access_token=tok&x=1") == route
            assert logged_path(status, route) == route


@pytest.mark.parametrize("request_uri", ["/api/tokSECRET", "/api/stream/metrics/tokSECRET", "/tokSECRET",
                                         "/api/stream/metrics;token=tokSECRET", "//api/stream/metrics",
                                         "/static/js/tokSECRET.js", "/api/%73tream/metrics"])
def test_any_other_path_answered_with_an_error_is_not_logged(request_uri):
    assert logged_path(404, f"{request_uri}?key=x") == "[other]"


def test_a_file_the_app_served_is_logged_without_its_query():
    assert logged_path(200, "/static/js/stream.js?v=tok") == "/static/js/stream.js"
    assert logged_path(304, "/static/css/dashboard.css") == "/static/css/dashboard.css"
