"""The desk on ticks as columns: a TickBatch's rows are market events as if each were its record,
and a feed watermark makes everything older final at once, with results identical to the records
one by one, for any batching."""

from __future__ import annotations

import pickle
import random
from dataclasses import replace
from functools import lru_cache

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas import Quote, Trade, content_hash
from schemas.columns import QUOTE, TRADE, TickBatch
from strategies.signals import CrossSection
from trading.desk import T_DLQ, T_REPORTS, DeskConfig, TradingDesk, default_portfolio
from trading.tick_runs import QueuedTicks
from tests.unit.trading.test_desk import MS, T0, by_table, desk_inputs, quote, run_desk, section, trade

CONFIGS = {
    "market": DeskConfig(),
    "passive": DeskConfig(portfolio=default_portfolio().model_copy(update={"execution": "passive"})),
}


@lru_cache(maxsize=None)
def tape() -> tuple:
    return tuple(desk_inputs(chunk=1, ticks=12_000))


@lru_cache(maxsize=None)
def one_by_one(config: str) -> tuple[tuple, dict]:
    """The reference: every record on its own, no watermark; its output and the desk's counts."""
    desk = TradingDesk(CONFIGS[config])
    return tuple(run_desk(list(tape()), desk)), desk.counts


def derived_ids(batch: TickBatch) -> TickBatch:
    """The batch with no ids, its quotes' feed positions in ``seq``: record_ids() derives the same ids."""
    seq = np.array([int(i.rsplit(":", 1)[1]) if k else -1 for i, k in zip(batch.ids.tolist(), batch.kind.tolist())])
    derived = replace(batch, ids=None, seq=seq)
    assert derived.record_ids().tolist() == batch.ids.tolist()
    return derived


def as_batches(arrivals: list, sizes: list[int], marks: list[str], calls: list[int]) -> list[list]:
    """The tape's ticks cut into TickBatches of ``sizes`` (cycled), each with a watermark per ``marks``
    (none, its last tick's time, or the next tick's), cross-sections where they arrived; handed to
    the desk ``calls`` (cycled) items per on_batch."""
    items: list = []
    ticks: list = []
    following = [item.ts_event for item in arrivals if type(item) in (Trade, Quote)][1:] + [None]
    position = 0

    def cut() -> None:
        nonlocal ticks
        if not ticks:
            return
        mark = marks[len(items) % len(marks)]
        watermark = {"none": None, "last": ticks[-1].ts_event, "next": following[position - 1]}[mark]
        batch = replace(TickBatch.from_records(ticks), watermark=watermark)
        if len(items) % 2:  # as normalize hands them over: ids derived from the feed's seq
            batch = derived_ids(batch)
        items.append(batch)
        ticks = []

    for item in arrivals:
        if type(item) is CrossSection:
            cut()
            items.append(item)
            continue
        ticks.append(item)
        position += 1
        if len(ticks) >= sizes[len(items) % len(sizes)]:
            cut()
    cut()
    groups, start = [], 0
    while start < len(items):
        size = calls[len(groups) % len(calls)]
        groups.append(items[start:start + size])
        start += size
    return groups


def run_batches(groups: list[list], desk: TradingDesk) -> list:
    out = []
    for group in groups:
        out.extend(desk.on_batch(group))
    return out + desk.flush()


@pytest.mark.parametrize("config", sorted(CONFIGS))
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sizes=st.lists(st.integers(1, 4_000), min_size=1, max_size=6),
       marks=st.lists(st.sampled_from(["none", "last", "next"]), min_size=1, max_size=5),
       calls=st.lists(st.integers(1, 5), min_size=1, max_size=4))
def test_desk_when_ticks_come_as_batches_with_or_without_watermarks_then_records_identical_to_one_by_one(
        config, sizes, marks, calls):
    reference, counts = one_by_one(config)
    assert len([r for r in by_table(reference, T_REPORTS) if r.is_fill]) > 50, "too few fills to prove anything"
    desk = TradingDesk(CONFIGS[config])
    out = run_batches(as_batches(list(tape()), sizes, marks, calls), desk)
    assert [t for t, _ in out] == [t for t, _ in reference]
    assert content_hash(r for _, r in out) == content_hash(r for _, r in reference)
    assert desk.counts == counts and counts["late"] == counts["duplicates"] == 0


