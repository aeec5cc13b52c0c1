"""Specs for BarBuilder.on_batch: a TickBatch folds into exactly what its rows give one at a time."""

from __future__ import annotations

import pickle
from dataclasses import replace

from unittest.mock import patch

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from market.bars import BarBuilder, BarConfig, OpenBar
from market import bars_columns
from market.bars_columns import ordered_sums
from schemas import Aggressor, Bar, DeadLetter, Quote, Trade
from schemas.columns import END_OF_TAPE_WATERMARK, TickBatch

S = 1_000_000_000
MS = 1_000_000
T0 = 1_700_000_040 * S  # a whole minute
INGEST0 = 1_800_000_000 * S
SYMBOLS = ("AAPL", "MSFT", "SPY")



@pytest.fixture(autouse=True, scope="module", params=[0, 10_000], ids=["vectorized", "row-by-row"])
def fold_path(request):
    """Every spec here holds on both of on_batch's paths: the vectorized fold (no batch is small)
    and the row-by-row fold of a small batch (every batch here is small)."""
    with patch.object(bars_columns, "SMALL_BATCH_ROWS", request.param):
        yield request.param


CONFIGS = (
    BarConfig(),
    BarConfig(intervals=("1m", "1s")),
    BarConfig(lateness_ns=0),
    BarConfig(intervals=("1s",), lateness_ns=0),
    BarConfig(lateness_ns=2 * S),
)


def make_trade(i: int, ts: int, symbol: str = "AAPL", price: float = 100.0, size: float = 1.0,
               aggressor: Aggressor = Aggressor.BUY, ingest: int | None = None) -> Trade:
    ingest = INGEST0 + i if ingest is None else ingest
    return Trade(id=f"synth:{symbol}:t:{i}", ts_event=ts, ts_ingest=ingest + 7, symbol=symbol, price=price,
                 size=size, aggressor=aggressor, trade_id=str(i), source="synth", ts_tick_ingest=ingest)


def make_quote(i: int, ts: int, symbol: str = "AAPL", ingest: int | None = None) -> Quote:
    ingest = INGEST0 + i if ingest is None else ingest
    return Quote(id=f"synth:{symbol}:q:{i}", ts_event=ts, ts_ingest=ingest + 7, symbol=symbol, bid_price=99.5,
                 bid_size=100.0, ask_price=100.5, ask_size=200.0, source="synth", ts_tick_ingest=ingest)


def per_tick(builder: BarBuilder, records) -> list[Bar | DeadLetter]:
    out: list[Bar | DeadLetter] = []
    for r in records:
        out += builder.on_trade(r) if type(r) is Trade else builder.advance(r.symbol, r.ts_event, r.ts_tick_ingest)
    return out


def comparable(record: Bar | DeadLetter) -> dict:
    # through JSON: a NumPy scalar leaking into a record fails here instead of comparing equal
    fields = orjson.loads(record.to_json())
    if type(record) is Bar:
        del fields["ts_ingest"]  # the bar's wall clock: the only field allowed to differ
    return fields


def per_symbol(records) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for r in records:
        out.setdefault(r.symbol, []).append(comparable(r))
    return out


def state(builder: BarBuilder):
    """Everything the builder carries to the next call, with each value's type."""
    def typed(value):
        return type(value).__name__, value

    books = {
        symbol: (
            typed(book.watermark), [typed(c) for c in book.closed_until], typed(book.max_closed_until),
            typed(book.next_close),
            [{start: tuple(typed(getattr(bar, f)) for f in OpenBar.__slots__) for start, bar in bars.items()}
             for bars in book.open_bars],
        )
        for symbol, book in builder._symbols.items()
    }
    return builder.stats(), books


def assert_flush_order(records, config: BarConfig) -> None:
    position = {name: i for i, name in enumerate(config.intervals)}
    keys = [(r.bar_end, r.symbol, position[r.interval]) for r in records if type(r) is Bar]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)


# -- tapes -------------------------------------------------------------------------------------

