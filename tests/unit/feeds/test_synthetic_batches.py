"""SyntheticFeed.batches(): the tape of ticks() as RawTickBatches, paced or not, with watermarks."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from feeds.batching import HANDOVER_NS, HEARTBEAT_NS
from feeds.pacing import Pacer
from feeds.synthetic import SyntheticConfig, SyntheticFeed
from schemas import RawTick
from schemas.columns import QUOTE, SIDE_NONE, TRADE, RawTickBatch, columnar_payload

S = 1_000_000_000
SMALL = SyntheticConfig(ticks_per_second=100, u_shape=0.0, max_ticks=6_000)  # 16 s blocks of ~1,600 ticks


def shape(tick: RawTick) -> tuple:
    """Every field but the wall-clock ts_ingest, payload values with their types and key order."""
    return (tick.schema_version, tick.id, tick.seq, tick.ts_event, tick.source, tick.symbol, tick.payload_format,
            [(k, type(v), v) for k, v in tick.payload.items()])


def flatten(batches: list[RawTickBatch]) -> list[RawTick]:
    return [tick for batch in batches for tick in batch.to_records()]


def block_starts(config: SyntheticConfig, n: int) -> list[int]:
    return [seq for seq, _ in itertools.islice(SyntheticFeed(config).blocks(), n)]


@pytest.fixture(scope="module")
def small_tape() -> list[tuple]:
    return [shape(t) for t in SyntheticFeed(SMALL).ticks()]


def test_batches_when_unpaced_from_any_start_then_records_equal_ticks(small_tape):
    starts = block_starts(SMALL, 3)
    assert starts[1] > 0
    for start in (0, 1, 777, starts[1] - 1, starts[1], starts[1] + 1, starts[2], 5_999, 6_000):
        got = [shape(t) for t in flatten(list(SyntheticFeed(SMALL).batches(start)))]
        assert got == small_tape[start:], start


def test_batches_when_max_ticks_inside_or_at_a_block_end_then_stop_exactly_there():
    starts = block_starts(SMALL, 3)
    for limit in (starts[1] - 1, starts[1], starts[1] + 1, starts[2] + 500, 1):
        config = SMALL.model_copy(update={"max_ticks": limit})
        batches = list(SyntheticFeed(config).batches(0, max_rows=700))
        assert [shape(t) for t in flatten(batches)] == [shape(t) for t in SyntheticFeed(config).ticks()]
        assert int(batches[-1].seq[-1]) == limit - 1


@settings(max_examples=25, deadline=None)
@given(start=st.integers(0, 4_000), max_rows=st.integers(1, 3_000), max_ticks=st.integers(0, 4_000))
def test_batches_when_any_start_rows_and_limit_then_records_equal_ticks(start, max_rows, max_ticks):
    config = SMALL.model_copy(update={"max_ticks": max_ticks})
    batches = list(SyntheticFeed(config).batches(start, max_rows=max_rows))
    assert all(0 < len(b) <= max_rows for b in batches)
    assert [shape(t) for t in flatten(batches)] == [shape(t) for t in SyntheticFeed(config).ticks(start)]


def test_batches_when_built_then_columns_hold_the_contract():
    batches = list(SyntheticFeed(SMALL).batches(0, max_rows=500))
    assert {len(b) for b in batches[:3]} == {500}
    for batch in batches:
        assert batch.source == "synthetic:7" and batch.symbols == SMALL.symbols
        assert (batch.symbol.dtype, batch.kind.dtype, batch.side.dtype) == (np.int32, np.int8, np.int8)
        assert batch.seq.dtype == batch.ts_event.dtype == batch.ts_ingest.dtype == np.int64
        assert np.all(np.diff(batch.seq) == 1)
        quote, trade = batch.kind == QUOTE, batch.kind == TRADE
        assert np.all(quote | trade)
        assert np.isnan(batch.price[quote]).all() and np.isnan(batch.size[quote]).all()
        assert np.isnan(batch.bid[trade]).all() and np.isnan(batch.ask_size[trade]).all()
        assert not np.isnan(batch.price[trade]).any() and not np.isnan(batch.bid_size[quote]).any()
        assert np.all(batch.side[quote] == SIDE_NONE) and np.all(batch.side[trade] != SIDE_NONE)
        assert all(type(t) is str for t in batch.trade_id[trade]) and all(t is None for t in batch.trade_id[quote])
        assert len(set(batch.ts_ingest.tolist())) == 1 and batch.ts_ingest[0] > 1_600_000_000 * S  # wall clock
    records = flatten(batches[:4])
    assert all(columnar_payload(t) for t in records)
    RawTick.model_validate(records[0].model_dump())


def test_batches_when_unpaced_then_watermark_is_last_event_time_plus_one():
    batches = list(SyntheticFeed(SMALL).batches(0, max_rows=333))
    for batch, later in itertools.pairwise(batches):
        assert batch.watermark == int(batch.ts_event[-1]) + 1
        assert later.ts_event[0] >= batch.watermark
    assert batches[-1].watermark == int(batches[-1].ts_event[-1]) + 1


def test_batches_when_negative_start_or_no_rows_allowed_then_rejected():
    with pytest.raises(ValueError, match="start_seq"):
        next(SyntheticFeed(SMALL).batches(-1))
    with pytest.raises(ValueError, match="max_rows"):
        next(SyntheticFeed(SMALL).batches(0, max_rows=0))


# --- paced --------------------------------------------------------------------------------------


def paced_run(config: SyntheticConfig, speed: float, fake_clock, max_rows: int = 2_000, stall=None):
    """The batches and the fake wall clock at each handover; ``stall(i)`` seconds after batch i."""
    feed = SyntheticFeed(config, speed, pacer_factory=lambda s: Pacer(s, clock=fake_clock.clock, sleep=fake_clock.sleep))
    out = []
    for i, batch in enumerate(feed.batches(0, max_rows=max_rows)):
        out.append((fake_clock.now_ns, batch))
        if stall is not None:
            fake_clock.advance(stall(i))
    return out


def check_watermarks(run) -> None:
    """Never decreasing; below every later tick's event time."""
    marks = [b.watermark for _, b in run]
    assert marks == sorted(marks)
    later_min = np.minimum.accumulate(np.concatenate([b.ts_event for _, b in run] + [[np.iinfo(np.int64).max]])[::-1])[::-1]
    row = 0
    for _, batch in run:
        row += len(batch)
        assert batch.watermark <= later_min[row]


