"""SharedLookup: a storm of new clients shares lookups; no client gets an answer older than its arrival."""

from __future__ import annotations

import gevent
import pytest
from gevent.event import Event

from flexgate_stream.errors import NatsUnavailable
from flexgate_stream.fanout.newest import SharedLookup

pytestmark = pytest.mark.timeout(10)


def test_callers_arriving_during_a_lookup_share_the_next_one_not_the_current():
    lookup: SharedLookup[int] = SharedLookup()
    runs: list[int] = []
    release = [Event(), Event()]

    def fetch() -> int:
        n = len(runs)
        runs.append(n)
        release[n].wait(5)
        return n

    first = gevent.spawn(lookup.get, fetch)
    gevent.sleep(0)  # the first lookup is in flight
    later = [gevent.spawn(lookup.get, fetch) for _ in range(50)]
    gevent.sleep(0)
    release[0].set()
    assert first.get(timeout=5) == 0
    gevent.sleep(0)
    release[1].set()
    assert [g.get(timeout=5) for g in later] == [1] * 50  # one more lookup for all fifty, begun after they came
    assert runs == [0, 1]


def test_a_failed_lookup_is_raised_to_every_caller_and_the_next_one_runs_again():
    lookup: SharedLookup[int] = SharedLookup()

    def failing() -> int:
        gevent.sleep(0.01)
        raise NatsUnavailable("down")

    callers = [gevent.spawn(lookup.get, failing) for _ in range(3)]
    gevent.joinall(callers, timeout=5)
    assert all(isinstance(g.exception, NatsUnavailable) for g in callers)
    assert lookup.get(lambda: 7) == 7


def test_a_lookup_that_gathers_serves_every_caller_that_came_while_it_waited_to_begin():
    lookup: SharedLookup[int] = SharedLookup(gather_seconds=0.05)
    runs: list[int] = []

    def fetch() -> int:
        runs.append(len(runs))
        return len(runs)

    callers = [gevent.spawn(lookup.get, fetch)]
    gevent.sleep(0.02)  # within the gathering time: joins the lookup that has not begun
    callers += [gevent.spawn(lookup.get, fetch) for _ in range(10)]
    assert [g.get(timeout=5) for g in callers] == [1] * 11
    assert runs == [0]


def test_a_lookup_waits_longer_while_callers_keep_coming_and_a_lone_caller_only_the_first_gathering():
    lookup: SharedLookup[int] = SharedLookup(gather_seconds=0.04, most_seconds=0.2)
    runs: list[int] = []

    def fetch() -> int:
        runs.append(len(runs))
        return len(runs)

    callers = [gevent.spawn(lookup.get, fetch)]
    for _ in range(4):  # one more every 30 ms: each within the gathering time of the one before
        gevent.sleep(0.03)
        callers.append(gevent.spawn(lookup.get, fetch))
    assert [g.get(timeout=5) for g in callers] == [1] * 5  # 120 ms after the first, all still shared one lookup
    assert runs == [0]

    alone = gevent.spawn(lookup.get, fetch)
    gevent.sleep(0.08)  # two gatherings: a lone caller's lookup began after the first
    assert alone.ready() and alone.value == 2
