"""The dashboard's connection in real Chromium: NATS and gunicorn stop and return, and the API token.

The page must show each outage (chip, countdown, banner) and come back Live without a reload,
missing nothing, thanks to its own reconnects with ``?lastEventId=``.
"""

from __future__ import annotations

import re
import secrets
import signal
from collections.abc import Iterator

import pytest

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
    pytest.mark.timeout(150),
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing: apt-get install chromium"),
]

expect = pytest.importorskip("playwright.sync_api").expect


@pytest.fixture
def own_nats(tmp_path) -> Iterator[tuple[NatsServer, Bus]]:
    """A nats-server of the test's own (the test stops it), with the streams."""
    nats = NatsServer(tmp_path / "nats", log_file=tmp_path / "nats.log").start()
    bus = Bus(nats.url)
    bus.ensure_streams()
    yield nats, bus
    nats.stop()


@pytest.fixture
def own_stack(own_nats, start_web) -> tuple[NatsServer, Bus, WebServer]:
    """That nats-server and a gunicorn on it (stopped by start_web at the end)."""
    nats, bus = own_nats
    return nats, bus, start_web(nats_url=nats.url)


def test_chip_follows_nats_down_and_back_without_reload(own_stack, browser):
    nats, bus, web = own_stack
    bus.publish_snapshot(sample_snapshot(111_000))
    page = new_page(browser, web.url)
    expect(by_testid(page, "value-requests")).to_have_text("111K", timeout=8000)
    expect(by_testid(page, "connection-chip")).to_have_attribute("data-state", "live")
    page.evaluate("() => { window.__sameDocument = true; }")

    port = nats.port
    nats.stop()
    expect(by_testid(page, "connection-chip")).to_have_attribute("data-state", "disconnected", timeout=20000)
    expect(by_testid(page, "connection-chip")).to_have_text("Disconnected")
    expect(by_testid(page, "connection-banner")).to_be_visible()
    expect(by_testid(page, "connection-banner")).to_contain_text("NATS")
    save_screenshot(page, "dashboard-nats-down.png")

    restarted = NatsServer(nats.store_dir, port=port, log_file=nats.log_file).start()
    try:
        expect(by_testid(page, "connection-chip")).to_have_attribute("data-state", "live", timeout=30000)
        expect(by_testid(page, "connection-banner")).to_be_hidden()
        bus.publish_snapshot(sample_snapshot(222_000))
        expect(by_testid(page, "value-requests")).to_have_text("222K", timeout=10000)
        assert page.evaluate("() => window.__sameDocument === true")  # no reload
        assert_clean(page)
    finally:
        web.stop()
        restarted.stop()


def test_chip_follows_the_web_process_and_resumes_with_last_event_id(own_stack, browser):
    nats, bus, web = own_stack
    bus.publish_snapshot(sample_snapshot(333_000))
    before = f"before_{secrets.token_hex(3)}"
    bus.publish_alert(sample_alert(before, "firing"))
    page = new_page(browser, web.url, clock=True)
    expect(by_testid(page, "value-requests")).to_have_text("333K", timeout=8000)
    expect(page.locator(f"[data-testid=alert-item][data-rule='{before}']")).to_have_count(1)
    expect(by_testid(page, "connection-chip")).to_have_attribute("data-state", "live")
    page.evaluate("() => { window.__sameDocument = true; }")
    stream_urls: list[str] = []
    page.on("request", lambda r: stream_urls.append(r.url) if "/api/stream/" in r.url else None)

    web.stop(signal.SIGTERM)
    expect(by_testid(page, "connection-chip")).to_have_attribute("data-state", "reconnecting", timeout=10000)
    expect(by_testid(page, "connection-chip")).to_have_text("Reconnecting")
    expect(by_testid(page, "reconnect-countdown")).to_have_text(re.compile(r"next attempt in \d+ s|connecting"))
    expect(by_testid(page, "connection-banner")).to_be_visible()
    # While the page is away, a snapshot and an alert are published: both must arrive after.
    bus.publish_snapshot(sample_snapshot(444_000))
    rule = f"latency_{secrets.token_hex(3)}"
    bus.publish_alert(sample_alert(rule, "firing", severity="warning", value=900.0, threshold=500.0))
    page.clock.fast_forward(10_000)  # away 10 s, when the chip turns Disconnected (DISCONNECTED_AFTER_MS)
    expect(by_testid(page, "connection-chip")).to_have_attribute("data-state", "disconnected", timeout=20000)

    web.start()
    expect(by_testid(page, "connection-chip")).to_have_attribute("data-state", "live", timeout=40000)
    expect(by_testid(page, "value-requests")).to_have_text("444K", timeout=10000)
    expect(page.locator(f"[data-testid=alert-item][data-rule='{rule}']")).to_have_count(1, timeout=10000)
    assert page.evaluate("() => window.__sameDocument === true")  # no reload
    assert any("/api/stream/metrics" in u and "lastEventId=" in u for u in stream_urls), stream_urls
    assert any("/api/stream/alerts" in u and "lastEventId=" in u for u in stream_urls), stream_urls
    assert_clean(page)


def test_token_prompt_asks_once_and_goes_live(own_nats, start_web, browser):
    nats, bus = own_nats
    token = secrets.token_urlsafe(16)
    bus.publish_snapshot(sample_snapshot(77_700))
    web = start_web({"FLEXGATE_API_TOKENS": token}, nats_url=nats.url)
    page = new_page(browser, web.url)
    dialog = by_testid(page, "token-dialog")
    expect(dialog).to_be_visible(timeout=10000)
    expect(by_testid(page, "connection-chip")).to_have_attribute("data-state", "disconnected")

    page.get_by_label("API token", exact=True).fill("not-the-token")
    page.get_by_role("button", name="Connect").click()
    expect(by_testid(page, "token-error")).to_be_visible(timeout=10000)  # refused: asked again

    page.get_by_label("API token", exact=True).fill(token)
    page.get_by_role("button", name="Connect").click()
    expect(dialog).to_be_hidden()
    expect(by_testid(page, "connection-chip")).to_have_attribute("data-state", "live", timeout=10000)
    expect(by_testid(page, "value-requests")).to_have_text("77.7K", timeout=8000)
    assert page.evaluate("() => sessionStorage.getItem('flexgate.apiToken')") == token

    page.reload()  # kept for the browser session: not asked again
    expect(by_testid(page, "value-requests")).to_have_text("77.7K", timeout=8000)
    expect(dialog).to_be_hidden()
    assert_clean(page)