_steps = st.sampled_from([0, 0, 0, 1, MS, 50 * MS, 300 * MS, 499 * MS, 999 * MS, S, 2 * S + 7, 61 * S])
# how far behind the clock a tick's event time is: in order, within lateness, at it, beyond it
_behind = st.sampled_from([0, 0, 0, 0, 0, 1, 200 * MS, 499 * MS, 500 * MS, 501 * MS, 1_999 * MS, 3 * S])
_prices = st.sampled_from([99.99, 100.0, 100.01, 100.3, 101.7])
_sizes = st.sampled_from([0.1, 0.2, 0.3, 1.0, 1e-3, 7.77, 3.3, 1e6])  # sums that depend on order


@st.composite
def tapes(draw, in_order: bool = False) -> list[Trade | Quote]:
    clock = T0 + draw(st.integers(0, 2 * S))
    tape: list[Trade | Quote] = []
    for i in range(draw(st.integers(0, 70))):
        clock += draw(_steps)
        ts = clock if in_order else max(clock - draw(_behind), 0)
        symbol = draw(st.sampled_from(SYMBOLS))
        if draw(st.integers(0, 9)) < 7:
            tape.append(make_trade(i, ts, symbol, draw(_prices), draw(_sizes), draw(st.sampled_from(list(Aggressor)))))
        else:
            tape.append(make_quote(i, ts, symbol))
    return tape


def cut(tape: list, points: list[int]) -> list[list]:
    """The tape in pieces at ``points`` (repeated points give empty pieces)."""
    bounds = [0, *sorted(min(p, len(tape)) for p in points), len(tape)]
    return [tape[a:b] for a, b in zip(bounds, bounds[1:])]


@settings(max_examples=400, deadline=None)
@given(tape=tapes(), points=st.lists(st.integers(0, 70), max_size=8), flushes=st.sets(st.integers(0, 8), max_size=2),
       config=st.sampled_from(CONFIGS))
def test_on_batch_when_any_tape_cut_anywhere_then_same_records_and_state_as_per_tick(tape, points, flushes, config):
    reference, batched = BarBuilder(config), BarBuilder(config)
    for number, piece in enumerate(cut(tape, points)):
        expected = per_tick(reference, piece)
        got = batched.on_batch(TickBatch.from_records(piece))
        assert per_symbol(got) == per_symbol(expected)
        assert_flush_order(got, config)
        assert state(batched) == state(reference)
        if number in flushes:  # a flush mid-stream: later trades in its bars are late
            assert [comparable(b) for b in batched.flush()] == [comparable(b) for b in reference.flush()]
    assert [comparable(b) for b in batched.flush()] == [comparable(b) for b in reference.flush()]
    assert state(batched) == state(reference)


@settings(max_examples=200, deadline=None)
@given(tape=tapes(), points=st.lists(st.integers(0, 70), max_size=4), config=st.sampled_from(CONFIGS))
def test_end_of_tape_heartbeat_when_any_tape_then_closes_exactly_what_flush_closes(tape, points, config):
    """The embedded run's last handover (``flows.source``): every open bar closes on it, in flush
    order, and the end of input then finds nothing left."""
    marked, flushed = BarBuilder(config), BarBuilder(config)
    for piece in cut(tape, points):
        marked.on_batch(TickBatch.from_records(piece))
        flushed.on_batch(TickBatch.from_records(piece))
    closed = marked.on_batch(replace(TickBatch.empty(), watermark=END_OF_TAPE_WATERMARK))
    assert [comparable(b) for b in closed] == [comparable(b) for b in flushed.flush()]
    assert marked.flush() == [] and marked.stats()["open_bars"] == 0


@st.composite
def watermarked_batches(draw) -> tuple[list[Trade | Quote], list[TickBatch]]:
    """An event-time ordered tape in batches, each with a watermark no later tick is below (or none)."""
    tape = draw(tapes(in_order=True))
    pieces = cut(tape, draw(st.lists(st.integers(0, 70), max_size=10)))
    batches = []
    for number, piece in enumerate(pieces):
        later = [r.ts_event for p in pieces[number + 1:] for r in p]
        bound = min(later) if later else (piece[-1].ts_event if piece else T0) + 70 * S
        watermark = draw(st.sampled_from([None, bound, bound - 1, bound - 700 * MS, bound - 61 * S]))
        batches.append(replace(TickBatch.from_records(piece), watermark=watermark))
    return tape, batches


