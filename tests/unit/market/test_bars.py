"""Specs for market.bars: event-time OHLCV bars, lateness, ordering, reproducibility."""

from __future__ import annotations

import math
import pickle
import random

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from market.bars import BarBuilder, BarConfig
from schemas import Aggressor, Bar, DeadLetter, Trade, content_hash
from schemas.columns import TickBatch

S = 1_000_000_000
MS = 1_000_000
T0 = 1_700_000_040 * S  # a whole minute (1_700_000_040 = 28_333_334 * 60)
assert T0 % (60 * S) == 0

_ids = iter(range(10**9))


def trade(ts: int, price: float = 100.0, size: float = 1.0, aggressor: Aggressor = Aggressor.BUY,
          symbol: str = "AAPL", ingest: int | None = None) -> Trade:
    trade_id = str(next(_ids))
    return Trade(
        id=f"synth:{symbol}:t:{trade_id}", ts_event=ts, ts_ingest=ts + 5 * MS if ingest is None else ingest,
        symbol=symbol, price=price, size=size, aggressor=aggressor, trade_id=trade_id, source="synth",
        ts_tick_ingest=ts + 5 * MS if ingest is None else ingest,
    )


def feed(builder: BarBuilder, trades: list[Trade]) -> list[Bar | DeadLetter]:
    return [out for t in trades for out in builder.on_trade(t)]


def bars_of(records, interval: str | None = None) -> list[Bar]:
    return [r for r in records if isinstance(r, Bar) and (interval is None or r.interval == interval)]


# -- arithmetic --------------------------------------------------------------------------------


def test_bar_when_trades_cross_boundary_then_closed_bar_has_exact_ohlcv_vwap_and_side_volumes():
    builder = BarBuilder()
    first_bar = [
        trade(T0 + 100 * MS, 100.0, 2.0, Aggressor.BUY),
        trade(T0 + 400 * MS, 101.5, 1.0, Aggressor.SELL),
        trade(T0 + 700 * MS, 99.0, 3.0, Aggressor.UNKNOWN),
        trade(T0 + 900 * MS, 100.5, 4.0, Aggressor.BUY),
    ]
    assert feed(builder, first_bar) == []
    # next bar's trade at +1.2 s: watermark below end + lateness (1.5 s), bar [0, 1) stays open
    assert builder.on_trade(trade(T0 + 1_200 * MS, 100.0)) == []
    closer = trade(T0 + 1_500 * MS, 100.2, ingest=T0 + 1_555 * MS)
    (bar,) = builder.on_trade(closer)

    assert bar.interval == "1s" and bar.symbol == "AAPL"
    assert (bar.bar_start, bar.bar_end, bar.ts_event) == (T0, T0 + S, T0 + S)
    assert bar.id == f"AAPL:1s:{T0}"
    assert (bar.open, bar.high, bar.low, bar.close) == (100.0, 101.5, 99.0, 100.5)
    assert bar.volume == 10.0 and bar.trade_count == 4
    assert bar.buy_volume == 6.0 and bar.sell_volume == 1.0  # the unknown 3.0 counts in neither
    assert bar.vwap == (100.0 * 2 + 101.5 * 1 + 99.0 * 3 + 100.5 * 4) / 10.0
    assert bar.ts_tick_ingest == T0 + 1_555 * MS  # the tick whose arrival closed it
    assert bar.schema_version == 1
    assert Bar.model_validate(bar.model_dump()) == bar


def test_bar_when_watermark_just_below_end_plus_lateness_then_still_open():
    builder = BarBuilder()
    builder.on_trade(trade(T0 + 100 * MS))
    assert builder.on_trade(trade(T0 + 1_500 * MS - 1)) == []
    assert len(builder.on_trade(trade(T0 + 1_500 * MS))) == 1


def test_bar_when_interval_has_no_trades_then_no_bar_emitted():
    builder = BarBuilder(BarConfig(intervals=("1s",)))
    out = feed(builder, [trade(T0 + 500 * MS), trade(T0 + 3_500 * MS), trade(T0 + 5_000 * MS)])
    assert [b.bar_start for b in bars_of(out)] == [T0, T0 + 3 * S]


