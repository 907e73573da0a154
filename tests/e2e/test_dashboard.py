"""The dashboard's content in real Chromium against real gunicorn (2 gevent workers) and nats-server.

gunicorn is tests/e2e/support.py's WebServer. Each test publishes its own snapshots, alerts and
gateway events, then reads the page through its ``data-testid`` attributes. Waits are Playwright's
``expect``/``wait_for_*`` with timeouts. Connection behaviour: test_dashboard_connection.py.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator

import pytest
import requests

from flexgate_stream.devstack.samples import sample_alert, sample_snapshot
from flexgate_stream.devstack.servers import NatsServer
from tests.e2e.dashboard_support import (
    CHROMIUM,
    Bus,
    assert_clean,
    by_testid,
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

ROUTE_A = "/api/orders"
ROUTE_B = "/api/users/:id"


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[tuple[NatsServer, Bus, WebServer]]:
    """A nats-server of this module's own (so the first page sees no snapshot yet) and gunicorn on it."""
    base = tmp_path_factory.mktemp("dashboard")
    nats = NatsServer(base / "nats", log_file=base / "nats.log").start()
    bus = Bus(nats.url)
    bus.ensure_streams()
    web = WebServer(nats.url, base / "web").start()
    yield nats, bus, web
    web.stop()
    nats.stop()


def test_numbers_appear_and_follow_each_snapshot(stack, browser):
    nats, bus, web = stack
    page = new_page(browser, web.url)
    expect(by_testid(page, "dashboard")).to_have_attribute("aria-busy", "true")  # skeleton first
    bus.publish_snapshot(sample_snapshot(1_234_567, rps=56.8, error_rate=0.42, availability=99.31))
    expect(by_testid(page, "value-requests")).to_have_text("1.23M", timeout=8000)
    expect(by_testid(page, "connection-chip")).to_have_text("Live")
    expect(by_testid(page, "connection-chip")).to_have_attribute("data-state", "live")
    expect(by_testid(page, "dashboard")).to_have_attribute("aria-busy", "false")
    expect(by_testid(page, "value-rps")).to_have_text("56.8")
    expect(by_testid(page, "value-error-rate")).to_have_text("0.42 %")
    expect(by_testid(page, "value-success-rate")).to_have_text("99.31 %")
    expect(by_testid(page, "value-p95-latency")).to_have_text("182 ms")
    expect(by_testid(page, "last-update")).to_have_text(re.compile(r"Updated (just now|\d+ s ago)"))
    # The age ticks on its own, between snapshots.
    expect(by_testid(page, "last-update")).to_have_attribute("data-age", re.compile(r"^[1-9]\d*$"), timeout=5000)
    expect(by_testid(page, "last-update")).to_have_text(re.compile(r"Updated \d+ s ago"))
    expect(by_testid(page, "route-row")).to_have_count(3)
    expect(by_testid(page, "upstream-row")).to_have_count(2)
    assert int(by_testid(page, "dashboard").get_attribute("data-points")) > 0

    chart_ids = page.evaluate("() => [...document.querySelectorAll('canvas')].map(c => Chart.getChart(c).id)")
    bus.publish_snapshot(sample_snapshot(2_500_000, rps=61.25, error_rate=1.5, availability=97.5))
    expect(by_testid(page, "value-requests")).to_have_text("2.5M", timeout=8000)
    expect(by_testid(page, "value-rps")).to_have_text("61.3")
    expect(by_testid(page, "value-error-rate")).to_have_text("1.5 %")
    # Updated in place: the same Chart.js instances, not new ones.
    assert page.evaluate("() => [...document.querySelectorAll('canvas')].map(c => Chart.getChart(c).id)") == chart_ids
    save_screenshot(page, "dashboard-e2e.png")
    assert_clean(page)


def test_catch_up_snapshots_older_than_the_one_shown_never_replace_it(stack, browser):
    nats, bus, web = stack
    older = [sample_snapshot(1_000 + i) for i in range(5)]  # windows a publisher catches up on
    newest = sample_snapshot(9_100_000)
    page = new_page(browser, web.url)
    bus.publish_snapshot(newest)
    expect(by_testid(page, "value-requests")).to_have_text("9.1M", timeout=8000)
    shown = int(by_testid(page, "dashboard").get_attribute("data-snapshots"))
    bus.publish_snapshot(*older)  # stored after the newest, with older windowEnds
    bus.publish_snapshot(sample_snapshot(7_300_000))
    expect(by_testid(page, "value-requests")).to_have_text("7.3M", timeout=8000)
    assert int(by_testid(page, "dashboard").get_attribute("data-snapshots")) == shown + 1
    assert_clean(page)


