"""The dashboard with thousands of routes, and its charts' lone buckets, in real Chromium against real gunicorn
(2 gevent workers, API tokens on) and nats-server.

The test publishes what the publisher would (the busiest routes plus "(other)", the paged index of every
route and upstream), each message checked against flexgate_stream/messages.schema.json.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator

import pytest

from flexgate_stream.devstack.samples import sample_index_pages, sample_snapshot
from flexgate_stream.devstack.servers import NatsServer
from flexgate_stream.messages import OTHER
from tests.contract import checked
from tests.e2e.dashboard_support import (
    CHROMIUM,
    Bus,
    assert_clean,
    by_testid,
    launch_chromium,
    new_page,
    save_screenshot,
)
from tests.e2e.support import WebServer

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.timeout(120),
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing: apt-get install chromium"),
]

expect = pytest.importorskip("playwright.sync_api").expect

TOKEN = secrets.token_urlsafe(16)
ROUTES = {f"/shop/items/p-{i:05d}/reviews": 90_000 - 7 * i for i in range(3000)}  # busiest first
UPSTREAMS = {f"svc-{i:03d}": 40_000 - 11 * i for i in range(300)}
BUSIEST = list(ROUTES)[:20]
ROW_NAMES = "() => [...document.querySelectorAll('[data-testid=route-row]')].map(r => r.dataset.name)"


@pytest.fixture(scope="module")
def browser():
    yield from launch_chromium()


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[tuple[Bus, WebServer]]:
    base = tmp_path_factory.mktemp("dashboard-routes")
    nats = NatsServer(base / "nats", log_file=base / "nats.log").start()
    bus = Bus(nats.url)
    bus.ensure_streams()
    web = WebServer(nats.url, base / "web", {"FLEXGATE_API_TOKENS": TOKEN}).start()
    yield bus, web
    web.stop()
    nats.stop()


def open_dashboard(browser, web: WebServer, path: str = "/"):
    """The page, past the token dialog (every request it makes needs the token)."""
    page = new_page(browser, web.url, path=path)
    page.get_by_label("API token", exact=True).fill(TOKEN)
    by_testid(page, "token-submit").click()
    return page


def busiest_snapshot(total: int) -> dict:
    """A summary as the publisher shapes it at 3,000 routes: the 20 busiest, then "(other)" for the rest."""
    routes = {name: ROUTES[name] for name in BUSIEST} | {OTHER: sum(ROUTES.values()) - sum(ROUTES[n] for n in BUSIEST)}
    upstreams = {name: UPSTREAMS[name] for name in list(UPSTREAMS)[:5]}
    upstreams[OTHER] = sum(UPSTREAMS.values()) - sum(upstreams.values())
    return checked("Snapshot", sample_snapshot(total, routes=routes, route_count=len(ROUTES), upstreams=upstreams,
                                               upstream_count=len(UPSTREAMS)))[0]


def test_route_table_shows_the_busiest_the_rest_and_the_count_and_pages_through_every_route(stack, browser):
    bus, web = stack
    bus.publish_index(checked("GroupIndex", *sample_index_pages("routes", ROUTES, per_page=100, limit=5000)))
    bus.publish_index(checked("GroupIndex", *sample_index_pages("upstreams", UPSTREAMS, per_page=100)))
    bus.publish_snapshot(busiest_snapshot(1_111_000))
    page = open_dashboard(browser, web)
    expect(by_testid(page, "value-requests")).to_have_text("1.11M", timeout=10000)

    expect(by_testid(page, "route-row")).to_have_count(20)
    assert page.evaluate(ROW_NAMES) == BUSIEST
    rest = by_testid(page, "routes-other-row")
    expect(rest).to_contain_text("2,980 other routes")
    expect(rest).to_have_class(re.compile(r"\bis-rest\b"))
    assert rest.locator("button").count() == 0  # the rest is not a route: nothing to select
    assert page.evaluate("() => document.querySelector('[data-testid=routes-body]').lastElementChild.dataset.testid"
                         ) == "routes-other-row"
    expect(by_testid(page, "routes-count")).to_have_text("3,000 routes in all · the 20 busiest shown")
    expect(by_testid(page, "upstreams-count")).to_have_text("300 upstreams in all · the 5 busiest shown")
    save_screenshot(page, "dashboard-busiest-routes.png")

    by_testid(page, "routes-browse").click()  # every route, a page at a time, with the token
    expect(by_testid(page, "routes-page-status")).to_have_text("Page 1 of 30")
    expect(by_testid(page, "route-row")).to_have_count(100)
    assert page.evaluate(ROW_NAMES) == list(ROUTES)[:100]
    expect(by_testid(page, "routes-other-row")).to_have_count(0)
    expect(by_testid(page, "routes-page-prev")).to_be_disabled()
    by_testid(page, "routes-page-next").click()
    by_testid(page, "routes-page-next").click()
    expect(by_testid(page, "routes-page-status")).to_have_text("Page 3 of 30")
    expect(by_testid(page, "routes-count")).to_contain_text("3,000 routes in all · 201–300, busiest first")
    assert page.evaluate(ROW_NAMES) == list(ROUTES)[200:300]
    bus.publish_snapshot(busiest_snapshot(1_222_000))  # live figures go on; the page on screen stays
    expect(by_testid(page, "value-requests")).to_have_text("1.22M", timeout=10000)
    assert page.evaluate(ROW_NAMES) == list(ROUTES)[200:300]
    by_testid(page, "upstreams-browse").click()
    expect(by_testid(page, "upstreams-page-status")).to_have_text("Page 1 of 3")
    expect(by_testid(page, "upstream-row")).to_have_count(100)
    save_screenshot(page, "dashboard-every-route.png")

    by_testid(page, "routes-browse").click()  # back to the busiest
    expect(by_testid(page, "route-row")).to_have_count(20)
    expect(by_testid(page, "routes-other-row")).to_have_count(1)
    expect(by_testid(page, "routes-pager")).to_be_hidden()
    assert_clean(page)


def test_a_route_outside_the_busiest_shows_its_figures_from_the_index(stack, browser):
    bus, web = stack
    bus.publish_index(checked("GroupIndex", *sample_index_pages("routes", ROUTES, per_page=100)))
    bus.publish_snapshot(busiest_snapshot(1_333_000))
    page = open_dashboard(browser, web)
    expect(by_testid(page, "value-requests")).to_have_text("1.33M", timeout=10000)
    by_testid(page, "routes-browse").click()
    by_testid(page, "routes-page-next").click()
    far = list(ROUTES)[150]
    page.get_by_role("button", name=f"Show only route {far}").click()
    expect(by_testid(page, "route-filter-name")).to_have_text(far)
    expect(by_testid(page, "route-entry-text")).to_contain_text("not among the busiest routes", timeout=10000)
    day = by_testid(page, "route-entry-table").locator("tr[data-window=last24Hours]")
    expect(day).to_contain_text(f"{ROUTES[far]:,}")
    save_screenshot(page, "dashboard-route-from-index.png")
    by_testid(page, "route-filter-clear").click()
    expect(by_testid(page, "route-entry")).to_be_hidden()
    assert_clean(page)


def test_a_latency_bucket_alone_between_gaps_is_drawn_as_a_point(stack, browser):
    bus, web = stack
    snapshot = sample_snapshot(2_000)
    values = {"p50": 120.0, "p95": 300.0, "p99": 600.0}
    for key, value in values.items():  # requests in bucket 5 only, and in buckets 9 and 10: a line between those
        for i, point in enumerate(snapshot["latency"][key]["data"]):
            point["value"] = value if i == 5 else value / 2 if i in (9, 10) else None
    bus.publish_snapshot(checked("Snapshot", snapshot)[0])
    page = open_dashboard(browser, web)
    expect(by_testid(page, "value-requests")).to_have_text("2K", timeout=10000)
    drawn = page.evaluate("""() => {
        const chart = Chart.getChart(document.querySelector('[data-testid=chart-latency] canvas'));
        const ratio = chart.currentDevicePixelRatio;
        return chart.data.datasets.map((dataset, i) => {
            const points = chart.getDatasetMeta(i).data;
            const alone = points[5];
            const at = [Math.round(alone.x * ratio), Math.round(alone.y * ratio)];
            const [r, g, b, a] = chart.ctx.getImageData(at[0], at[1], 1, 1).data;
            return {color: dataset.borderColor, radii: points.map((p) => p.options.radius), skipped: alone.skip,
                    pixel: [r, g, b, a]};
        });
    }""")
    save_screenshot(page, "dashboard-lone-bucket.png")
    for dataset in drawn:
        assert dataset["radii"][5] > 0 and not dataset["skipped"], dataset
        assert dataset["radii"][9] == dataset["radii"][10] == 0, dataset  # joined by their line: no dots
        colour = [int(dataset["color"][i:i + 2], 16) for i in (1, 3, 5)]
        assert dataset["pixel"][3] == 255, dataset  # painted, in the dataset's own colour
        assert all(abs(a - b) <= 40 for a, b in zip(dataset["pixel"][:3], colour, strict=True)), dataset
    assert_clean(page)
