"""The consumer-group sink's batch cut (sinks.batch_log.cut): redelivered offsets follow the log."""

from __future__ import annotations

import pytest

from sinks.batch_log import LoggedBatch, batch_token, cut

SLOT = ("md.raw", 2)


def spans_of(offsets, logged=()):
    return [(s.first_offset, s.last_offset, s.token, s.logged) for s in cut("g", SLOT, offsets, logged)]


def items_of(offsets, logged=()):
    return [(s.start, s.stop) for s in cut("g", SLOT, offsets, logged)]


def test_cut_when_nothing_logged_then_one_new_span_named_by_its_offsets():
    assert spans_of([10, 11, 12]) == [(10, 12, batch_token("g", SLOT, 10, 12), False)]
    assert batch_token("g", SLOT, 10, 12) == "g/md.raw/2/10-12"


def test_cut_when_redelivered_past_logged_batches_then_they_come_first_under_their_tokens():
    logged = [LoggedBatch(10, 12, "first"), LoggedBatch(13, 14, "second")]
    assert spans_of(list(range(10, 20)), logged) == [
        (10, 12, "first", True), (13, 14, "second", True), (15, 19, "g/md.raw/2/15-19", False)]


def test_cut_when_items_stop_inside_a_logged_batch_then_its_span_is_the_whole_batch_beyond_the_items():
    # the caller reads 12-14 from Kafka and inserts 10-14 under "first": never part of it under its token
    assert spans_of([8, 9, 10, 11], [LoggedBatch(10, 14, "first")]) == [
        (8, 9, "g/md.raw/2/8-9", False), (10, 14, "first", True)]
    assert items_of([8, 9, 10, 11], [LoggedBatch(10, 14, "first")]) == [(0, 2), (2, 4)]


def test_cut_when_items_start_inside_a_logged_batch_then_its_span_is_the_whole_batch_before_the_items():
    assert spans_of([12, 13, 14, 15], [LoggedBatch(10, 13, "first")]) == [
        (10, 13, "first", True), (14, 15, "g/md.raw/2/14-15", False)]
    assert items_of([12, 13, 14, 15], [LoggedBatch(10, 13, "first")]) == [(0, 2), (2, 4)]


def test_cut_when_items_lie_inside_one_logged_batch_then_one_span_of_it():
    assert spans_of([12, 13], [LoggedBatch(10, 19, "first")]) == [(10, 19, "first", True)]


def test_cut_when_logged_batch_ends_before_the_items_then_it_is_ignored():
    assert spans_of([20, 21], [LoggedBatch(10, 19, "old")]) == [(20, 21, "g/md.raw/2/20-21", False)]


def test_cut_when_offsets_have_gaps_then_logged_spans_cover_what_is_left_of_them():
    # a compacted topic: offsets 11 and 12 are gone
    assert spans_of([10, 13, 14, 15], [LoggedBatch(10, 13, "a")]) == [
        (10, 13, "a", True), (14, 15, "g/md.raw/2/14-15", False)]


def test_cut_when_a_logged_batch_falls_in_a_gap_of_the_items_then_it_has_no_span():
    assert spans_of([10, 20], [LoggedBatch(12, 15, "gone")]) == [(10, 10, "g/md.raw/2/10-10", False),
                                                                 (20, 20, "g/md.raw/2/20-20", False)]
