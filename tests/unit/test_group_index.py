"""The index reader's consistency rules and what it remembers, against a stand-in for the bridge's JetStream reads."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from flexgate_stream.devstack.samples import sample_index_pages
from flexgate_stream.fanout.group_index import IndexReader, IndexRewritten
from flexgate_stream.fanout.jetstream_api import StoredMsg
from flexgate_stream.messages import encode, index_subject

pytestmark = pytest.mark.timeout(20)

ROUTES = {f"/r/{i:04d}": 10_000 - i for i in range(1000)}  # 10 pages of 100, /r/0000 the busiest


class Store:
    """The newest message per index subject; ``reads`` counts the subjects asked for."""

    def __init__(self) -> None:
        self.messages: dict[str, bytes] = {}
        self.reads = 0
        self.before_read: Callable[[], None] = lambda: None

    def put(self, pages: list[dict[str, Any]]) -> None:
        for page in pages:
            self.messages[index_subject(page["kind"], page["page"])] = encode(page)

    def call(self, fn: Callable[..., Any], stream: str, subjects: list[str]) -> list[StoredMsg | None]:
        self.before_read()
        self.reads += len(subjects)
        return [StoredMsg(1, s, self.messages[s]) if s in self.messages else None for s in subjects]


def pages(counts: dict[str, int] = ROUTES) -> list[dict[str, Any]]:
    return sample_index_pages("routes", counts, per_page=100)


def test_a_lookup_scans_once_per_index_then_reads_two_pages():
    store = Store()
    store.put(pages())
    reader = IndexReader(store.call)
    found = reader.lookup("routes", "/r/0950")
    assert found is not None and found.entry["last24Hours"]["requests"] == ROUTES["/r/0950"]
    assert store.reads == 1 + 9 + 1  # page 0, the scan of the others, the page holding it
    store.reads = 0
    assert reader.lookup("routes", "/r/0420") is not None
    assert reader.lookup("routes", "/nowhere") is None  # the scan proved it absent from this index
    assert store.reads == 2 + 1


def test_after_a_new_index_the_page_it_was_on_is_tried_before_a_scan():
    store = Store()
    store.put(pages())
    reader = IndexReader(store.call)
    reader.lookup("routes", "/r/0950")
    store.put(pages({**ROUTES, "/r/0950": ROUTES["/r/0955"] - 1}))  # one rank down: the same page still
    store.reads = 0
    found = reader.lookup("routes", "/r/0950")
    assert found is not None and found.entry["last24Hours"]["requests"] == ROUTES["/r/0955"] - 1
    assert store.reads == 1 + 2  # page 0, then the remembered page and its neighbour before it


def test_pages_of_two_indexes_are_never_mixed():
    store = Store()
    older, newer = pages(), pages({**ROUTES, "/r/0950": 1})
    store.put(older)
    store.put(newer[:1])  # page 0 of the newer index is out, its other pages not yet
    reader = IndexReader(store.call)
    first, page = reader.page("routes", 5)
    assert first is not None and page is None
    with pytest.raises(IndexRewritten) as raised:
        reader.lookup("routes", "/r/0950")
    assert raised.value.status == 503 and raised.value.headers == {"Retry-After": "1"}

    store.before_read = lambda: store.put(newer)  # the publisher finishes while the reader waits to retry
    found = reader.lookup("routes", "/r/0950")
    assert found is not None and found.window_end == newer[0]["windowEnd"]
    assert found.entry["last24Hours"]["requests"] == 1


def test_a_page_beyond_a_shorter_newer_index_is_not_part_of_it():
    store = Store()
    store.put(pages())
    store.put(pages(dict(list(ROUTES.items())[:300])))  # 3 pages now; pages 3 to 9 are leftovers
    reader = IndexReader(store.call)
    assert reader.page("routes", 2)[1] is not None
    assert reader.page("routes", 7)[1] is None
    assert reader.lookup("routes", "/r/0700") is None  # only on a leftover page