def test_memory_stays_flat_over_many_snapshots(stack, browser):
    nats, bus, web = stack
    page = new_page(browser, web.url)
    cdp = page.context.new_cdp_session(page)

    def settle_and_measure(total: int) -> tuple[int, dict]:
        expect(by_testid(page, "value-requests")).to_have_text(f"{total // 1000}K", timeout=30000)
        cdp.send("HeapProfiler.collectGarbage")
        return cdp.send("Runtime.getHeapUsage")["usedSize"], cdp.send("Memory.getDOMCounters")

    # Warm up first: the JIT's compiled code counts in the heap too.
    bus.publish_snapshot(*(sample_snapshot(10_000 + i) for i in range(150)))
    bus.publish_snapshot(sample_snapshot(20_000))
    heap_before, dom_before = settle_and_measure(20_000)
    points = by_testid(page, "dashboard").get_attribute("data-points")
    chart_ids = page.evaluate("() => [...document.querySelectorAll('canvas')].map(c => Chart.getChart(c).id)")

    for batch in range(8):  # 800 more snapshots: over an hour of 5 s ticks
        bus.publish_snapshot(*(sample_snapshot(30_000 + batch * 100 + i) for i in range(100)))
    bus.publish_snapshot(sample_snapshot(40_000))
    heap_after, dom_after = settle_and_measure(40_000)

    assert by_testid(page, "dashboard").get_attribute("data-points") == points  # bounded chart data
    assert page.evaluate("() => [...document.querySelectorAll('canvas')].map(c => Chart.getChart(c).id)") == chart_ids
    assert dom_after["jsEventListeners"] == dom_before["jsEventListeners"], (dom_before, dom_after)
    assert dom_after["nodes"] <= dom_before["nodes"] + 20, (dom_before, dom_after)
    # Keeping each snapshot would cost at least its JSON text (800 x ~5 KB = 4 MB, far more once parsed);
    # V8's own bookkeeping after a forced GC has been seen to wander by up to ~1.4 MB.
    assert heap_after < heap_before + 2_500_000, (heap_before, heap_after)
    assert_clean(page)


def test_route_row_filters_the_page_and_back(stack, browser):
    nats, bus, web = stack
    bus.publish_snapshot(sample_snapshot(700_000, routes={ROUTE_A: 420_000, ROUTE_B: 280_000}))
    bus.publish_snapshot(sample_snapshot(4_242, route=ROUTE_A, routes={ROUTE_A: 4_242}))
    page = new_page(browser, web.url)
    expect(by_testid(page, "value-requests")).to_have_text("700K", timeout=8000)
    expect(by_testid(page, "scope")).to_have_text("All routes")
    expect(by_testid(page, "route-filter-clear")).to_be_hidden()

    page.locator(f"[data-testid=route-row][data-name='{ROUTE_A}']").click()
    expect(page).to_have_url(re.compile(r"\?route=%2Fapi%2Forders$"))
    expect(by_testid(page, "route-filter-name")).to_have_text(ROUTE_A)
    expect(by_testid(page, "value-requests")).to_have_text("4.24K", timeout=8000)
    expect(by_testid(page, "connection-chip")).to_have_text("Live")
    bus.publish_snapshot(sample_snapshot(5_555, route=ROUTE_A, routes={ROUTE_A: 5_555}))
    expect(by_testid(page, "value-requests")).to_have_text("5.55K", timeout=8000)

    by_testid(page, "route-filter-clear").click()
    expect(by_testid(page, "scope")).to_have_text("All routes")
    expect(by_testid(page, "value-requests")).to_have_text("700K", timeout=8000)
    expect(page).not_to_have_url(re.compile(r"route="))

    # The browser's Back button returns to the filtered view.
    page.go_back()
    expect(by_testid(page, "route-filter-name")).to_have_text(ROUTE_A)
    expect(by_testid(page, "value-requests")).to_have_text("5.55K", timeout=8000)

    # The same by keyboard, through the controls' accessible names.
    page.get_by_role("button", name="Show all routes").press("Enter")
    expect(by_testid(page, "scope")).to_have_text("All routes")
    page.get_by_role("button", name=f"Show only route {ROUTE_A}").press("Enter")
    expect(by_testid(page, "route-filter-name")).to_have_text(ROUTE_A)
    expect(page.get_by_role("button", name="Show all routes")).to_be_focused()
    assert_clean(page)


