"""Helpers for the dashboard's browser tests: a NATS publisher, pages, screenshots.

Snapshots come from flexgate_stream.devstack.samples, gunicorn from tests/e2e/support.py (WebServer).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from flexgate_stream.devstack.nats_client import snapshot_subject
from flexgate_stream.messages import ALERT_SUBJECT_PREFIX, encode, index_subject, message_id
from flexgate_stream.tick.stream_setup import ensure_streams
from flexgate_stream.timestamps import iso

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]

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
        """Publish on metrics.summary, or on routes.<token> / upstreams.<token> when a snapshot has a route or
        an upstream, in order."""
        messages = []
        for snapshot in snapshots:
            subject = snapshot_subject(snapshot)
            messages.append((subject, snapshot, message_id(subject, snapshot["windowEnd"])))
        self._run(lambda: self._publish(*messages))

    def publish_index(self, pages: list[dict]) -> None:
        """Publish GroupIndex pages on index.<kind>.<page>, page 0 last."""
        messages = []
        for page in reversed(pages):
            subject = index_subject(page["kind"], page["page"])
            messages.append((subject, page, message_id(subject, page["windowEnd"])))
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
    """Debian's Chromium, headless, driven by Playwright (a generator for the session fixture in conftest.py)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def new_page(browser, base_url: str, *, width: int = 1280, height: int = 900, path: str = "/", clock: bool = False):
    """A page in a fresh context (own sessionStorage), with uncaught errors and CSP reports collected; with
    ``clock``, Playwright's clock drives its timers (time flows as usual until the test moves it on)."""
    context = browser.new_context(viewport={"width": width, "height": height})
    if clock:
        context.clock.install()
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
