"""The summary stays under 64 KB at any number of routes and upstreams, and its lists still sum to its totals."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from flexgate_stream.messages import OTHER, SUMMARY_MAX_BYTES, encode
from flexgate_stream.tick.rollups import Cell
from flexgate_stream.tick.sketch import bin_of
from flexgate_stream.tick.snapshot import summary_snapshot
from flexgate_stream.tick.tally import Tally
from flexgate_stream.tick.window_figures import figures_of

pytestmark = pytest.mark.timeout(60)

END = datetime(2026, 3, 1, 12, 0, 5, tzinfo=UTC)
MINUTE = int(END.timestamp()) // 60


def cell(minute: int, route: str, upstream: str, n: int) -> Cell:
    made = Cell(minute, route, upstream, n, {200: n - 1, 503: 1}, n, n * 12.5)
    made.sketch.add_bin(bin_of(12.5), n)
    return made


@pytest.mark.parametrize("name_length", [20, 200, 500])
def test_thousands_of_long_names_keep_the_summary_under_64_kb_and_its_lists_summing_to_the_total(name_length):
    routes = [f"/r/{i:05d}/" + "é" * (name_length - 9) for i in range(3000)]  # non-ASCII: 6 bytes each in JSON
    upstreams = [f"svc-{i:04d}-" + "x" * 240 for i in range(300)]
    cells = [cell(MINUTE - i % 50, route, upstreams[i % 300], 1 + i % 7) for i, route in enumerate(routes)]
    tally = Tally(MINUTE, cells, [c for c in cells if MINUTE - c.minute <= 60])
    figures = figures_of(tally, END, all_time=0, top=500, budget=int(SUMMARY_MAX_BYTES * 0.9))
    summary = summary_snapshot(figures, 500)
    assert len(encode(summary)) <= SUMMARY_MAX_BYTES
    for window in (summary, summary["lastHour"], summary["last5Minutes"]):
        total = window["summary"]["totalRequests"]
        assert total > 0
        for kind in ("routes", "upstreams"):
            assert window[kind][-1]["name"] == OTHER
            assert sum(entry["requests"] for entry in window[kind]) == total
    assert summary["routeCount"] == 3000 and summary["upstreamCount"] == 300
