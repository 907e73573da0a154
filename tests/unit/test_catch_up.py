"""Which windows a tick publishes: every missed one since the newest stored, oldest first, then the current."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from nats.js.errors import NotFoundError

from flexgate_stream.settings import Settings
from workers.outbox import CATCH_UP_BATCH, Outbox

pytestmark = pytest.mark.timeout(10)
NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


class Stream:
    """The one JetStream call due_windows makes: the newest metrics.summary message (or none)."""

    def __init__(self, newest: datetime | None) -> None:
        self.newest = newest

    async def get_last_msg(self, _stream, _subject):
        if self.newest is None:
            raise NotFoundError
        end = self.newest.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        return SimpleNamespace(headers={"Nats-Msg-Id": f"metrics.summary@{end}"}, data=b"{}")


def due(newest: datetime | None, tick: float = 5.0, published: datetime | None = None) -> list[datetime]:
    out = Outbox(Settings(tick_seconds=tick), [], "p")
    out.published = published
    return asyncio.run(out.due_windows(Stream(newest), NOW))


def test_nothing_missed_gives_the_current_window_only():
    assert due(NOW - timedelta(seconds=5)) == [NOW]
    assert due(None) == [NOW]  # an empty stream: nothing to catch up


def test_missed_windows_come_first_oldest_first():
    assert due(NOW - timedelta(seconds=30)) == [NOW - timedelta(seconds=s) for s in (25, 20, 15, 10, 5, 0)]


def test_a_window_already_stored_is_not_published_again():
    assert due(NOW) == [] and due(NOW - timedelta(seconds=20), published=NOW) == []


def test_catch_up_stops_at_the_stream_retention_and_at_a_batch_per_tick():
    windows = due(NOW - timedelta(days=3))
    assert len(windows) == CATCH_UP_BATCH and windows[-1] != NOW  # the current one waits for the rest
    assert windows[0] == NOW - timedelta(hours=24) + timedelta(seconds=5)
    steps = {b - a for a, b in zip(windows, windows[1:], strict=False)}
    assert windows == sorted(windows) and steps == {timedelta(seconds=5)}