def test_bar_when_trade_out_of_order_within_lateness_then_lands_in_still_open_bar():
    builder = BarBuilder()
    feed(builder, [trade(T0 + 500 * MS, 100.0, 1.0), trade(T0 + 1_200 * MS, 101.0, 1.0)])
    # watermark 1.2 s; 0.9 s is 300 ms behind: within lateness, its bar [0, 1) is still open
    assert builder.on_trade(trade(T0 + 900 * MS, 102.0, 2.0)) == []
    # and an even earlier print becomes the bar's open (open/close follow event time)
    assert builder.on_trade(trade(T0 + 800 * MS, 99.0, 1.0)) == []
    (bar,) = builder.advance("AAPL", T0 + 1_500 * MS)
    assert bar.bar_start == T0
    assert (bar.open, bar.high, bar.low, bar.close) == (100.0, 102.0, 99.0, 102.0)
    assert bar.trade_count == 3 and bar.volume == 4.0


def test_bar_open_close_when_out_of_order_then_follow_event_time():
    builder = BarBuilder()
    feed(builder, [trade(T0 + 500 * MS, 100.0), trade(T0 + 300 * MS, 99.0), trade(T0 + 400 * MS, 98.0)])
    (bar,) = builder.advance("AAPL", T0 + 1_500 * MS)
    assert (bar.open, bar.close, bar.low, bar.high) == (99.0, 100.0, 98.0, 100.0)


def test_trade_when_behind_watermark_minus_lateness_then_dead_lettered_as_late():
    builder = BarBuilder()
    feed(builder, [trade(T0 + 100 * MS), trade(T0 + 1_300 * MS)])
    late = trade(T0 + 799 * MS)
    (dead,) = builder.on_trade(late)
    assert isinstance(dead, DeadLetter)
    assert (dead.reason, dead.stage, dead.source_topic, dead.symbol) == ("late", "bars", "md.trades", "AAPL")
    assert dead.id == f"dlq:bars:{late.id}" and dead.ts_event == late.ts_event
    assert Trade.from_json(dead.payload) == late
    assert str(late.ts_event) in dead.detail
    (bar,) = builder.advance("AAPL", T0 + 1_500 * MS)
    assert bar.trade_count == 1  # the late trade was not merged
    assert builder.stats()["late"] == 1


def test_trade_when_its_bar_was_already_flushed_then_dead_lettered_as_late():
    builder = BarBuilder()
    builder.on_trade(trade(T0 + 900 * MS))
    assert len(builder.flush()) == 2
    (dead,) = builder.on_trade(trade(T0 + 950 * MS))
    assert isinstance(dead, DeadLetter) and dead.reason == "late" and "already emitted" in dead.detail
    assert builder.on_trade(trade(T0 + 60 * S)) == []  # the next minute is a fresh bar


def test_lateness_when_configured_then_bars_close_and_trades_are_late_accordingly():
    builder = BarBuilder(BarConfig(intervals=("1s",), lateness_ns=0))
    builder.on_trade(trade(T0 + 900 * MS))
    (bar,) = builder.on_trade(trade(T0 + S))
    assert bar.bar_end == T0 + S
    (dead,) = builder.on_trade(trade(T0 + S - 1))
    assert dead.reason == "late"


# -- watermark via advance ---------------------------------------------------------------------


def test_advance_when_quotes_move_watermark_then_bars_close_without_trades():
    builder = BarBuilder()
    builder.on_trade(trade(T0 + 200 * MS, ingest=T0 + 210 * MS))
    assert builder.advance("AAPL", T0 + 1_400 * MS) == []
    (bar,) = builder.advance("AAPL", T0 + 1_600 * MS, ts_tick_ingest=T0 + 1_650 * MS)
    assert bar.interval == "1s" and bar.ts_tick_ingest == T0 + 1_650 * MS
    assert builder.advance("AAPL", T0 + 1_000 * MS) == []  # backwards: no-op
    assert builder.watermark("AAPL") == T0 + 1_600 * MS
    (minute,) = builder.advance("AAPL", T0 + 61 * S)
    assert minute.interval == "1m" and minute.ts_tick_ingest == T0 + 210 * MS  # no driver: last trade's


def test_advance_when_symbol_unseen_then_sets_watermark_for_later_trades():
    builder = BarBuilder()
    assert builder.advance("MSFT", T0 + 10 * S) == []
    (dead,) = builder.on_trade(trade(T0 + 9 * S, symbol="MSFT"))
    assert dead.reason == "late"


def test_bars_when_symbols_interleave_then_each_symbol_has_its_own_watermark():
    builder = BarBuilder()
    builder.on_trade(trade(T0 + 100 * MS, symbol="AAPL"))
    assert builder.on_trade(trade(T0 + 5 * S, symbol="MSFT")) == []  # MSFT's time does not close AAPL's bar
    assert builder.stats()["open_bars"] == 4


