"""The late-commit watermark (pure): below which request id no row can still appear.

Ids are taken when a row is inserted, but the row shows only when its transaction commits, possibly after
rows with higher ids were read. Each read of new rows notes its max id and its visibility's ``xmax``; the
next read also re-reads the ids between ``low`` and the last max id that were not visible then. Read i's
max id becomes ``low`` once every transaction open at read i+1 has ended (the current ``xmin`` has passed
read i+1's ``xmax``): no row at or below read i's max id can appear after that.
"""

from __future__ import annotations

MAX_PENDING = 240  # reads a late commit is waited for (~2 min: the publisher reads twice a second), then given up

Read = tuple[int, int]  # one read: its max id and its visibility's xmax


def advance_watermark(pending: list[Read], low: int, read_max: int, xmax: int, xmin: int,
                      limit: int = MAX_PENDING) -> tuple[int, list[Read], bool]:
    """After a read up to id ``read_max`` with visibility (``xmin``, ``xmax``): the new ``low``, the reads still
    waited for, and whether ids were given up (more than ``limit`` reads waited for: rows still to commit
    at or below the new ``low`` will not be counted)."""
    reads = [*pending, (read_max, xmax)]
    done = [i for i in range(len(reads) - 1) if xmin >= reads[i + 1][1]]
    if done:
        low, reads = reads[done[-1]][0], reads[done[-1] + 1:]
    if len(reads) > limit:  # a writer held open this long would make every read rescan its span
        return max(low, reads[-limit - 1][0]), reads[-limit:], True
    return low, reads, False