def interleaved(batch: TickBatch, rng: random.Random) -> TickBatch:
    """The batch's rows with the symbols interleaved at random, each symbol's own rows in order (as
    keyed partitions deliver them)."""
    codes = batch.symbol.tolist()
    queues = {code: [row for row, c in enumerate(codes) if c == code] for code in set(codes)}
    order = []
    while queues:
        code = rng.choice(sorted(queues))
        order.append(queues[code].pop(0))
        if not queues[code]:
            del queues[code]
    return batch.take(np.array(order, dtype=np.int64))


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sizes=st.lists(st.integers(2, 3_000), min_size=1, max_size=4), seed=st.integers(0, 2**32 - 1))
def test_desk_when_batches_interleave_the_symbols_differently_then_records_identical_to_one_by_one(sizes, seed):
    """Split topology: no watermark, every batch's symbols interleaved as the partitions happened
    to be polled; the desk restores event order."""
    reference, counts = one_by_one("market")
    rng = random.Random(seed)
    groups = [[interleaved(item, rng) if type(item) is TickBatch else item for item in group]
              for group in as_batches(list(tape()), sizes, ["none"], [1])]
    desk = TradingDesk()
    out = run_batches(groups, desk)
    assert content_hash(r for _, r in out) == content_hash(r for _, r in reference)
    assert desk.counts == counts


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sizes=st.lists(st.integers(1, 3_000), min_size=1, max_size=4),
       repeats=st.lists(st.tuples(st.integers(1, 20_000), st.integers(0, 400)), min_size=1, max_size=30))
def test_desk_when_batches_carry_redelivered_rows_then_dropped_and_records_identical_to_one_by_one(sizes, repeats):
    """At-least-once delivery: rows seen before (in an earlier batch or earlier in the same one)
    come again; each is dropped as a duplicate, as its record would be."""
    reference, counts = one_by_one("market")
    arrivals = list(tape())
    redelivered = list(arrivals)
    for at, back in sorted(repeats, reverse=True):
        at = min(at, len(arrivals))
        earlier = [i for i in range(max(0, at - 1 - back), at) if type(arrivals[i]) in (Trade, Quote)]
        if earlier:
            redelivered.insert(at, arrivals[earlier[0]])
    extra = len(redelivered) - len(arrivals)
    desk = TradingDesk()
    out = run_batches(as_batches(redelivered, sizes, ["none", "last"], [2]), desk)
    assert content_hash(r for _, r in out) == content_hash(r for _, r in reference)
    assert desk.counts == counts | {"duplicates": extra}


def test_desk_when_pickled_with_tick_batches_queued_then_continues_identically():
    groups = as_batches(list(tape()), [700], ["none"], [3])
    whole = run_batches(groups, TradingDesk())
    desk = TradingDesk()
    half = len(groups) // 2
    out = []
    for group in groups[:half]:
        out.extend(desk.on_batch(group))
    assert any(type(entry[4]) is QueuedTicks for entry in desk.sequencer.queue)
    restored = pickle.loads(pickle.dumps(desk))
    out += run_batches(groups[half:], restored)
    assert content_hash(r for _, r in out) == content_hash(r for _, r in whole)


def test_desk_when_a_batch_carries_a_watermark_then_the_tape_below_it_is_final_at_once():
    ticks = [quote(0, 99.99, 100.01), trade(0, 100.0, 100)]
    ticks += [t for ms in range(1_010, 1_200, 10) for t in (quote(ms, 99.99, 100.01), trade(ms, 100.0, 100))]
    without, with_watermark = TradingDesk(), TradingDesk()
    for desk in (without, with_watermark):
        desk.on_item(TickBatch.from_records(ticks[:2]))
        desk.on_item(section(1_000, 0.04))
    held = without.on_item(TickBatch.from_records(ticks[2:]))
    released = with_watermark.on_item(replace(TickBatch.from_records(ticks[2:]), watermark=T0 + 1_200 * MS))
    # no lateness window to wait out: the order placed at 1 s is live at 1.05 s and filled by the
    # next print, in the same call that brought it
    assert [r for r in by_table(released, T_REPORTS) if r.is_fill]
    assert not [r for r in by_table(held, T_REPORTS) if r.is_fill]


