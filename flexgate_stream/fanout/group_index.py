"""The index of every tracked route and upstream (METRICS_INDEX, ``index.<kind>.<page>``) as the web tier reads it.

The publisher rewrites the pages every tick, and each subject keeps only its newest page. A page belongs to
the current index when it has page 0's windowEnd and a number below page 0's ``pages``; any other is a
leftover of an earlier, longer index, or the index is being rewritten while it is read. Looking a name up
scans the pages once per windowEnd in each worker and remembers on which page every name is, so the next
lookups read page 0 and that one page; after the next tick that page and its neighbours are tried first
(ranks change little between ticks), and only a name not found there costs a new scan. Parsing pages yields
to the other greenlets after each one, so a scan of a large index never holds up the worker's streams.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, NamedTuple

import gevent
from gevent.lock import Semaphore

from flexgate_stream.errors import RequestError
from flexgate_stream.fanout import jetstream_api
from flexgate_stream.fanout.jetstream_api import StoredMsg
from flexgate_stream.messages import INDEX_STREAM, index_subject
from flexgate_stream.timestamps import parse_iso

Call = Callable[..., Any]  # StreamService.call: run a JetStream coroutine on the bridge and wait
ATTEMPTS = 3  # reads of an index caught while the publisher rewrites it, before giving up
SCAN_BATCH = 16  # pages asked for at once while scanning (about 1 MB)


class IndexRewritten(RequestError):
    """The index changed under every attempt to read it consistently."""

    status = 503


class Page(NamedTuple):
    """One stored page: its number, windowEnd, the page count it announces, its document and its bytes."""

    number: int
    window_end: str
    pages: int
    doc: dict[str, Any]
    data: bytes


class Found(NamedTuple):
    """A name's entry in the index of ``window_end``."""

    window_end: str
    entry: dict[str, Any]


class _Where(NamedTuple):
    window_end: str
    pages: dict[str, int]  # name -> page number, every name of that windowEnd's index


def read_page(stored: StoredMsg | None, number: int) -> Page | None:
    """The page in ``stored``, or None when there is none or it is not a readable GroupIndex."""
    if stored is None:
        return None
    try:
        doc = json.loads(stored.data)
        end, pages, entries = doc["windowEnd"], doc["pages"], doc["entries"]
        parse_iso(end)
    except (ValueError, TypeError, KeyError, AttributeError):
        return None
    if not isinstance(pages, int) or not isinstance(entries, list):
        return None
    return Page(number, end, pages, doc, stored.data)


def entry_of(page: Page, name: str) -> dict[str, Any] | None:
    """The entry named ``name`` on ``page``, or None."""
    for entry in page.doc["entries"]:
        if isinstance(entry, dict) and entry.get("name") == name:
            return entry
    return None


def same_index(first: Page, page: Page | None) -> bool:
    """Whether ``page`` belongs to the index whose page 0 is ``first``."""
    return page is not None and page.number < first.pages and parse_iso(page.window_end) == parse_iso(first.window_end)


class IndexReader:
    """Pages and name lookups of the route and upstream index, for one web worker."""

    def __init__(self, call: Call) -> None:
        self.call = call
        self._where: dict[str, _Where] = {}
        self._scanning = {"routes": Semaphore(), "upstreams": Semaphore()}

    def read(self, kind: str, numbers: list[int]) -> list[Page | None]:
        """Pages ``numbers`` of ``kind`` as stored now, in one trip through the bridge."""
        subjects = [index_subject(kind, number) for number in numbers]
        stored = self.call(jetstream_api.last_messages, INDEX_STREAM, subjects)
        pages = []
        for msg, number in zip(stored, numbers, strict=True):
            pages.append(read_page(msg, number))
            if len(numbers) > 1:
                gevent.sleep(0)  # a page takes about a millisecond to parse: let the streams write meanwhile
        return pages

    def page(self, kind: str, number: int) -> tuple[Page | None, Page | None]:
        """Page 0 and page ``number`` of the current index; the latter None when it is not part of it."""
        first = wanted = None
        for attempt in range(ATTEMPTS):
            first, wanted = self.read(kind, [0, number])
            if first is None or number == 0 or number >= first.pages or wanted is None or same_index(first, wanted):
                break
            _pause(attempt)  # caught between two publications: read both again
        if first is None or (number and not same_index(first, wanted)):
            return first, None
        return first, first if number == 0 else wanted

    def lookup(self, kind: str, name: str) -> Found | None:
        """``name``'s entry in the current index of ``kind``, or None when that index does not hold it."""
        for attempt in range(ATTEMPTS):
            first = self.read(kind, [0])[0]
            if first is None:
                return None
            entry = entry_of(first, name)
            if entry is not None:
                return Found(first.window_end, entry)
            where = self._where.get(kind)
            if where is not None and where.window_end != first.window_end:
                found = self._near(kind, first, name, where.pages.get(name))
                if found is not None:
                    return found
            if where is None or where.window_end != first.window_end:
                where = self._scan(kind, first)
            if where is not None:
                number = where.pages.get(name)
                if number is None:
                    return None
                page = self.read(kind, [number])[0]
                entry = entry_of(page, name) if page is not None and same_index(first, page) else None
                if entry is not None:
                    return Found(first.window_end, entry)
            _pause(attempt)
        raise IndexRewritten(f"the {kind} index changed while it was read; retry shortly.",
                             headers={"Retry-After": "1"})

    def _near(self, kind: str, first: Page, name: str, hint: int | None) -> Found | None:
        """``name``'s entry if it is now on page ``hint`` (where an earlier index had it) or beside it."""
        if hint is None:
            return None
        for page in self.read(kind, [n for n in (hint, hint - 1, hint + 1) if 0 < n < first.pages]):
            entry = entry_of(page, name) if page is not None and same_index(first, page) else None
            if entry is not None:
                return Found(first.window_end, entry)
        return None

    def _scan(self, kind: str, first: Page) -> _Where | None:
        """Where each name is in the index whose page 0 is ``first`` (remembered); None when it changed meanwhile."""
        with self._scanning[kind]:
            known = self._where.get(kind)
            if known is not None and known.window_end == first.window_end:
                return known  # another request scanned it while this one waited
            where = _Where(first.window_end, {})
            for start in range(0, first.pages, SCAN_BATCH):
                numbers = [n for n in range(start, min(first.pages, start + SCAN_BATCH)) if n]
                batch = ([first] if start == 0 else []) + self.read(kind, numbers)
                for page in batch:
                    if page is None or not same_index(first, page):
                        return None
                    for entry in page.doc["entries"]:
                        if isinstance(entry, dict) and isinstance(entry.get("name"), str):
                            where.pages.setdefault(entry["name"], page.number)
            self._where[kind] = where
            return where


def _pause(attempt: int) -> None:
    """A short wait before reading again (none after the last attempt): the publisher writes every page of a
    tick within milliseconds."""
    if attempt + 1 < ATTEMPTS:
        gevent.sleep(0.05 * (attempt + 1))
