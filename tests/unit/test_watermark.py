"""The late-commit watermark: which ids are re-read for transactions that commit late, and when it gives up."""

from __future__ import annotations

import pytest

from flexgate_stream.tick.watermark import MAX_PENDING, advance_watermark

pytestmark = pytest.mark.timeout(10)


def test_a_read_stays_waited_for_until_the_transactions_open_at_the_next_read_have_ended():
    # read 1: ids up to 100, xmax 500; read 2 (now): ids up to 120, a transaction begun before read 1 still open
    low, pending, gave_up = advance_watermark([(100, 500)], 90, 120, xmax=510, xmin=495)
    assert (low, pending, gave_up) == (90, [(100, 500), (120, 510)], False)
    # read 3: every transaction open at read 2 has ended, so no row at or below read 1's ids can appear any more
    low, pending, gave_up = advance_watermark(pending, low, 130, xmax=520, xmin=510)
    assert (low, pending, gave_up) == (100, [(120, 510), (130, 520)], False)


def test_a_read_with_no_transaction_open_still_keeps_its_own_ids_until_the_next_one():
    assert advance_watermark([(100, 500)], 90, 120, xmax=510, xmin=510) == (100, [(120, 510)], False)


def test_the_first_read_after_start_waits_for_the_transactions_open_then():
    assert advance_watermark([], 90, 120, xmax=510, xmin=505) == (90, [(120, 510)], False)


def test_several_reads_whose_transactions_have_ended_are_let_go_at_once():
    pending = [(100, 500), (110, 505), (120, 510)]
    low, left, gave_up = advance_watermark(pending, 90, 130, xmax=520, xmin=512)
    assert (low, left, gave_up) == (110, [(120, 510), (130, 520)], False)


def test_no_new_rows_keeps_the_same_max_id_waited_for():
    low, pending, _ = advance_watermark([(100, 500)], 90, 100, xmax=500, xmin=500)
    assert (low, pending) == (100, [(100, 500)])


def test_a_transaction_open_longer_than_the_limit_is_given_up():
    pending = [(100, 500), (110, 505), (120, 510)]
    low, left, gave_up = advance_watermark(pending, 90, 130, xmax=520, xmin=499, limit=3)
    assert (low, left, gave_up) == (100, [(110, 505), (120, 510), (130, 520)], True)


def test_the_publisher_waits_max_pending_reads_for_a_late_commit():
    pending = [(1000 + i, 5000 + i) for i in range(MAX_PENDING - 1)]
    low, kept, gave_up = advance_watermark(pending, 999, 2000, xmax=6000, xmin=4999)
    assert (low, len(kept), gave_up) == (999, MAX_PENDING, False)
    low, kept, gave_up = advance_watermark(kept, low, 2001, xmax=6001, xmin=4999)
    assert (low, len(kept), gave_up) == (1000, MAX_PENDING, True)
    assert kept[0] == (1001, 5001) and kept[-1] == (2001, 6001)


def test_giving_up_never_moves_the_watermark_down():
    pending = [(100, 500), (110, 505), (120, 510)]
    low, _, gave_up = advance_watermark(pending, 105, 130, xmax=520, xmin=499, limit=3)
    assert (low, gave_up) == (105, True)


def test_the_pending_list_given_is_left_as_it_was():
    pending = [(100, 500), (110, 505)]
    advance_watermark(pending, 90, 130, xmax=520, xmin=510)
    assert pending == [(100, 500), (110, 505)]