def test_desk_when_a_batch_row_is_redelivered_then_dropped_and_when_older_than_processed_then_dead_lettered():
    desk = TradingDesk()
    first = [quote(0, 99.99, 100.01), trade(0, 100.0, 100), trade(100, 100.0, 100)]
    desk.on_item(replace(TickBatch.from_records(first), watermark=T0 + 200 * MS))
    desk.on_item(section(1_000, 0.04))
    desk.on_item(replace(TickBatch.from_records([trade(900, 100.0, 10)]), watermark=T0 + 950 * MS))
    again = trade(100, 100.0, 100)  # the same id: redelivered
    old = trade(50, 100.0, 100).model_copy(update={"id": "other"})
    out = desk.on_item(TickBatch.from_records([again, old, trade(960, 100.0, 5), trade(960, 100.0, 5)]))
    assert desk.counts["duplicates"] == 2  # the redelivery, and the repeat inside the batch
    ((table, dead),) = [(t, r) for t, r in out if t == T_DLQ]
    assert dead.reason == "late" and dead.source_topic == "md.trades" and "other" in dead.id
    assert desk.counts["late"] == 1


def test_desk_when_ticks_are_handed_over_in_process_then_no_id_is_remembered_and_records_identical():
    """The fused embedded flow hands each tick over once: the desk skips the redelivery check (its
    per-row ids and set operations were a quarter of the desk's time) and gives the same records."""
    reference, counts = one_by_one("market")
    config = CONFIGS["market"].model_copy(update={"redelivered_ticks": False})
    desk = TradingDesk(config)
    out = run_batches(as_batches(list(tape()), [700, 1_300], ["last"], [1, 2]), desk)
    assert content_hash(r for _, r in out) == content_hash(r for _, r in reference)
    assert desk.sequencer._recent_ids == {} and desk.counts["duplicates"] == 0
    restored = pickle.loads(pickle.dumps(desk))
    assert restored.sequencer.redelivered_ticks is False


def by_partition(batch: TickBatch) -> list[TickBatch]:
    """The batch as a Kafka stage polls it: trades and quotes from their own topics, each symbol's
    rows on one of two partitions, every partition its own batch (overlapping in event time)."""
    parts = []
    for kind in (TRADE, QUOTE):
        for partition in (0, 1):
            rows = np.flatnonzero((batch.kind == kind) & (batch.symbol % 2 == partition))
            if len(rows):
                parts.append(batch.take(rows))
    return parts


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sizes=st.lists(st.integers(50, 3_000), min_size=1, max_size=3), snapshot_every=st.integers(1, 7))
def test_desk_when_partition_batches_overlap_and_snapshots_compact_the_queue_then_records_identical(
        sizes, snapshot_every):
    """Each partition's batch handed over on its own (one queue entry each, cut into short runs by
    the others' rows unless merged), and the desk pickled and restored every few hand-overs (each
    snapshot merges the queued batches into one): the same records as one by one."""
    reference, counts = one_by_one("market")
    calls = [[part] if type(item) is TickBatch else [item]
             for group in as_batches(list(tape()), sizes, ["none"], [1]) for item in group
             for part in (by_partition(item) if type(item) is TickBatch else [item])]
    desk, out = TradingDesk(), []
    for n, call in enumerate(calls):
        out.extend(desk.on_batch(call))
        if n % snapshot_every == 0:
            desk = pickle.loads(pickle.dumps(desk))
            assert sum(type(entry[4]) is QueuedTicks for entry in desk.sequencer.queue) <= 1
    out += desk.flush()
    assert content_hash(r for _, r in out) == content_hash(r for _, r in reference)
    assert desk.counts == counts


def test_sequencer_when_queued_batches_overlap_in_time_then_released_as_one_run_in_key_order():
    ticks = [t for t in tape() if type(t) in (Trade, Quote)][:2_000]
    parts = by_partition(TickBatch.from_records(ticks))
    assert len(parts) == 4
    sequencer = TradingDesk().sequencer
    for part in parts:
        sequencer.queue_ticks(part)
    released = [item for item in sequencer.release(None) if type(item) is TickBatch]
    expected = sorted(ticks, key=lambda t: (t.ts_event, t.symbol))  # one symbol's ticks stay in arrival order
    assert [r.id for run in released for r in run.to_records()] == [t.id for t in expected]
    bar_ends = len({(t.symbol, t.ts_event // 1_000_000_000) for t in ticks if type(t) is Trade})
    assert len(released) <= bar_ends + 1  # cut by the bar ends alone, not by the other batches' rows
