"""The tick over the rollups: fold the rows that arrived since the last tick, then shape windows from memory.

Every step runs under one PostgreSQL advisory lock (publishers side by side take turns) and in one repeatable-read
transaction, so the rollups, the change log and the watermark always agree; a tick that has nothing else to write
holds what it read for the next step to store (``held.py``).

Late commits: a row whose id is below the watermark but whose transaction was still open at the last read is
re-read: each read notes its visibility (``pg_current_snapshot()``); the next read takes the rows above ``low_id``
that are either new (id > max_id) or were not yet visible to the previous read. ``low_id`` moves up to a read's
max id once every transaction open at the read after it has finished (``watermark.advance_watermark``).
"""

from __future__ import annotations

import logging
import math
import time
from datetime import UTC, datetime

import psycopg2.extensions

from flexgate_stream.messages import OVERFLOW
from flexgate_stream.tick import cell_store, held, rollups, slots
from flexgate_stream.tick.figures import WindowFigures
from flexgate_stream.tick.labels import Cardinality, Labeller, read_patterns
from flexgate_stream.tick.lock import locked
from flexgate_stream.tick.rollup_state import RollupState, load_state, save_state, stored_version
from flexgate_stream.tick.rollups import MINUTE_SECONDS, Cell, Slots, Visibility, fold_rows, rows_sql, visible_sql
from flexgate_stream.tick.route_patterns import RoutePatterns
from flexgate_stream.tick.tally import DAY_MINUTES, HOUR_MINUTES, Tally
from flexgate_stream.tick.time_column import TimeColumn
from flexgate_stream.tick.watermark import MAX_PENDING, advance_watermark
from flexgate_stream.tick.window_figures import figures_of

log = logging.getLogger("workers.publisher")

KEEP_MINUTES = 2 * DAY_MINUTES + 60  # a catch-up window 24 h old still finds its whole 24 h
KEEP_CHANGES = 120  # versions of the change log kept for a publisher that falls behind (then it rebuilds)
BACKFILL_IDS = 100_000  # ids per backfill chunk (~0.3 s of work between two ticks)
FIRST_TICK_IDS = 10_000  # a log this small is folded by the first tick itself, which then publishes it complete
PRUNE_SECONDS = 10.0  # a tick prunes only when no fold between ticks did for this long
PRUNE_VERSIONS = 20  # the change log is pruned once this many versions were added
PATTERNS_SECONDS = 30.0  # how often the gateway's routes table is read again (a change shows within a minute)


def minute_of(window_end: datetime) -> int:
    """The one-minute bucket holding the last instant before ``window_end``."""
    return math.ceil(window_end.timestamp() / MINUTE_SECONDS) - 1


