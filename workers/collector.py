"""The garbage collector's passes over the publisher's running totals happen between ticks, not on one.

The running totals are hundreds of thousands of long-lived objects (an aggregate, its status codes and its
latency bins for every route, upstream and pair of each window). A full automatic collection scans all of them
and took ~90 ms, landing on whichever tick allocated past the threshold: the tick's p99. So each fold between
ticks collects the young generations and freezes what survives (``gc.freeze``: moved out of the automatic
passes, still freed by reference counting), and every FULL_FOLDS folds it unfreezes everything and runs a full
pass, so cycles among older objects are still collected, also between ticks. During a tick the automatic
passes are off (``paused``): what the tick leaves is collected by the next fold.

A full pass also hands the C allocator's free pages back to the system (glibc's ``malloc_trim``): the cold
start's chunks of rows leave tens of megabytes of freed but still mapped memory that the running totals, grown
in between, would otherwise keep resident.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
from collections.abc import Callable, Iterator
from contextlib import contextmanager

FULL_FOLDS = 120  # folds between two full passes over every object (a minute: a fold runs twice a second)


def _trimmer() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None where the C library has none (musl, macOS)."""
    try:
        return ctypes.CDLL(ctypes.util.find_library("c")).malloc_trim
    except (OSError, AttributeError):
        return None


class Collector:
    """Paces the garbage collector on the folds between ticks (``between_ticks``, called by each fold)."""

    def __init__(self, full_folds: int = FULL_FOLDS) -> None:
        self.full_folds = full_folds
        self.folds = 0
        self.trim = _trimmer()

    def between_ticks(self) -> None:
        """Collect the young generations (every ``full_folds`` folds, everything), then freeze the survivors."""
        if self.folds % self.full_folds == 0:
            gc.unfreeze()
            gc.collect()
            if self.trim is not None:
                self.trim(0)
        else:
            gc.collect(1)
        gc.freeze()
        self.folds += 1

    @contextmanager
    def paused(self) -> Iterator[None]:
        """No automatic pass while the block (a tick) runs; back as it was after."""
        was = gc.isenabled()
        gc.disable()
        try:
            yield
        finally:
            if was:
                gc.enable()
