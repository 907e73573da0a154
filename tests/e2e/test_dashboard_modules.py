"""The dashboard's pure ES modules (formatting, backoff, sorting, chart data), run in real Chromium.

The files are served from the package folder by Playwright's router, so no server is needed.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.dashboard_support import CHROMIUM

STATIC = Path(__file__).resolve().parents[2] / "flexgate_stream" / "static"
ORIGIN = "http://dashboard.test"

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.timeout(60),
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing: apt-get install chromium"),
]

pytest.importorskip("playwright.sync_api")


@pytest.fixture(scope="module")
def page(chromium):
    """A page in the session's Chromium whose origin serves the package's static files."""
    context = chromium.new_context()
    page = context.new_page()

    def serve(route):
        path = route.request.url.removeprefix(ORIGIN + "/static/")
        file = (STATIC / path).resolve()
        if STATIC not in file.parents or not file.is_file():
            route.fulfill(status=404, body="not found")
            return
        kind = "text/javascript" if file.suffix == ".js" else "text/html"
        route.fulfill(status=200, body=file.read_bytes(), headers={"Content-Type": kind})

    page.route(f"{ORIGIN}/**", lambda route: serve(route) if "/static/" in route.request.url
               else route.fulfill(status=200, body="<!doctype html><title>t</title>",
                                  headers={"Content-Type": "text/html"}))
    page.goto(ORIGIN + "/")
    yield page
    context.close()


def run(page, module: str, body: str):
    """Evaluate ``body`` (an expression using ``m``) with ``m`` the imported module."""
    return page.evaluate(f"async () => {{ const m = await import('/static/js/{module}'); return {body}; }}")


@pytest.mark.parametrize(("value", "text"), [
    (0, "0"), (950, "950"), (1_000, "1K"), (12_345, "12.3K"), (999_999, "1M"), (999.6, "1K"), (1_234_567, "1.23M"),
    (2_500_000, "2.5M"), (123_456_789, "123M"), (4_200_000_000, "4.2B"), (None, "—"),
])
def test_compact_counts_as_k_and_m(page, value, text):
    assert run(page, "format.js", f"m.compact({'null' if value is None else value})") == text


def test_latency_rate_and_percent_formats(page):
    assert run(page, "format.js", "[m.millis(0.8), m.millis(48.2), m.millis(182.4), m.millis(1234)]") == [
        "0.80 ms", "48.2 ms", "182 ms", "1.23 s"]
    assert run(page, "format.js", "[m.rate(0), m.rate(0.42), m.rate(56.8), m.rate(1234.5)]") == [
        "0", "0.42", "56.8", "1,235"]
    assert run(page, "format.js", "[m.percent(0), m.percent(100), m.percent(99.31), m.percent(0.042)]") == [
        "0 %", "100 %", "99.31 %", "0.042 %"]
    assert run(page, "format.js", "[m.plain(0.5), m.plain(21.44), m.plain(388.4), m.plain(2380)]") == [
        "0.5", "21.4", "388", "2,380"]
    assert run(page, "format.js", "[m.age(0), m.age(12.7), m.age(150), m.age(7200)]") == [
        "just now", "12 s ago", "2 min ago", "2 h ago"]


def test_backoff_grows_exponentially_with_jitter_and_a_cap(page):
    low = run(page, "stream.js", "(() => { const b = new m.Backoff({random: () => 0}); "
                                 "return Array.from({length: 8}, () => b.next()); })()")
    high = run(page, "stream.js", "(() => { const b = new m.Backoff({random: () => 0.999}); "
                                  "return Array.from({length: 8}, () => b.next()); })()")
    assert low == [500, 1000, 2000, 4000, 8000, 15000, 15000, 15000]
    assert all(h > lo for h, lo in zip(high, low, strict=True))
    assert max(high) <= 30000
    assert run(page, "stream.js", "(() => { const b = new m.Backoff({random: () => 0}); b.next(); b.next(); "
                                  "b.reset(); return b.next(); })()") == 500


def test_route_rows_sort_by_number_or_name(page):
    rows = '[{name: "/b", requests: 5, errorRate: 1}, {name: "/a", requests: 9, errorRate: 3}, ' \
           '{name: "/c", requests: 1, errorRate: 2}]'
    by = f"(key, dir) => m.sortRows({rows}, key, dir).map(r => r.name)"
    assert run(page, "breakdown.js", f"({by})('requests', 'descending')") == ["/a", "/b", "/c"]
    assert run(page, "breakdown.js", f"({by})('errorRate', 'ascending')") == ["/b", "/c", "/a"]
    assert run(page, "breakdown.js", f"({by})('name', 'ascending')") == ["/a", "/b", "/c"]


def test_chart_points_are_rewritten_in_place_and_bounded(page):
    result = run(page, "charts.js", """(() => {
        const target = [];
        const series = (n) => ({data: Array.from({length: n}, (_, i) => ({
            timestamp: new Date(Date.UTC(2026, 0, 1, 0, 0, i)).toISOString(), value: i}))});
        m.fillPoints(target, series(12));
        const first = target[0];
        m.fillPoints(target, series(5000));
        const big = target.length;
        m.fillPoints(target, series(3));
        return {big, small: target.length, reused: target[0] === first, last: target[2].y};
    })()""")
    assert result == {"big": 720, "small": 3, "reused": True, "last": 2}


def test_a_bucket_without_latency_is_a_gap_never_a_point_at_zero(page):
    result = run(page, "charts.js", """(() => {
        const target = [];
        const at = (i) => new Date(Date.UTC(2026, 0, 1, 0, 5 * i)).toISOString();
        m.fillPoints(target, {data: [{timestamp: at(0), value: 12.5}, {timestamp: at(1), value: null},
                                     {timestamp: at(2), value: 0}, {timestamp: at(3), value: 8}]});
        return target.map(p => p.y);
    })()""")
    assert result == [12.5, None, 0, 8]


def test_status_codes_keep_the_top_ten_and_sum_the_rest(page):
    slices = run(page, "charts.js", """m.statusSlices(
        Array.from({length: 14}, (_, i) => ({code: 200 + i, count: 100 - i})).concat([{code: 503, count: 0}])
    ).map(s => [s.label, s.count])""")
    assert len(slices) == 11
    assert slices[-1] == ["other", 87 + 88 + 89 + 90]
    assert ["503", 0] not in slices


FAKE_EVENT_SOURCE = """
window.__sources = [];
window.EventSource = class {
  constructor(url) { this.url = url; this.closed = false; this.listeners = {}; window.__sources.push(this); }
  addEventListener(name, fn) { this.listeners[name] = fn; }
  close() { this.closed = true; }
  emit(name, data, id = "") {
    const event = { data: JSON.stringify(data), lastEventId: id };
    if (name === "message") this.onmessage(event); else this.listeners[name](event);
  }
};
window.__wait = (predicate) => new Promise((resolve, reject) => {
  const started = Date.now();
  const poll = () => {
    if (predicate()) resolve();
    else if (Date.now() - started > 3000) reject(new Error("timeout"));
    else setTimeout(poll, 5);
  };
  poll();
});
"""


def test_stream_reconnects_with_the_last_id_and_resumes_after_a_reset_while_the_bus_was_down(page):
    page.evaluate(f"() => {{ {FAKE_EVENT_SOURCE} }}")
    log = page.evaluate("""async () => {
        const m = await import('/static/js/stream.js');
        const phases = [], events = [], messages = [];
        const conn = new m.StreamConnection({
            path: '/api/stream/alerts', params: (lastId) => (lastId ? {} : {since: '24h'}), token: () => null,
            backoff: {baseMs: 20, maxMs: 40}, resumeAfterReset: true,
            onMessage: (data, id) => messages.push(id), onPhase: (p) => phases.push(p),
            onEvent: (name) => events.push(name),
        });
        const s = window.__sources;
        conn.start();
        s[0].onopen(); s[0].emit('message', {type: 'connected'}); s[0].emit('message', {n: 1}, '5');
        s[0].emit('status', {connected: false});
        s[0].emit('reset', {reason: 'history cannot be read'});   // undone later: not reported
        s[0].emit('message', {n: 2}, '9');
        s[0].emit('status', {connected: true});                   // resume from 5, not 9
        s[1].onopen(); s[1].emit('message', {type: 'connected'});
        s[1].onerror();                                           // lost after opening: retry after backoff
        await window.__wait(() => s.length === 3);
        return {urls: s.map((x) => x.url.replace(location.origin, '')), closed: s.map((x) => x.closed),
                phases, events, messages};
    }""")
    assert log["urls"] == ["/api/stream/alerts?since=24h", "/api/stream/alerts?lastEventId=5",
                           "/api/stream/alerts?lastEventId=5"]
    assert log["closed"] == [True, True, False]
    assert log["events"] == []
    assert log["phases"][:3] == ["live", "upstream-down", "live"]
    assert "reconnecting" in log["phases"]


def test_stream_asks_for_a_token_on_401_and_switches_route_from_scratch(page):
    page.evaluate(f"() => {{ {FAKE_EVENT_SOURCE} }}")
    log = page.evaluate("""async () => {
        window.fetch = async () => ({status: 401, headers: new Headers()});
        const m = await import('/static/js/stream.js');
        let token = null, route = null;
        const asked = [];
        const conn = new m.StreamConnection({
            path: '/api/stream/metrics', params: () => ({route}), token: () => token,
            onMessage: () => {}, onPhase: () => {}, onUnauthorized: (refused) => asked.push(refused),
        });
        const s = window.__sources;
        conn.start();
        s[0].onerror();                              // never opened: the probe says 401
        await window.__wait(() => asked.length === 1);
        token = 'tok';
        conn.retryNow();
        s[1].onopen(); s[1].emit('message', {type: 'connected'}, '7');
        route = '/api/orders';
        conn.restart();                              // another scope: no last id
        return {urls: s.map((x) => x.url.replace(location.origin, '')), asked, phase: conn.phase};
    }""")
    assert log["asked"] == [False]
    assert log["urls"] == ["/api/stream/metrics", "/api/stream/metrics?access_token=tok",
                           "/api/stream/metrics?route=%2Fapi%2Forders&access_token=tok"]


def test_a_value_stands_alone_only_between_gaps(page):
    data = "[{x: 0, y: 5}, {x: 1, y: null}, {x: 2, y: 7}, {x: 3, y: null}, {x: 4, y: 1}, {x: 5, y: 2}, {x: 6, y: null}]"
    alone = run(page, "charts.js", f"(() => {{ const d = {data}; return d.map((_, i) => m.standsAlone(d, i)); }})()")
    assert alone == [True, False, True, False, False, False, False]
    assert run(page, "charts.js", "m.standsAlone([{x: 0, y: 3}], 0)") is True  # the only value of a series
