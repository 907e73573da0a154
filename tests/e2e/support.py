"""Helpers for end-to-end tests: a gunicorn web server we start and stop by PID, a NATS publisher,
and a small SSE client. The fixtures in conftest.py build on these."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import requests

from flexgate_stream.devstack.nats_client import NatsClient
from flexgate_stream.devstack.processes import process_parents
from flexgate_stream.devstack.web_server import ROOT, WebServer

__all__ = ["ROOT", "NatsClient", "SSEClient", "WebServer", "alive", "descendants", "open_spread"]


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid``, from /proc."""
    children: dict[int, list[int]] = {}
    for child, parent in process_parents().items():
        children.setdefault(parent, []).append(child)
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"


@dataclass
class Event:
    """One SSE frame as a browser would see it (comments kept apart)."""

    event: str = "message"
    data: str = ""
    id: str | None = None
    retry: int | None = None
    comment: str | None = None

    def json(self) -> dict:
        return json.loads(self.data)


@dataclass
class SSEClient:
    """requests with stream=True and a small SSE parser."""

    url: str
    headers: dict = field(default_factory=dict)
    params: dict = field(default_factory=dict)
    read_timeout: float = 10.0

    def __post_init__(self) -> None:
        self.response = requests.get(self.url, headers=self.headers, params=self.params, stream=True,
                                     timeout=(5, self.read_timeout))
        self.status = self.response.status_code
        self.worker = self.response.headers.get("X-Flexgate-Worker")
        self.last_id: str | None = None
        self.last_retry: int | None = None
        self._buffer = b""
        self._chunks = self.response.iter_content(chunk_size=None) if self.status == 200 else iter(())

    def next(self, include_comments: bool = False) -> Event:
        """The next event (StopIteration when the server ended the stream)."""
        while True:
            while b"\n\n" not in self._buffer:
                self._buffer += next(self._chunks)
            raw, self._buffer = self._buffer.split(b"\n\n", 1)
            event = parse_frame(raw.decode())
            if event.id is not None:
                self.last_id = event.id
            if event.retry is not None:
                self.last_retry = event.retry
            if event.comment is None or include_comments:
                return event

    def data_events(self, count: int) -> list[Event]:
        """The next ``count`` unnamed (message) events, skipping status and other named events."""
        found = []
        while len(found) < count:
            event = self.next()
            if event.event == "message":
                found.append(event)
        return found

    def close(self) -> None:
        self.response.close()


def parse_frame(raw: str) -> Event:
    event = Event()
    data: list[str] = []
    for line in raw.split("\n"):
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "":
            event.comment = value
        elif name == "data":
            data.append(value)
        elif name == "event":
            event.event = value
        elif name == "id":
            event.id = value
        elif name == "retry":
            event.retry = int(value)
    event.data = "\n".join(data)
    return event


def open_spread(url: str, count: int, workers: int = 2, **kwargs) -> list[SSEClient]:
    """``count`` streams opened concurrently (as browsers would), each past its hello frame, on all ``workers``.

    The kernel hands connections to whichever worker accepts first, so a burst can land on one
    worker; then one stream at a time is reopened until every worker holds some.
    """
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=16) as pool:
        clients = list(pool.map(lambda _: SSEClient(url, **kwargs), range(count)))
    for _attempt in range(200):
        if len({c.worker for c in clients}) >= workers:
            break
        crowded = clients.pop(0)
        clients.append(SSEClient(url, **kwargs))
        crowded.close()
    for client in clients:
        assert client.status == 200, client.status
        assert client.next().json()["type"] == "connected"
    return clients
