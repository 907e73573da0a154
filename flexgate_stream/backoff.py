"""Retrying a lost connection, as the bridge and the publisher do: exponential backoff between attempts, and one
log line per change of state."""

from __future__ import annotations

import logging
import random
import time


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


class StateLog:
    """Logs a connection's state only when it changes: one line on going down, one on coming back.

    ``name`` is the process's identity prefix (``publisher[<id>]``, ``bridge[<pid>]``), ``what`` the other end.
    """

    def __init__(self, log: logging.Logger, name: str, what: str) -> None:
        self.log, self.name, self.what = log, name, what
        self.down_since: float | None = None

    def down(self, reason: object, exc_info: bool = False, hint: str = "") -> None:
        """Note a failure (its first line, then ``hint``: what to do about it); logs only the first of a run."""
        if self.down_since is None:
            self.down_since = time.monotonic()
            said = str(reason).strip().splitlines()[0] if str(reason).strip() else type(reason).__name__
            self.log.warning("%s: %s is unavailable (%s); retrying with backoff", self.name, self.what,
                             f"{said}: {hint}" if hint else said, exc_info=exc_info)

    def up(self, where: str = "") -> None:
        """Note a success (``where``: the server reached, when worth saying); logs only after a failure."""
        if self.down_since is not None:
            self.log.info("%s: %s is back after %.1f s%s", self.name, self.what, time.monotonic() - self.down_since,
                          f", connected to {where}" if where else "")
            self.down_since = None