@settings(max_examples=400, deadline=None)
@given(tape_and_batches=watermarked_batches(), config=st.sampled_from(CONFIGS))
def test_on_batch_when_feed_watermark_then_same_bars_no_later_than_the_watermark_passes_their_end(
        tape_and_batches, config):
    tape, batches = tape_and_batches
    reference = BarBuilder(config)
    expected = per_tick(reference, tape) + reference.flush()
    batched = BarBuilder(config)
    emitted: list[tuple[int, Bar]] = []
    for number, batch in enumerate(batches):
        out = batched.on_batch(batch)
        assert all(type(r) is Bar for r in out)  # a valid watermark makes no trade late
        assert_flush_order(out, config)
        emitted += [(number, bar) for bar in out]
    emitted += [(len(batches), bar) for bar in batched.flush()]

    def contents(bars):
        by_symbol: dict[str, list] = {}
        for bar in bars:
            by_symbol.setdefault(bar.symbol, []).append(bar.content())  # content(): ts_tick_ingest differs
        return by_symbol

    assert contents(bar for _, bar in emitted) == contents(expected)
    for number, bar in emitted:
        passed = [i for i, b in enumerate(batches) if b.watermark is not None and b.watermark >= bar.bar_end]
        assert not passed or number <= passed[0], (bar.id, number, passed)
    assert batched.stats()["bars_emitted"] == reference.stats()["bars_emitted"]


@settings(max_examples=200, deadline=None)
@given(lengths=st.lists(st.one_of(st.integers(1, 4), st.integers(60, 300)), min_size=1, max_size=12),
       seed=st.integers(0, 2**32 - 1))
def test_ordered_sums_when_segments_of_any_lengths_then_each_is_added_left_to_right(lengths, seed):
    rng = np.random.default_rng(seed)
    values = rng.choice([0.1, 0.2, 0.3, 1.0, 1e-3, 7.77, 3.3, 1e6, 1e16], size=(2, sum(lengths)))
    init = rng.choice([0.0, 0.3, 1e16], size=(2, len(lengths)))
    starts = np.cumsum(lengths) - lengths
    expected = init.tolist()
    for column in range(2):
        for g, (start, length) in enumerate(zip(starts, lengths)):
            for x in values[column, start:start + length].tolist():
                expected[column][g] += x
    assert ordered_sums(values, starts, np.array(lengths), init).tolist() == expected


# -- examples ----------------------------------------------------------------------------------


def test_bar_sums_when_order_changes_the_float_result_then_batch_adds_in_arrival_order():
    sizes = [1e16] + [1.0] * 20  # in order: 1e16 + 1.0 rounds back to 1e16 every time
    tape = [make_trade(i, T0 + i * MS, size=size) for i, size in enumerate(sizes)]
    reference, batched = BarBuilder(), BarBuilder()
    per_tick(reference, tape)
    batched.on_batch(TickBatch.from_records(tape))
    (expected, _), (got, _) = reference.flush(), batched.flush()
    assert got.volume == expected.volume == 1e16
    assert np.add.reduce(np.array(sizes)) != 1e16  # why the batch path cannot use reduce/reduceat


def test_batch_when_bar_closes_inside_it_then_bar_carries_the_closing_ticks_ingest():
    batch = TickBatch.from_records([
        make_trade(0, T0 + 100 * MS, ingest=INGEST0 + 10),
        make_quote(1, T0 + 1_499 * MS, ingest=INGEST0 + 20),
        make_quote(2, T0 + 1_500 * MS, ingest=INGEST0 + 30),  # watermark reaches end + lateness here
        make_trade(3, T0 + 1_600 * MS, ingest=INGEST0 + 40),
    ])
    (bar,) = BarBuilder().on_batch(batch)
    assert (bar.bar_end, bar.ts_tick_ingest) == (T0 + S, INGEST0 + 30)


