"""Values remembered by key, in two generations, so that what is still used is never all forgotten at once."""

from __future__ import annotations

from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class Memo(Generic[K, V]):
    """At most twice ``size`` values: when ``recent`` is full it becomes ``older`` and the older ones are forgotten.

    Look up ``recent`` first (the common case costs one dict look-up), then ``older``; ``keep`` what was found or
    made, so a value still in use moves to ``recent`` and outlives every rotation.
    """

    __slots__ = ("recent", "older", "size")

    def __init__(self, size: int) -> None:
        self.recent: dict[K, V] = {}
        self.older: dict[K, V] = {}
        self.size = size

    def keep(self, key: K, value: V) -> V:
        """``value``, remembered under ``key``."""
        if len(self.recent) >= self.size:
            self.older, self.recent = self.recent, {}
        self.recent[key] = value
        return value

    def clear(self) -> None:
        """Forget everything."""
        self.recent, self.older = {}, {}