def test_route_table_sorts_by_any_column(stack, browser):
    nats, bus, web = stack
    routes = {"/a": 300, "/b": 100, "/c": 200}
    bus.publish_snapshot(sample_snapshot(600, routes=routes))
    page = new_page(browser, web.url)
    expect(by_testid(page, "route-row")).to_have_count(3, timeout=8000)
    names = "() => [...document.querySelectorAll('[data-testid=route-row]')].map(r => r.dataset.name)"
    assert page.evaluate(names) == ["/a", "/c", "/b"]  # requests, descending
    table = by_testid(page, "routes-table")
    table.get_by_role("button", name="Requests", exact=True).click()
    expect(table.locator("th", has=page.get_by_role("button", name="Requests"))).to_have_attribute(
        "aria-sort", "ascending")
    assert page.evaluate(names) == ["/b", "/c", "/a"]
    table.get_by_role("button", name="Route", exact=True).click()
    assert page.evaluate(names) == ["/a", "/b", "/c"]
    # The order survives the next snapshot.
    bus.publish_snapshot(sample_snapshot(601, routes={"/a": 1, "/b": 500, "/c": 100}))
    expect(by_testid(page, "value-requests")).to_have_text("601", timeout=8000)
    assert page.evaluate(names) == ["/a", "/b", "/c"]
    assert_clean(page)


def test_alerts_feed_shows_rules_and_circuit_breakers(stack, browser):
    nats, bus, web = stack
    bus.publish_snapshot(sample_snapshot(1_000))
    page = new_page(browser, web.url)
    expect(by_testid(page, "connection-chip")).to_have_text("Live", timeout=8000)
    rule = f"error_rate_{secrets.token_hex(3)}"
    bus.publish_alert(sample_alert(rule, "firing", severity="critical", value=7.5, threshold=5.0))
    item = page.locator(f"[data-testid=alert-item][data-rule='{rule}']")
    expect(item).to_have_attribute("data-state", "firing", timeout=8000)
    expect(item).to_contain_text("Firing")
    expect(by_testid(page, "alerts-firing-count")).not_to_have_attribute("data-count", "0")

    response = requests.post(f"{web.url}/api/events", timeout=5, json={
        "event": "circuit_breaker.opened", "timestamp": bus.now_iso(),
        "data": {"upstream": "payments-svc", "failures": 12}})
    assert response.status_code < 300, response.text
    event = page.locator("[data-testid=event-item][data-event='circuit_breaker.opened']").first
    expect(event).to_contain_text("Circuit breaker opened", timeout=8000)
    expect(event).to_contain_text("payments-svc")

    bus.publish_alert(sample_alert(rule, "resolved", severity="critical", value=1.0, threshold=5.0))
    expect(page.locator(f"[data-testid=alert-item][data-rule='{rule}'][data-state=resolved]")).to_contain_text(
        "Resolved", timeout=8000)
    assert_clean(page)


@pytest.mark.parametrize("width", [360, 2560])
def test_layout_fits_phone_and_wall_screens(stack, browser, width):
    nats, bus, web = stack
    bus.publish_snapshot(sample_snapshot(1_500_000))
    page = new_page(browser, web.url, width=width)
    expect(by_testid(page, "value-requests")).to_have_text("1.5M", timeout=8000)
    overflow = page.evaluate("() => document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0, f"the page scrolls sideways by {overflow} px at {width} px"
    for name in ("card-requests", "card-error-rate", "chart-latency", "routes-table", "alerts-feed"):
        box = by_testid(page, name).bounding_box()
        assert box is not None and box["width"] > 0
    save_screenshot(page, f"dashboard-{width}px.png")
    assert_clean(page)
