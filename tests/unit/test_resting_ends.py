"""Streams whose clients are gone end a batch at a time, so a request arriving meanwhile is not held up."""

from __future__ import annotations

import logging
from typing import Any

import gevent
import pytest
from gevent.pool import Group

from flexgate_stream.server.resting import ENDING_BATCH, Ending

pytestmark = pytest.mark.timeout(10)


class Gone:
    """A resting stream whose client closed its connection: ``end`` records when it ran."""

    def __init__(self, ended: list[Any]) -> None:
        self.ended = ended

    def end(self) -> None:
        self.ended.append(self)


def test_a_request_arriving_while_thousands_of_streams_end_runs_before_they_all_have():
    greenlets, ended = Group(), []
    ending = Ending(greenlets, logging.getLogger("test"))
    for _ in range(2000):
        ending.add(Gone(ended))  # type: ignore[arg-type]
    probe = gevent.spawn(lambda: len(ended))  # a request accepted after the frame that found them gone
    assert probe.get(timeout=5) <= ENDING_BATCH
    greenlets.join(timeout=5)
    assert len(ended) == 2000 and not ending.running


def test_a_stream_that_fails_to_end_does_not_stop_the_others():
    class Broken:
        def end(self) -> None:
            raise RuntimeError("boom")

    greenlets, ended = Group(), []
    ending = Ending(greenlets, logging.getLogger("test"))
    ending.add(Broken())  # type: ignore[arg-type]
    ending.add(Gone(ended))  # type: ignore[arg-type]
    greenlets.join(timeout=5)
    assert len(ended) == 1