# -- ordering, flush ----------------------------------------------------------------------------


def test_closed_bars_when_several_close_at_once_then_ordered_by_bar_end_then_interval():
    builder = BarBuilder()
    feed(builder, [trade(T0 + 58_100 * MS), trade(T0 + 59_100 * MS), trade(T0 + 59_400 * MS)])
    out = builder.advance("AAPL", T0 + 61 * S)
    assert [(b.bar_end - T0, b.interval) for b in out] == [(59 * S, "1s"), (60 * S, "1s"), (60 * S, "1m")]


def test_flush_when_end_of_stream_then_every_open_bar_closed_in_end_symbol_interval_order():
    builder = BarBuilder()
    feed(builder, [
        trade(T0 + 100 * MS, symbol="MSFT", ingest=T0 + 111),
        trade(T0 + 200 * MS, symbol="AAPL"),
        trade(T0 + 300 * MS, symbol="AAPL", ingest=T0 + 333),
        trade(T0 + 1_100 * MS, symbol="MSFT", ingest=T0 + 1_111),
    ])
    out = builder.flush()
    assert [(b.bar_end - T0, b.symbol, b.interval) for b in out] == [
        (1 * S, "AAPL", "1s"), (1 * S, "MSFT", "1s"), (2 * S, "MSFT", "1s"), (60 * S, "AAPL", "1m"), (60 * S, "MSFT", "1m"),
    ]
    assert out[0].ts_tick_ingest == T0 + 333  # last trade in the bar
    assert out[-1].ts_tick_ingest == T0 + 1_111
    assert builder.flush() == [] and builder.stats()["open_bars"] == 0


# -- consistency, reproducibility ---------------------------------------------------------------


def _random_tape(seed: int, n: int, symbols=("AAPL", "MSFT"), span_ns: int = 150 * S) -> list[Trade]:
    rng = random.Random(seed)
    prices = {s: 100.0 for s in symbols}
    times = sorted(rng.randrange(T0, T0 + span_ns) for _ in range(n))
    tape = []
    for ts in times:
        symbol = rng.choice(symbols)
        prices[symbol] *= math.exp(rng.gauss(0, 0.001))
        tape.append(trade(ts, prices[symbol], rng.choice([0.5, 1.0, 3.0, 100.0, 0.125]) * rng.randint(1, 9),
                          rng.choice(list(Aggressor)), symbol))
    return tape


def test_one_minute_bar_when_compared_to_its_one_second_bars_then_equal_aggregate():
    builder = BarBuilder()
    out = feed(builder, _random_tape(seed=1, n=3_000, symbols=("AAPL",))) + builder.flush()
    minutes = bars_of(out, "1m")
    seconds = bars_of(out, "1s")
    assert len(minutes) == 3
    for minute in minutes:
        parts = [b for b in seconds if minute.bar_start <= b.bar_start < minute.bar_end]
        assert parts == sorted(parts, key=lambda b: b.bar_start)
        assert minute.open == parts[0].open and minute.close == parts[-1].close
        assert minute.high == max(b.high for b in parts) and minute.low == min(b.low for b in parts)
        assert minute.trade_count == sum(b.trade_count for b in parts)
        assert minute.volume == pytest.approx(sum(b.volume for b in parts), rel=1e-12)
        assert minute.buy_volume == pytest.approx(sum(b.buy_volume for b in parts), rel=1e-12)
        assert minute.sell_volume == pytest.approx(sum(b.sell_volume for b in parts), rel=1e-12)
        notional = sum(b.vwap * b.volume for b in parts)
        assert minute.vwap == pytest.approx(notional / minute.volume, rel=1e-12)


def feed_in_batches(builder: BarBuilder, trades: list[Trade], rows: int = 700) -> list[Bar | DeadLetter]:
    return [out for i in range(0, len(trades), rows) for out in builder.on_batch(TickBatch.from_records(trades[i:i + rows]))]


