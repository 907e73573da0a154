"""Values remembered by key, in two generations, so that what is still used is never all forgotten at once."""

from __future__ import annotations

from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class Memo(Generic[K, V]):
    """At most twice ``size`` values: when ``recent`` is full it becomes ``older`` and the older ones are forgotten.

    ``find`` looks in ``recent`` first (the common case costs one dict look-up), then in ``older``, and moves what
    it found there to ``recent``, so a value still in use outlives every rotation; ``keep`` what was made.
    """

    __slots__ = ("recent", "older", "size")

    def __init__(self, size: int) -> None:
        self.recent: dict[K, V] = {}
        self.older: dict[K, V] = {}
        self.size = size

    def find(self, key: K) -> V | None:
        """The value remembered under ``key``, or None."""
        value = self.recent.get(key)
        if value is None:
            value = self.older.get(key)
            if value is not None:
                self.keep(key, value)
        return value

    def keep(self, key: K, value: V) -> V:
        """``value``, remembered under ``key``."""
        if len(self.recent) >= self.size:
            self.older, self.recent = self.recent, {}
        self.recent[key] = value
        return value

    def clear(self) -> None:
        """Forget everything."""
        self.recent, self.older = {}, {}
