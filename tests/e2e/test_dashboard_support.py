"""Helpers for the dashboard's browser tests: realistic snapshots, a NATS publisher, pages, screenshots.

No tests here; ``test_dashboard.py`` imports it. gunicorn comes from tests/e2e/support.py (WebServer).
"""

from __future__ import annotations

import asyncio
import itertools
import math
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from flexgate_stream.messages import (
    ALERT_SUBJECT_PREFIX,
    SUMMARY_SUBJECT,
    encode,
    message_id,
    route_subject,
)
from flexgate_stream.tick.stream_setup import ensure_streams

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]

_clock = itertools.count(1)


def iso(moment: datetime) -> str:
    """ISO 8601 UTC with milliseconds and a Z, as the publisher writes it."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _series(name: str, unit: str, end: datetime, base: float, swing: float) -> dict:
    points = []
    for i in range(12):
        at = end - timedelta(minutes=5 * (11 - i))
        points.append({"timestamp": iso(at), "value": round(base + swing * math.sin(i / 2), 3)})
    return {"name": name, "data": points, "unit": unit}


def _breakdown(name: str, count: int, error_rate: float) -> dict:
    return {"name": name, "requests": count, "requestsPerSecond": round(count / 3600, 3), "errorRate": error_rate,
            "p50Latency": 30.0, "p95Latency": 170.0, "p99Latency": 450.0}


def make_snapshot(total: int, *, route: str | None = None, rps: float = 42.0, error_rate: float = 0.5,
                  availability: float = 99.0, routes: dict[str, int] | None = None) -> dict:
    """A Snapshot as messages.Snapshot describes it, unique per call (its windowEnd differs)."""
    end = datetime.now(UTC) + timedelta(milliseconds=next(_clock))
    routes = routes if routes is not None else {"/api/orders": total // 2, "/api/users/:id": total // 3,
                                                 "/health": total - total // 2 - total // 3}
    rate = _series("Request rate", "req/s", end, rps, rps / 10)
    rate["data"][-1]["value"] = rps  # "now" is the newest point
    server_errors = round(total * error_rate / 100)
    successful = round(total * availability / 100)
    return {
        "type": "metrics",
        "version": 1,
        "summary": {
            "totalRequests": total, "totalRequestsAllTime": total * 10, "avgLatency": 48.2,
            "errorRate": error_rate, "availability": availability, "p50Latency": 31.5, "p95Latency": 182.4,
            "p99Latency": 512.9, "serverErrors": server_errors, "clientErrors": total - successful - server_errors,
            "successfulRequests": successful,
        },
        "window": {"name": "24h", "start": iso(end - timedelta(hours=24)), "end": iso(end)},
        "windowEnd": iso(end),
        "requestRate": rate,
        "latency": {key: _series(key, "ms", end, base, base / 6)
                    for key, base in (("p50", 31.0), ("p95", 180.0), ("p99", 480.0))},
        "errorRate": _series("Error rate", "%", end, error_rate, error_rate / 4),
        "statusCodes": [{"code": 200, "count": successful}, {"code": 404, "count": total - successful - server_errors},
                        {"code": 503, "count": server_errors}],
        "routes": [_breakdown(name, count, error_rate) for name, count in routes.items()],
        "upstreams": [_breakdown(name, count, error_rate)
                      for name, count in (("orders-svc", total * 2 // 3), ("users-svc", total - total * 2 // 3))],
        "route": route,
        "timestamp": iso(end),
    }


def alert(rule: str, state: str, *, severity: str = "warning", value: float | None = None,
          threshold: float | None = None, route: str | None = None) -> dict:
    """An Alert as messages.Alert describes it."""
    now = iso(datetime.now(UTC) + timedelta(milliseconds=next(_clock)))
    return {"type": "alert", "id": f"{rule}:{route or '*'}", "rule": rule, "severity": severity, "state": state,
            "value": value, "threshold": threshold, "route": route, "startedAt": now, "at": now}


class Bus:
    """Publishes to JetStream from a thread of its own (the browser's sync API owns this thread's loop)."""

    def __init__(self, url: str) -> None:
        self.url = url

    def _run(self, coro_factory) -> None:
        failure: list[BaseException] = []

        def target() -> None:
            try:
                asyncio.run(coro_factory())
            except BaseException as exc:  # reported in the calling thread
                failure.append(exc)

        thread = threading.Thread(target=target, daemon=True)
        thread.start()
        thread.join(20)
        if thread.is_alive():
            raise TimeoutError(f"publishing to {self.url} took over 20 s")
        if failure:
            raise failure[0]

    async def _publish(self, *messages: tuple[str, dict, str]) -> None:
        import nats

        nc = await nats.connect(self.url, connect_timeout=5, allow_reconnect=False)
        try:
            js = nc.jetstream(timeout=5)
            for subject, message, msg_id in messages:
                await js.publish(subject, encode(message), headers={"Nats-Msg-Id": msg_id})
        finally:
            await nc.close()

    async def _ensure(self) -> None:
        import nats

        nc = await nats.connect(self.url, connect_timeout=5, allow_reconnect=False)
        try:
            await ensure_streams(nc.jetstream(timeout=5))
        finally:
            await nc.close()

    def ensure_streams(self) -> None:
        """Create the streams, as the publisher does at start."""
        self._run(self._ensure)

    def publish_snapshot(self, *snapshots: dict) -> None:
        """Publish on metrics.summary, or on routes.<token> when a snapshot has a route, in order."""
        messages = []
        for snapshot in snapshots:
            route = snapshot.get("route")
            subject = route_subject(route) if route else SUMMARY_SUBJECT
            messages.append((subject, snapshot, message_id(subject, snapshot["windowEnd"])))
        self._run(lambda: self._publish(*messages))

    def publish_alert(self, message: dict) -> None:
        """Publish an alert on alerts.<severity>."""
        subject = ALERT_SUBJECT_PREFIX + message["severity"]
        msg_id = message_id(subject, f"{message['id']}@{message['at']}")
        self._run(lambda: self._publish((subject, message, msg_id)))

    @staticmethod
    def now_iso() -> str:
        return iso(datetime.now(UTC))


def launch_chromium() -> Iterator:
    """Debian's Chromium, headless, driven by Playwright (a generator for module fixtures)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def new_page(browser, base_url: str, *, width: int = 1280, height: int = 900, path: str = "/"):
    """A page in a fresh context (own sessionStorage), with uncaught errors and CSP reports collected."""
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    page.set_default_timeout(10000)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(f"uncaught: {exc}"))
    page.on("console", lambda msg: errors.append(f"console: {msg.text}")
            if msg.type == "error" and "Content Security Policy" in msg.text else None)
    page._dashboard_errors = errors
    page.goto(base_url + path)
    return page


def assert_clean(page) -> None:
    """No uncaught script error and no CSP violation happened on ``page``."""
    assert page._dashboard_errors == []


def by_testid(page, name: str):
    """The locator of ``data-testid=name``."""
    return page.locator(f"[data-testid={name}]")


def save_screenshot(page, name: str) -> Path:
    """A full-page screenshot under artifacts/ (git-ignored)."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=True)
    return path