@pytest.mark.parametrize("path", [feed, feed_in_batches], ids=["per_tick", "batches"])
def test_bars_when_compared_to_polars_reference_then_equal_within_1e_9(path):
    tape = _random_tape(seed=2, n=5_000)
    builder = BarBuilder()
    out = path(builder, tape) + builder.flush()
    frame = pl.DataFrame({
        "symbol": [t.symbol for t in tape],
        "ts": [t.ts_event for t in tape],
        "price": [t.price for t in tape],
        "size": [t.size for t in tape],
        "aggressor": [t.aggressor.value for t in tape],
    })
    for interval, nanos in (("1s", S), ("1m", 60 * S)):
        reference = (
            frame.with_columns(bar_start=pl.col("ts") - pl.col("ts") % nanos)
            .group_by("symbol", "bar_start", maintain_order=True)
            .agg(
                open=pl.col("price").first(), high=pl.col("price").max(), low=pl.col("price").min(),
                close=pl.col("price").last(), volume=pl.col("size").sum(),
                notional=(pl.col("price") * pl.col("size")).sum(), trade_count=pl.len(),
                buy_volume=pl.col("size").filter(pl.col("aggressor") == "buy").sum(),
                sell_volume=pl.col("size").filter(pl.col("aggressor") == "sell").sum(),
            )
            .sort("symbol", "bar_start")
        )
        ours = sorted(bars_of(out, interval), key=lambda b: (b.symbol, b.bar_start))
        assert len(ours) == reference.height
        for bar, ref in zip(ours, reference.iter_rows(named=True)):
            assert (bar.symbol, bar.bar_start, bar.trade_count) == (ref["symbol"], ref["bar_start"], ref["trade_count"])
            assert (bar.open, bar.high, bar.low, bar.close) == (ref["open"], ref["high"], ref["low"], ref["close"])
            for field in ("volume", "buy_volume", "sell_volume"):
                assert getattr(bar, field) == pytest.approx(ref[field], rel=1e-9, abs=1e-9)
            assert bar.vwap == pytest.approx(ref["notional"] / ref["volume"], rel=1e-9)


def test_bars_when_same_input_replayed_then_same_bars_by_content():
    tape = _random_tape(seed=3, n=2_000)
    first, second = BarBuilder(), BarBuilder()
    run1 = feed(first, tape) + first.flush()
    run2 = feed(second, tape) + second.flush()
    assert len(run1) > 100
    assert [b.content() for b in run1] == [b.content() for b in run2]
    assert content_hash(run1) == content_hash(run2)


def test_builder_when_pickled_mid_stream_then_restored_copy_continues_identically():
    tape = _random_tape(seed=4, n=1_000)
    builder = BarBuilder()
    feed(builder, tape[:500])
    restored = pickle.loads(pickle.dumps(builder))
    rest_a = feed(builder, tape[500:]) + builder.flush()
    rest_b = feed(restored, tape[500:]) + restored.flush()
    assert content_hash(rest_a) == content_hash(rest_b) and len(rest_a) > 10


def test_builder_when_given_keyword_settings_then_same_as_config():
    builder = BarBuilder(intervals=("1s",), lateness_ns=0)
    assert builder.config == BarConfig(intervals=("1s",), lateness_ns=0)
    assert BarBuilder().config == BarConfig()
    with pytest.raises(ValidationError):
        BarBuilder(intervals=("2h",))
    with pytest.raises(TypeError):
        BarBuilder(BarConfig(), lateness_ns=1)


def test_bar_config_when_interval_unknown_or_repeated_then_refused():
    with pytest.raises(ValidationError):
        BarConfig(intervals=("5m",))
    with pytest.raises(ValidationError):
        BarConfig(intervals=("1s", "1s"))
    with pytest.raises(ValidationError):
        BarConfig(intervals=())


_offsets = st.integers(min_value=0, max_value=5 * S)


@settings(max_examples=150, deadline=None)
@given(offsets=st.lists(_offsets, max_size=60), advance_at=st.lists(_offsets, max_size=5))
def test_bars_when_any_trade_order_then_every_trade_is_in_one_bar_per_interval_or_dead_lettered(offsets, advance_at):
    builder = BarBuilder()
    trades = [trade(T0 + offset, 100.0 + (offset % 7), 1.0 + offset % 3) for offset in offsets]
    out = feed(builder, trades)
    for offset in advance_at:
        out += builder.advance("AAPL", T0 + offset)
    out += builder.flush()
    late = [r for r in out if isinstance(r, DeadLetter)]
    assert all(r.reason == "late" for r in late)
    for interval in ("1s", "1m"):
        bars = bars_of(out, interval)
        assert sum(b.trade_count for b in bars) + len(late) == len(trades)
        assert len({b.id for b in bars}) == len(bars)  # no bar emitted twice
        for bar in bars:
            assert Bar.model_validate(bar.model_dump()) == bar