class IncrementalAggregation:
    """The publisher's rollup state: its version of the rollups, the running totals, the all-time count."""

    def __init__(self, column: TimeColumn, patterns: tuple[str, ...] = (), max_routes: int = 1000,
                 max_upstreams: int = 200, top: int = 20, tick_seconds: float = 5.0) -> None:
        self.column = column
        self.version = -1  # the change-log version the tally reflects; -1: not built
        self.tally: Tally | None = None
        self.minutes: dict[int, int] = {}  # requests per stored minute
        self.requests_before = 0
        self.backfill_total = 0
        self.backfill_below = 0
        self.own_patterns = patterns  # FLEXGATE_ROUTE_PATTERNS
        self.labeller = Labeller(RoutePatterns(patterns))
        self.patterns_read_at = -math.inf
        self.cardinality = Cardinality(max_routes, max_upstreams)
        self.top = top
        self.budget = 60_000  # bytes a summary's lists may take (the publisher lowers it to the server's limit)
        self.slot_ms = slots.slot_ms(tick_seconds)
        self.tick_ms = round(tick_seconds * 1000)
        self.ahead: datetime | None = None  # a fold may move the windows to this instant's minute (Publisher sets it)
        self.published: datetime | None = None  # the newest window stored in JetStream, as the publisher knows it
        self.pruned_at = -math.inf  # monotonic time of the last prune
        self.pruned_version = 0  # the change-log version at the last prune of the change log
        self.chunk_ids = BACKFILL_IDS  # the publisher makes it smaller while chunks run past its statement timeout
        self.held: held.HeldRead | None = None  # the last tick's read, stored by the next step

    def tick(self, conn: psycopg2.extensions.connection, window_ends: list[datetime],
             index: bool = False) -> list[WindowFigures]:
        """Fold new rows into the rollups, then the figures of each of ``window_ends`` (oldest first); ``index``:
        the last one also lists every tracked route and upstream."""
        try:
            return self._tick(conn, window_ends, index)
        except BaseException:
            self.forget()  # memory may hold changes the failed transaction did not store
            raise

    def forget(self) -> None:
        """Drop the running totals; they are rebuilt from the rollups when next needed."""
        self.tally, self.version, self.held = None, -1, None  # a held read is read again from the stored state
        self.cardinality.loaded = False

    def _tick(self, conn: psycopg2.extensions.connection, window_ends: list[datetime],
              index: bool = False) -> list[WindowFigures]:
        with locked(conn) as cur:
            state = self._state(cur)
            self._follow(cur, state)
            self._labels(cur, on_tick=bool(window_ends))
            base = held.base_of(state)
            cells, slot_cells = self._read_new(cur, state)
            prune = not window_ends or time.monotonic() - self.pruned_at >= PRUNE_SECONDS  # by the folds, not ticks
            state.version += bool(cells)
            # A tick with nothing else to write (its windows in the tally's minute) holds its read (``_settled``).
            if prune or self.tally is None or any(minute_of(end) != self.tally.minute for end in window_ends):
                held.store(cur, state, cells, slot_cells, self.slot_ms)
                if prune:
                    self._prune(cur, state)
                self._save(cur, state)
            else:
                self.held = held.HeldRead(base, state, cells, slot_cells)
            self._apply(cells, state.version)
            out = []
            for i, end in enumerate(window_ends):
                out.append(self._figures(cur, end, index and i == len(window_ends) - 1))
            if not window_ends and self.tally is not None:  # a fold: what no tick reads is brought up to date
                self.tally.between_ticks(None if self.ahead is None else minute_of(self.ahead),
                                         lambda a, b: rollups.load_cells(cur, a, b))
        return out

    def _labels(self, cur: psycopg2.extensions.cursor, on_tick: bool = False) -> None:
        """Read the route patterns again when due (on a tick, only when no fold did for a while); load the labels."""
        if (now := time.monotonic()) - self.patterns_read_at >= PATTERNS_SECONDS * (1.5 if on_tick else 1.0):
            self.patterns_read_at = now
            read_patterns(cur, self.labeller, self.own_patterns)
        if not self.cardinality.loaded:
            self.cardinality.load(cur, minute_of(datetime.now(UTC)) - DAY_MINUTES + 1)

    def backfill_step(self, conn: psycopg2.extensions.connection) -> bool:
        """Fold one chunk of the log that existed at first start; False once nothing is left."""
        try:
            return self._backfill_step(conn)
        except BaseException:
            self.forget()
            raise

    def _backfill_step(self, conn: psycopg2.extensions.connection) -> bool:
        with locked(conn) as cur:
            state = self._state(cur)
            if state.backfill_below <= 0:
                return False
            self._follow(cur, state)
            self._fold_existing(cur, state)
            self._save(cur, state)
        return bool(self.backfill_below > 0)

    def _fold_existing(self, cur: psycopg2.extensions.cursor, state: RollupState) -> None:
        """Fold the next chunk of the log that existed at first start (ids below ``backfill_below``) into ``state``."""
        high = state.backfill_below
        low = max(0, high - self.chunk_ids)
        first = Visibility(state.backfill_visibility)
        where = f"id > %(low)s AND id <= %(high)s AND {visible_sql('s0')}"
        self._labels(cur)
        cells = fold_rows(cur, rows_sql(self.column.instant(), where),
                          self.column.params(low=low, high=high) | first.params("s0"), self.labeller,
                          self.cardinality.filters)
        cutoff = minute_of(datetime.now(UTC)) - KEEP_MINUTES
        state.requests_before += sum(c.requests for c in cells if c.minute < cutoff)
        cells = [c for c in cells if c.minute >= cutoff]
        state.version += 1
        cell_store.store_cells(cur, cells, state.version)
        state.backfill_below = low
        self._apply(cells, state.version)
        self.backfill_below = low
        total = max(self.backfill_total, high)
        log.info("rollups: built from the existing log up to %.0f %% (ids %d..%d of %d)",
                 100.0 * (total - low) / total if total else 100.0, low + 1, high, total)

    @property
    def complete(self) -> bool:
        """True once the log that existed at first start is folded in."""
        return self.backfill_below <= 0

    def _state(self, cur: psycopg2.extensions.cursor) -> RollupState:
        state = load_state(cur, self.column)
        if state.fresh:
            log.info("rollups: first start; %d existing request ids to fold in chunks, new rows from id %d on",
                     state.max_id, state.max_id + 1)
            self.backfill_total = self.backfill_below = state.backfill_below
            if 0 < state.max_id <= min(FIRST_TICK_IDS, self.chunk_ids):  # in one chunk: folded by this tick
                self._fold_existing(cur, state)
        state = self._settled(cur, state)
        self.requests_before, self.backfill_below = state.requests_before, state.backfill_below
        return state

    def _settled(self, cur: psycopg2.extensions.cursor, state: RollupState) -> RollupState:
        """The state once what an earlier step left is stored: the last tick's held read (``held.py``), a version
        a tick of the release before only logged."""
        read, self.held = self.held, None
        if read is not None and read.base != held.base_of(state):  # another step read the same rows
            self._apply(held.negated(read.cells), read.base[0])
        elif read is not None:
            held.store(cur, read.state, read.cells, read.slot_cells, self.slot_ms)
            read.state.current, state = state.current, read.state
            save_state(cur, state)
        if state.logged is not None:
            cell_store.merge_logged(cur, state.logged)
            state.logged = None
            save_state(cur, state)
        return state

    def settle(self, conn: psycopg2.extensions.connection) -> None:
        """Store what the last tick held (a warm stop: a publisher of any release that comes next finds it)."""
        with locked(conn) as cur:
            self._settled(cur, load_state(cur, self.column))

    def _follow(self, cur: psycopg2.extensions.cursor, state: RollupState) -> None:
        """Apply the changes other publishers made since our version (or drop the tally if too far behind)."""
        if self.tally is None or self.version == state.version:
            return
        if state.version - self.version > KEEP_CHANGES // 2 or self.version > state.version:
            self.forget()
            return
        self._apply(rollups.load_changes(cur, self.version, state.version), state.version)

    def _read_new(self, cur: psycopg2.extensions.cursor, state: RollupState) -> tuple[list[Cell], list[Cell]]:
        """Fold the rows committed since the last read (minute cells, slot cells); move ``state`` past them."""
        if state.fresh:
            return [], []
        previous, now = Visibility(state.visibility), Visibility(state.current)
        instant = self.column.instant()
        # Two index range scans: the new ids as they are, the trailing span only for rows not seen before.
        sql = (rows_sql(instant, "id > %(max)s") + " UNION ALL "
               + rows_sql(instant, f"id > %(low)s AND id <= %(max)s AND NOT {visible_sql('prev')}"))
        params = self.column.params(low=state.low_id, max=state.max_id) | previous.params("prev")
        recent = Slots(self.slot_ms, self._slots_from())
        cells = fold_rows(cur, sql, params, self.labeller, self.cardinality.filters, recent)
        cur.execute("SELECT coalesce(max(id), 0) FROM requests")  # the same visibility: the newest visible id
        top = int(rollups.scalar(cur))
        state.max_id = max(state.max_id, top)
        state.low_id, state.pending, gave_up = advance_watermark(state.pending, state.low_id, state.max_id,
                                                                 now.xmax, now.xmin)
        state.visibility = now.text
        if gave_up:
            log.warning("rollups: a transaction writing requests has been open for %d reads; rows it commits"
                        " with ids up to %d will not be counted", MAX_PENDING, state.low_id)
        return cells, list(recent.cells.values())

    def _slots_from(self) -> int:
        """The end of the oldest window still to be published, in epoch ms (while unknown, 24 h ago): no window
        that ends earlier needs the rows stamped after it."""
        if self.published is None:
            return int(datetime.now(UTC).timestamp() * 1000) - DAY_MINUTES * 60_000
        return int(self.published.timestamp() * 1000) + self.tick_ms

    def _save(self, cur: psycopg2.extensions.cursor, state: RollupState) -> None:
        save_state(cur, state)
        self.requests_before = state.requests_before

    def _apply(self, cells: list[Cell], version: int) -> None:
        for cell in cells:
            self.minutes[cell.minute] = self.minutes.get(cell.minute, 0) + cell.requests
        self.cardinality.note(cells)
        if self.tally is not None:
            self.tally.apply(cells)
            self.version = version

    def _prune(self, cur: psycopg2.extensions.cursor, state: RollupState) -> None:
        """Drop the change log beyond KEEP_CHANGES versions, and cells older than KEEP_MINUTES (counted as older)."""
        self.pruned_at = time.monotonic()
        if state.version - self.pruned_version >= PRUNE_VERSIONS:
            self.pruned_version = state.version
            rollups.prune_changes(cur, state.version - KEEP_CHANGES)
        self.cardinality.expire(minute_of(datetime.now(UTC)) - DAY_MINUTES + 1)
        if self.published is not None:
            slots.prune_slots(cur, minute_of(self.published))
        oldest = minute_of(datetime.now(UTC)) - KEEP_MINUTES
        if not self.minutes or min(self.minutes) >= oldest:
            return
        state.requests_before += rollups.prune(cur, oldest)
        self.minutes = {m: n for m, n in self.minutes.items() if m >= oldest}

    def _figures(self, cur: psycopg2.extensions.cursor, end: datetime, index: bool = False) -> WindowFigures:
        minute = minute_of(end)
        if self.tally is None or not self.tally.reaches(minute):
            self._rebuild(cur, minute)
        else:
            self.tally.advance(minute, lambda a, b: rollups.load_cells(cur, a, b))
        assert self.tally is not None  # made by _rebuild
        own = self.held.later(end, minute, self.slot_ms) if self.held is not None else []  # not stored yet
        later = slots.after(cur, end, minute, own) if end.timestamp() % MINUTE_SECONDS else []
        all_time = self.requests_before + sum(n for m, n in self.minutes.items() if m <= minute)
        all_time -= sum(cell.requests for cell in later)
        self.tally.shift(later, -1)  # the rows of the minute stamped at or after the window's end
        try:
            figures = figures_of(self.tally, end, all_time, self.complete, self.top, self.budget, index)
        finally:
            self.tally.shift(later, 1)
        for kind, levels in (("routes", self.tally.day.routes), ("upstreams", self.tally.day.upstreams)):
            overflow = levels.get(OVERFLOW)
            figures.labels[kind] = (len(levels) - (overflow is not None), overflow.requests if overflow else 0)
        return figures

    def _rebuild(self, cur: psycopg2.extensions.cursor, minute: int) -> None:
        day = rollups.load_totals(cur, minute - DAY_MINUTES + 1, minute)
        recent = rollups.load_cells(cur, minute - HOUR_MINUTES, minute)
        self.tally = Tally(minute, day, recent)
        self.minutes = rollups.minute_totals(cur)
        self.version = stored_version(cur)
