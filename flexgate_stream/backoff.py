"""Exponential backoff between reconnect attempts, shared by the bridge and the publisher's connections."""

from __future__ import annotations

import random


class Backoff:
    """Delays of ``first`` seconds, doubling up to ``cap``, each spread by +/- ``jitter`` so peers do not retry
    in step; ``reset()`` after a success starts again from ``first``."""

    def __init__(self, first: float = 0.5, cap: float = 10.0, jitter: float = 0.0) -> None:
        self.first, self.cap, self.jitter = first, cap, jitter
        self.attempts = 0

    def next_delay(self) -> float:
        """The delay before the next attempt."""
        delay = min(self.cap, self.first * 2.0 ** self.attempts)
        self.attempts += 1
        if self.jitter:
            delay *= random.uniform(1 - self.jitter, 1 + self.jitter)
        return delay

    def reset(self) -> None:
        """Start again from the first delay."""
        self.attempts = 0
