"""The garbage collector paced by the folds: survivors frozen, cycles still collected, no automatic pass in a tick."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from workers.collector import Collector


class Node:
    """An object that can take part in a reference cycle."""

    def __init__(self) -> None:
        self.other: Node | None = None


@pytest.fixture(autouse=True)
def _restore_gc() -> Iterator[None]:
    enabled = gc.isenabled()
    yield
    gc.unfreeze()
    if enabled:
        gc.enable()


def test_a_fold_freezes_the_survivors() -> None:
    kept = [Node() for _ in range(100)]
    Collector(full_folds=10).between_ticks()
    assert gc.get_freeze_count() >= len(kept)
    assert gc.get_count()[0] < 50  # the young generation was emptied


def test_a_cycle_frozen_by_one_fold_is_collected_by_the_next_full_pass() -> None:
    collector = Collector(full_folds=3)
    collector.between_ticks()  # the first fold is a full pass
    a, b = Node(), Node()
    a.other, b.other = b, a
    gone = weakref.ref(a)
    collector.between_ticks()  # the cycle survives (it is still referenced) and is frozen
    del a, b
    collector.between_ticks()  # not a full pass: frozen objects are not scanned
    assert gone() is not None
    collector.between_ticks()  # the third fold after the first: a full pass over everything
    assert gone() is None


def test_no_automatic_pass_during_a_tick() -> None:
    gc.enable()
    with Collector().paused():
        assert not gc.isenabled()
    assert gc.isenabled()
    gc.disable()
    with Collector().paused():
        pass
    assert not gc.isenabled()  # left as it was
