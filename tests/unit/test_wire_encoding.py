"""The wire encoding: the same JSON as the standard library's, compact; shaping that remembers values gives the
same messages as shaping from scratch."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from flexgate_stream.messages import SUMMARY_MAX_BYTES, encode
from flexgate_stream.settings import Settings
from flexgate_stream.tick import snapshot
from flexgate_stream.tick.figures import SERIES_BUCKETS
from flexgate_stream.tick.memo import Memo
from flexgate_stream.tick.rollups import Cell
from flexgate_stream.tick.sketch import bin_of
from flexgate_stream.tick.tally import Tally
from flexgate_stream.tick.window_figures import figures_of
from workers.outbox import Outbox

pytestmark = pytest.mark.timeout(60)

END = datetime(2026, 3, 1, 12, 0, 5, tzinfo=UTC)
MINUTE = int(END.timestamp()) // 60


def cell(minute: int, route: str, upstream: str, n: int, latency: float) -> Cell:
    made = Cell(minute, route, upstream, n, {200: n - 1, 503: 1}, n, n * latency)
    made.sketch.add_bin(bin_of(latency), n)
    return made


def tick_messages(figures) -> list[tuple[str, dict]]:
    outbox = Outbox(Settings(top_routes=20), [], "test")
    return outbox.messages(figures) + outbox.index_messages(figures)


@pytest.fixture
def figures():
    """A tick over 300 routes (some with non-ASCII names) and 12 upstreams, the index included."""
    routes = [f"/r/{i:03d}/" + ("é✓" if i % 3 else "plain") for i in range(300)]
    cells = [cell(MINUTE - i % 70, route, f"svc-{i % 12}", 1 + i % 7, 3.7 + i * 1.13) for i, route in enumerate(routes)]
    tally = Tally(MINUTE, cells, [c for c in cells if MINUTE - c.minute <= 60])
    return figures_of(tally, END, all_time=12345, top=20, budget=int(SUMMARY_MAX_BYTES * 0.9), index=True)


def test_every_message_of_a_tick_encodes_to_the_standard_librarys_json_compactly(figures):
    messages = tick_messages(figures)
    assert {subject.split(".")[0] for subject, _ in messages} == {"metrics", "routes", "upstreams", "index"}
    for subject, message in messages:
        wire = encode(message)
        assert json.loads(wire) == json.loads(json.dumps(message, allow_nan=False)), subject
        # Compact, non-ASCII written as UTF-8: the same bytes as the standard library's compact form.
        assert wire == json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode(), subject


def test_what_the_fast_encoder_refuses_is_still_written():
    event = {"type": "event", "data": {"big": 2**70, "odd": "\ud800", "n": 1.5}}  # a webhook body may hold both
    assert json.loads(encode(event)) == event


def test_a_float_that_is_not_finite_is_refused_by_the_fallback_too():
    with pytest.raises(ValueError, match="Out of range float values"):
        encode({"big": 2**70, "value": float("nan")})


MEMOS = (snapshot._ROUNDED, snapshot._RATES, snapshot._CELLS)


def test_shaping_with_remembered_values_gives_the_messages_shaped_from_scratch(figures, monkeypatch):
    for memo in MEMOS:
        memo.clear()
    cold = [json.dumps(m) for _, m in tick_messages(figures)]
    warm = [json.dumps(m) for _, m in tick_messages(figures)]
    assert warm == cold
    for memo in MEMOS:
        memo.clear()
        monkeypatch.setattr(memo, "size", 3)  # forgotten and refilled many times within one tick
    assert [json.dumps(m) for _, m in tick_messages(figures)] == cold
    assert all(len(memo.recent) <= 3 and len(memo.older) <= 3 for memo in MEMOS)


def test_a_remembered_value_still_in_use_outlives_every_rotation():
    memo: Memo[int, str] = Memo(2)
    memo.keep(0, "kept")
    for key in range(1, 20):
        memo.keep(key, str(key))
        found = memo.find(0) or memo.keep(0, "made anew")
        assert found == "kept"
    assert len(memo.recent) + len(memo.older) <= 4 and 1 not in memo.recent and 1 not in memo.older


def test_a_bucket_whose_figures_change_is_shaped_anew(figures):
    bucket = figures.buckets[SERIES_BUCKETS - 2]
    snapshot.summary_snapshot(figures, 20)  # its figures as they were are remembered now
    figures.buckets[SERIES_BUCKETS - 2] = replace(bucket, percentiles=(1.0, 2.0, 3.0))  # only the percentiles
    after = snapshot.summary_snapshot(figures, 20)
    assert [after["latency"][key]["data"][-2]["value"] for key in ("p50", "p95", "p99")] == [1.0, 2.0, 3.0]
    figures.buckets[SERIES_BUCKETS - 2] = replace(bucket, server_errors=bucket.requests)  # only the 5xx
    after = snapshot.summary_snapshot(figures, 20)
    assert after["errorRate"]["data"][-2]["value"] == 100.0
    figures.buckets[SERIES_BUCKETS - 2] = replace(bucket, requests=bucket.requests + 300)  # only the requests
    after = snapshot.summary_snapshot(figures, 20)
    assert after["requestRate"]["data"][-2]["value"] == round((bucket.requests + 300) / 300, 3)