@pytest.mark.parametrize("speed", [1.0, 2.0])
def test_batches_when_paced_then_each_holds_what_is_due_and_watermark_is_the_reached_time(fake_clock, speed):
    config = SyntheticConfig(ticks_per_second=100, u_shape=0.0, max_ticks=2_500)  # 25 s: a block boundary
    wall0 = fake_clock.now_ns
    run = paced_run(config, speed, fake_clock)
    batches = [b for _, b in run]
    assert [shape(t) for t in flatten(batches)] == [shape(t) for t in SyntheticFeed(config).ticks()]
    ts0 = int(batches[0].ts_event[0])
    reached = [ts0 + round((wall - wall0) * speed) for wall, _ in run]
    block_ends = {seq - 1 for seq in block_starts(config, 3)}
    heartbeats = 0
    for (wall, batch), now_reached, (next_wall, next_batch) in zip(run, reached, run[1:] + [(None, None)]):
        if len(batch) == 0:
            heartbeats += 1
            assert batch.watermark == now_reached + 1
        else:
            assert batch.ts_event[-1] <= now_reached  # due when handed over
        if next_batch is None:
            continue
        assert next_wall - wall <= HEARTBEAT_NS  # rows or a heartbeat at least every 10 ms
        ends_block = len(batch) and int(batch.seq[-1]) in block_ends
        if not ends_block:
            assert next_wall - wall >= HANDOVER_NS  # bursts of a millisecond at most every millisecond
            if len(next_batch):
                assert next_batch.ts_event[0] > now_reached  # nothing due was left behind
                assert batch.watermark == now_reached + 1
    assert heartbeats > 10  # 100 ticks/s: wall gaps over 10 ms are common at 1x and 2x
    check_watermarks(run)
    event_span = int(batches[-1].ts_event[-1]) - ts0
    assert run[-1][0] - wall0 == pytest.approx(event_span / speed, abs=HANDOVER_NS)


def test_batches_when_paced_through_the_overnight_gap_then_heartbeats_advance_the_watermark(fake_clock):
    config = SyntheticConfig(session_seconds=32, ticks_per_second=20, max_ticks=1_000)  # two sessions
    run = paced_run(config, 10_000.0, fake_clock)
    sizes = np.array([len(b) for _, b in run])
    ts_all = np.concatenate([b.ts_event for _, b in run])
    gap_start = int(np.argmax(np.diff(ts_all)))
    assert ts_all[gap_start + 1] - ts_all[gap_start] > 17 * 3600 * S
    quiet = [b.watermark for _, b in run if len(b) == 0 and ts_all[gap_start] < b.watermark <= ts_all[gap_start + 1]]
    assert len(quiet) > 500  # ~6 s of wall time at 10,000x: a heartbeat every 10 ms
    assert np.all(np.diff(quiet) == HEARTBEAT_NS * 10_000)  # each advances 10 ms of wall time x speed
    assert sizes.sum() == 1_000
    check_watermarks(run)


def test_batches_when_consumer_fell_behind_then_backlog_in_full_batches_at_once(fake_clock):
    config = SyntheticConfig(ticks_per_second=200, max_ticks=1_000)
    run = paced_run(config, 1.0, fake_clock, max_rows=50, stall=lambda i: 3.0 if i == 0 else 0.0)
    batches = [b for _, b in run]
    assert [shape(t) for t in flatten(batches)] == [shape(t) for t in SyntheticFeed(config).ticks()]
    backlog = run[1:12]  # ~600 ticks due after the 3 s stall: twelve full batches, no sleep between
    assert [len(b) for _, b in backlog] == [50] * 11
    assert len({wall for wall, _ in backlog}) == 1
    for (_, batch), (_, after) in itertools.pairwise(backlog):  # capped: up to the next row, which is due too
        assert batch.watermark == int(after.ts_event[0])
    check_watermarks(run)
