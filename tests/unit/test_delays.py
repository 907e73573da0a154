"""Delay tallies: Prometheus bucket counts handed over once, and last-minute quantiles close to the exact ones."""

from __future__ import annotations

import random

import pytest

from flexgate_stream.fanout.delays import BUCKETS, DelayTally, last_minute

pytestmark = pytest.mark.timeout(10)

NOW = 1_800_000_000.0


def test_last_minute_quantiles_are_within_ten_percent_of_the_exact_ones():
    rng = random.Random(20)
    samples = [rng.lognormvariate(-3.0, 1.2) for _ in range(5000)]
    tally = DelayTally()
    for delay in samples:
        tally.add(delay, 1, NOW)
    found = last_minute([tally], NOW)
    exact = sorted(samples)
    assert found["count"] == 5000
    assert found["p50"] == pytest.approx(exact[2499], rel=0.1)
    assert found["p99"] == pytest.approx(exact[4949], rel=0.1)


def test_a_count_weighs_like_that_many_events():
    fast, slow = DelayTally(), DelayTally()
    fast.add(0.010, 99, NOW)  # one pass wrote 99 clients
    slow.add(3.0, 1, NOW)  # one client wrote it later itself
    found = last_minute([fast, slow], NOW)
    assert found["count"] == 100
    assert found["p50"] == pytest.approx(0.010, rel=0.1) and found["p99"] == pytest.approx(0.010, rel=0.1)
    slow.add(3.0, 2, NOW)
    assert last_minute([fast, slow], NOW)["p99"] == pytest.approx(3.0, rel=0.1)


def test_delays_older_than_a_minute_drop_out():
    tally = DelayTally()
    tally.add(1.0, 1, NOW)
    tally.add(2.0, 1, NOW + 30)
    assert last_minute([tally], NOW + 30)["count"] == 2
    later = last_minute([tally], NOW + 61)
    assert later["count"] == 1 and later["p50"] == pytest.approx(2.0, rel=0.1)
    assert last_minute([tally], NOW + 200) == {"p50": None, "p99": None, "count": 0}


def test_take_hands_over_prometheus_bucket_counts_once():
    tally = DelayTally()
    told: list[bool] = []
    tally.on_pending = lambda: told.append(True)
    tally.add(0.005, 2, NOW)  # a bound is inclusive ("le")
    tally.add(0.3, 1, NOW)
    tally.add(-0.2, 1, NOW)  # a clock slightly behind JetStream's counts as no delay
    tally.add(500.0, 1, NOW)
    assert told == [True]  # once, until taken
    counts, total = tally.take()
    assert len(counts) == len(BUCKETS) + 1
    assert counts[0] == 3 and counts[BUCKETS.index(0.5)] == 1 and counts[-1] == 1 and sum(counts) == 5
    assert total == pytest.approx(0.01 + 0.3 + 500.0)
    assert tally.take() is None
    tally.add(0.1, 0, NOW)  # nothing written
    assert tally.take() is None and told == [True]
    tally.add(0.1, 1, NOW)
    assert told == [True, True] and tally.take() is not None
