"""The parent's side of the load client: several client processes, each holding a share of the streams."""

from __future__ import annotations

import array
import multiprocessing
from multiprocessing.connection import Connection
from typing import Any

from bench import load_client


class Driver:
    """``count`` load client processes against one server; commands go to all of them at once."""

    def __init__(self, port: int, path: str, count: int) -> None:
        ctx = multiprocessing.get_context("spawn")  # the parent has threads (NATS): never fork it
        self.pipes: list[Connection] = []
        self.procs = []
        for _ in range(count):
            mine, theirs = ctx.Pipe()
            proc = ctx.Process(target=load_client.serve, args=(theirs, port, path), daemon=True)
            proc.start()
            self.pipes.append(mine)
            self.procs.append(proc)

    def _all(self, command: str, *args: Any) -> list[Any]:
        for pipe in self.pipes:
            pipe.send((command, *args))
        return [pipe.recv() for pipe in self.pipes]

    def _split(self, total: int) -> list[int]:
        n = len(self.pipes)
        return [total // n + (1 if i < total % n else 0) for i in range(n)]

    def open(self, streams: int, seconds: float, timeout: float) -> tuple[int, float, int, int]:
        """Open ``streams`` over ``seconds``: (streaming, seconds until the last began, refused, failed)."""
        for pipe, share in zip(self.pipes, self._split(streams), strict=True):
            pipe.send(("open", share, seconds, timeout))
        return self._sum([pipe.recv() for pipe in self.pipes])

    def storm(self, seconds: float, timeout: float) -> tuple[int, float, int, int]:
        """Every stream closes and reconnects within ``seconds``."""
        return self._sum(self._all("storm", seconds, timeout))

    @staticmethod
    def _sum(answers: list[Any]) -> tuple[int, float, int, int]:
        return (sum(a[0] for a in answers), max(a[1] for a in answers), sum(a[2] for a in answers),
                sum(a[3] for a in answers))

    def start_measure(self, run: str, messages: int, timeout: float) -> None:
        for pipe in self.pipes:
            pipe.send(("measure", run, messages, timeout))

    def finish_measure(self) -> dict[str, Any]:
        answers = [pipe.recv() for pipe in self.pipes]
        latencies = array.array("q")
        for a in answers:
            latencies.frombytes(a["latencies"])
        return {"latencies": latencies, "delivered": sum(a["delivered"] for a in answers),
                "out_of_order": sum(a["out_of_order"] for a in answers),
                "client_cpu": sum(a["cpu"] for a in answers), "seconds": max(a["seconds"] for a in answers)}

    def close(self) -> None:
        for pipe in self.pipes:
            try:
                pipe.send(("quit",))
                pipe.recv()
            except (OSError, EOFError):
                pass
        for proc in self.procs:
            proc.join(10)
            if proc.is_alive():
                proc.kill()
