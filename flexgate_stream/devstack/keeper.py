"""Keeps ``make run``'s embedded servers running: a server that dies is started again on its port, with its data."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable

from flexgate_stream.devstack.servers import NatsServer, PostgresServer
from flexgate_stream.errors import LocalStackError

log = logging.getLogger("devstack")


class ServerKeeper(threading.Thread):
    """Starts a server again, on its port and with its data, when it dies while the stack runs.

    Gives up at the ``max_deaths``-th death within ``window`` seconds (the README's "after 3 deaths within 60 s"),
    and then calls ``on_give_up``.
    """

    def __init__(self, name: str, server: NatsServer | PostgresServer, on_give_up: Callable[[], None],
                 max_deaths: int = 3, window: float = 60.0, interval: float = 0.5) -> None:
        super().__init__(name=f"keeper-{name}", daemon=True)
        self.server_name = name
        self.server = server
        self.on_give_up = on_give_up
        self.max_deaths = max_deaths
        self.window = window
        self.interval = interval
        self.deaths: deque[float] = deque()
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(self.interval):
            proc = self.server.proc
            if proc is None or proc.poll() is None:
                continue
            if self._too_many(time.monotonic()):
                log.error("%s died %d times within %.0f s; giving up (its log: %s)", self.server_name,
                          len(self.deaths), self.window, self.server.log_file)
                self.on_give_up()
                return
            log.warning("%s (pid %d) exited with status %s; starting it again on port %s with the same data",
                        self.server_name, proc.pid, proc.returncode, self.server.port)
            try:
                self.server.start()
            except LocalStackError as exc:
                log.warning("%s did not start again: %s", self.server_name, exc)

    def _too_many(self, now: float) -> bool:
        self.deaths.append(now)
        while self.deaths and now - self.deaths[0] > self.window:
            self.deaths.popleft()
        return len(self.deaths) >= self.max_deaths

    def stop(self) -> None:
        self.stopping.set()
        if self.is_alive() and self is not threading.current_thread():
            self.join(timeout=60)
