"""No NaN reaches the wire: whatever a gateway writes as latency, every float a tick publishes is a finite number."""

from __future__ import annotations

import json
import math
from datetime import timedelta

import pytest

from flexgate_stream.messages import encode
from flexgate_stream.requestlog import schema
from flexgate_stream.settings import Settings
from flexgate_stream.tick.incremental import IncrementalAggregation
from flexgate_stream.tick.time_column import TimeColumn
from tests.integration.expected_figures import now_end
from tests.integration.request_log import insert
from workers.outbox import Outbox

pytestmark = pytest.mark.timeout(120)

# Latencies a gateway may write that are not a duration (NaN, negative, NULL) next to ones that are.
ODD = [float("nan"), -0.01, None]


def floats(value: object) -> list[float]:
    """Every float in a decoded message."""
    if isinstance(value, float):
        return [value]
    if isinstance(value, dict):
        value = list(value.values())
    return [f for item in value for f in floats(item)] if isinstance(value, list) else []


def test_a_tick_over_latencies_that_are_not_numbers_publishes_only_finite_numbers(db):
    schema.upgrade(db)
    end = now_end()
    rows = [(end - timedelta(seconds=7 + 41 * i), f"/api/items/{i % 4}", 200 + 100 * (i % 4),
             ODD[i % 3] if i % 2 else 10.0 + i, f"svc-{i % 3}") for i in range(120)]
    insert(db, rows)
    aggregation = IncrementalAggregation(TimeColumn(None))
    aggregation.tick(db, [])
    while aggregation.backfill_step(db):
        pass
    (figures,) = aggregation.tick(db, [end], index=True)
    outbox = Outbox(Settings(top_routes=3), [], "test")
    messages = outbox.messages(figures) + outbox.index_messages(figures)
    assert {subject.split(".")[0] for subject, _ in messages} == {"metrics", "routes", "upstreams", "index"}
    for subject, message in messages:
        json.dumps(message, allow_nan=False)  # raises on NaN or Infinity
        published = floats(json.loads(encode(message)))
        assert published and all(math.isfinite(f) for f in published), subject
    summary = messages[0][1]["summary"]
    assert summary["totalRequests"] == 120 and summary["avgLatency"] == pytest.approx(10 + 59, abs=0.01)