def test_feed_watermark_when_bar_end_reached_then_bar_closes_with_the_batchs_newest_ingest():
    builder = BarBuilder()
    rows = [make_trade(0, T0 + 100 * MS, ingest=INGEST0 + 10), make_trade(1, T0 + 900 * MS, ingest=INGEST0 + 20),
            make_quote(2, T0 + S, symbol="MSFT", ingest=INGEST0 + 35), make_quote(3, T0 + S, ingest=INGEST0 + 30)]
    (bar,) = builder.on_batch(replace(TickBatch.from_records(rows), watermark=T0 + S))
    assert (bar.interval, bar.bar_end, bar.trade_count) == ("1s", T0 + S, 2)
    assert bar.ts_tick_ingest == INGEST0 + 35  # the newest tick of the batch, whichever symbol
    assert builder.watermark("AAPL") == T0 + S  # the feed watermark does not move a symbol's
    (dead,) = builder.on_trade(make_trade(4, T0 + 950 * MS))  # the feed broke its promise
    assert type(dead) is DeadLetter and dead.reason == "late" and "already emitted" in dead.detail


def test_feed_watermark_when_heartbeat_batch_then_bar_keeps_its_last_trades_ingest():
    builder = BarBuilder()
    builder.on_batch(TickBatch.from_records([make_trade(0, T0 + 100 * MS, ingest=INGEST0 + 10),
                                             make_trade(1, T0 + 61 * S, symbol="MSFT")]))
    heartbeat = replace(TickBatch.empty(), watermark=T0 + 60 * S)
    bars = builder.on_batch(heartbeat)
    assert [(b.interval, b.bar_end, b.ts_tick_ingest) for b in bars] == [
        ("1s", T0 + S, INGEST0 + 10), ("1m", T0 + 60 * S, INGEST0 + 10)]
    assert builder.stats()["open_bars"] == 2  # MSFT's, past the watermark


def test_batch_output_when_symbols_mix_then_sorted_by_end_and_a_dead_letter_follows_its_symbols_bar():
    builder = BarBuilder(BarConfig(intervals=("1s",)))
    builder.on_batch(TickBatch.from_records([make_trade(0, T0 + 100 * MS, "MSFT"), make_trade(1, T0 + 200 * MS)]))
    out = builder.on_batch(TickBatch.from_records([
        make_trade(2, T0 + 2_600 * MS, "MSFT"),  # closes MSFT [0, 1)
        make_trade(3, T0 + 3_000 * MS, "MSFT"),
        make_trade(4, T0 + 900 * MS, "MSFT"),  # late
        make_trade(5, T0 + 3_600 * MS, "MSFT"),  # closes MSFT [2, 3)
        make_trade(6, T0 + 2_500 * MS),  # closes AAPL [0, 1)
    ]))
    assert [(type(r).__name__, r.symbol, r.ts_event - T0) for r in out] == [
        ("Bar", "AAPL", S), ("Bar", "MSFT", S), ("DeadLetter", "MSFT", 900 * MS), ("Bar", "MSFT", 3 * S)]


def test_batch_when_timestamps_beyond_the_fast_paths_range_then_still_exact():
    far = (1 << 62) + 7 * S
    tape = [make_trade(i, far + i * 700 * MS, symbol=SYMBOLS[i % 2]) for i in range(8)]
    reference, batched = BarBuilder(), BarBuilder()
    assert per_symbol(batched.on_batch(TickBatch.from_records(tape))) == per_symbol(per_tick(reference, tape))
    assert state(batched) == state(reference)


def test_builder_when_pickled_after_batches_then_restored_copy_continues_identically():
    tape = [make_trade(i, T0 + i * 37 * MS, symbol=SYMBOLS[i % 3], size=0.1 * (i % 5 + 1)) for i in range(200)]
    builder = BarBuilder()
    builder.on_batch(TickBatch.from_records(tape[:120]))
    restored = pickle.loads(pickle.dumps(builder))
    rest_a = builder.on_batch(TickBatch.from_records(tape[120:])) + builder.flush()
    rest_b = per_tick(restored, tape[120:]) + restored.flush()
    assert per_symbol(rest_a) == per_symbol(rest_b) and len(rest_a) > 10
