"""The trading desk core: event-time order whatever the batching, orders against real positions,
operator control, passive execution at the touch."""

from __future__ import annotations

from itertools import groupby

import pytest

from feeds import make_feed
from market.bars import BarBuilder
from trading.desk import T_APPROVED, T_CONTROL, T_INTENT, T_REJECTED, T_REPORTS, DeskConfig, TradingDesk
from market.features import FeatureState
from market.normalize import NormalizeConfig, NormalizeState
from strategies.signals import CrossSection, SignalState
from schemas import (Bar, ControlKind, DeadLetter, OrderAction, OrderType, Quote, Side, Signal, TapeWatermark, Trade,
                     content_hash)
from strategies.baseline import BaselineStrategy
from strategies.portfolio import PortfolioConfig, PortfolioConstructor
from config.control_channel import make_command

SYMBOLS = tuple(f"SYN{i}" for i in range(8))


def desk_inputs(chunk: int, ticks: int = 24_000) -> list:
    """What the desk receives when the engine hands the tape over ``chunk`` ticks at a time and,
    like Bytewax's keyed operators, groups each chunk's items by key (symbol) at every stage."""
    feed = make_feed("synthetic", seed=9, ticks_per_second=100, max_ticks=ticks)
    normalize = NormalizeState(NormalizeConfig(max_future_ns=10**30))
    bars = BarBuilder(intervals=("1s",), lateness_ns=500_000_000)
    features = FeatureState(interval="1s")
    signals = SignalState(BaselineStrategy(), PortfolioConstructor(), "paper", symbols=SYMBOLS, emit_orders=False)
    tape = list(feed.ticks())
    arrivals: list = []
    for start in range(0, len(tape), chunk):
        raw = sorted(tape[start:start + chunk], key=lambda t: t.symbol)  # stable: tape order within a symbol
        market = [r for tick in raw for r in normalize.on_raw(tick) if type(r) is not DeadLetter]
        bar_out = []
        for _, group in groupby(market, key=lambda r: r.symbol):
            for record in group:
                bar_out.extend(bars.on_trade(record) if type(record) is Trade else bars.advance(record.symbol, record.ts_event))
        vectors = [v for b in sorted((b for b in bar_out if type(b) is Bar), key=lambda b: b.symbol) for v in features.on_bar(b)]
        sections = [s for v in vectors for s in signals.on_features(v) if type(s) is CrossSection]
        arrivals += market + sections
    return arrivals + [s for s in signals.flush() if type(s) is CrossSection]


def run_desk(arrivals: list, desk: TradingDesk | None = None) -> list:
    desk = desk or TradingDesk()
    out = []
    for item in arrivals:
        out.extend(desk.on_item(item))
    return out + desk.flush()


def by_table(out: list, table: str) -> list:
    return [record for t, record in out if t == table]


@pytest.fixture(scope="module")
def one_at_a_time():
    return run_desk(desk_inputs(chunk=1))


def test_desk_when_the_engine_batches_the_tape_differently_then_identical_orders_fills_and_pnl(one_at_a_time):
    assert by_table(one_at_a_time, T_REPORTS), "no fills: the comparison would prove nothing"
    for chunk in (97, 2_000):
        batched = run_desk(desk_inputs(chunk=chunk))
        for table in {t for t, _ in one_at_a_time}:
            assert content_hash(by_table(batched, table)) == content_hash(by_table(one_at_a_time, table)), (chunk, table)


def test_desk_when_orders_sent_then_every_intent_approved_or_rejected_once(one_at_a_time):
    intents = {o.client_order_id for o in by_table(one_at_a_time, T_INTENT)}
    approved = {o.client_order_id for o in by_table(one_at_a_time, T_APPROVED)}
    rejected = {r.order.client_order_id for r in by_table(one_at_a_time, T_REJECTED)}
    assert intents and approved | rejected == intents and not approved & rejected


def test_desk_when_a_cross_section_repeats_its_targets_then_no_new_orders_once_filled():
    arrivals = desk_inputs(chunk=500, ticks=12_000)
    desk = TradingDesk()
    run_desk(arrivals, desk)
    last = next(item for item in reversed(arrivals) if type(item) is CrossSection)
    held = {sym: qty for (_, sym), qty in desk.ledger.positions().items()}
    assert held, "the desk should hold positions after trading"
    again = CrossSection(last.bar_end + 10**9, last.signals, last.ts_tick_ingest)
    repeat = desk.on_cross_section(again) + desk.flush()
    # the same targets at the same marks: only rounding-sized deltas, and none below one share
    for order in by_table(repeat, T_INTENT):
        assert order.quantity <= 2, order


def test_desk_when_kill_switch_on_then_new_orders_rejected_with_kill_switch_reason():
    arrivals = desk_inputs(chunk=500, ticks=12_000)
    desk = TradingDesk()
    first_section = next(i for i, item in enumerate(arrivals) if type(item) is CrossSection)
    out = run_desk(arrivals[:first_section], desk)
    out += desk.on_control(make_command(ControlKind.KILL_SWITCH, value=1.0, issued_by="test"))
    out += run_desk(arrivals[first_section:], desk)
    assert by_table(out, T_INTENT) and not by_table(out, T_APPROVED)
    assert all("kill_switch" in r.reasons for r in by_table(out, T_REJECTED))
    assert [c.issued_by for c in by_table(out, T_CONTROL)] == ["test"]


def test_desk_when_given_something_else_then_type_error_naming_it():
    with pytest.raises(TypeError, match="DeadLetter"):
        TradingDesk().on_item(DeadLetter(id="d", ts_event=1, ts_ingest=1, source_topic="x", stage="s", reason="r", payload=""))


def test_desk_when_given_a_bar_then_type_error_because_it_keeps_its_own_bar_clock():
    bar = Bar(id="b", ts_event=2, ts_ingest=1, symbol="X", interval="1s", bar_start=1, bar_end=2, open=1.0, high=1.0,
              low=1.0, close=1.0, volume=1.0, vwap=1.0, trade_count=1, buy_volume=0, sell_volume=0, ts_tick_ingest=1)
    with pytest.raises(TypeError, match="Bar"):
        TradingDesk().on_item(bar)


def test_desk_when_cross_sections_overtake_the_market_data_then_identical_output(one_at_a_time):
    """The split topology: signals and trades come from different topics, so a cross-section can
    arrive before the trades that precede it in event time; the market watermark holds them back."""
    arrivals = desk_inputs(chunk=1)
    overtaken, held = [], []
    for item in arrivals:
        if type(item) is CrossSection:
            overtaken.append(item)
            overtaken.extend(held)
            held = []
        else:
            held.append(item)
    overtaken.extend(held)
    out = run_desk(overtaken)
    for table in {t for t, _ in one_at_a_time}:
        assert content_hash(by_table(out, table)) == content_hash(by_table(one_at_a_time, table)), table


def test_desk_when_a_symbol_traded_in_a_bar_and_holds_a_position_then_snapshot_at_the_bar_end(one_at_a_time):
    from trading.desk import T_POSITIONS

    at_bar_ends = [p for p in by_table(one_at_a_time, T_POSITIONS) if p.ts_event % 1_000_000_000 == 0]
    assert at_bar_ends, "no position snapshot on the bar clock"


def test_desk_when_pickled_mid_run_then_continues_identically():
    import pickle

    arrivals = desk_inputs(chunk=300, ticks=12_000)
    whole = run_desk(arrivals)
    desk = TradingDesk()
    half = len(arrivals) // 2
    out = []
    for item in arrivals[:half]:
        out.extend(desk.on_item(item))
    held = {type(entry[4]) for entry in desk.sequencer.queue}
    assert {Trade, Quote} <= held, "the snapshot must catch market records still queued"
    restored = pickle.loads(pickle.dumps(desk))
    assert restored.sequencer.queue == desk.sequencer.queue
    out += run_desk(arrivals[half:], restored)
    assert content_hash([r for _, r in out]) == content_hash([r for _, r in whole])


def test_desk_when_a_market_event_is_redelivered_then_ignored_and_when_older_than_processed_then_dead_lettered():
    from trading.desk import T_DLQ

    arrivals = desk_inputs(chunk=500, ticks=12_000)
    desk = TradingDesk()
    trades = [item for item in arrivals if type(item) is Trade]
    out = run_desk(arrivals, desk)
    redelivered = desk.on_market(trades[-1])
    assert redelivered == [] and desk.counts["duplicates"] == 1
    old = trades[0].model_copy(update={"id": trades[0].id + ":other"})
    (late,) = desk.on_market(old)
    assert late[0] == T_DLQ and late[1].reason == "late" and late[1].source_topic == "md.trades"
    assert by_table(out, T_REPORTS)


def test_desk_with_a_universe_when_batched_differently_then_identical_and_the_warmup_is_not_held():
    arrivals = {chunk: desk_inputs(chunk=chunk) for chunk in (1, 2_000)}
    outputs = {}
    for chunk, items in arrivals.items():
        desk = TradingDesk(DeskConfig(universe=SYMBOLS))
        first_section = next(i for i, item in enumerate(items) if type(item) is CrossSection)
        out = []
        for item in items[:first_section]:
            out.extend(desk.on_item(item))
        # before any cross-section the desk has processed the tape up to the features' warm-up:
        # exactly up to the first cross-section's bar, so its orders do not wait for a bar of tape
        assert desk.sequencer.earliest_section() == items[first_section].bar_end
        assert len(desk.sequencer.queue) < first_section / 4, (chunk, len(desk.sequencer.queue), first_section)
        out += run_desk(items[first_section:], desk)
        assert desk.counts["late"] == 0
        outputs[chunk] = out
    for table in {t for t, _ in outputs[1]}:
        assert content_hash(by_table(outputs[2_000], table)) == content_hash(by_table(outputs[1], table)), table


# ---------------------------------------------------------------------------------- passive execution

T0 = 1_704_205_800_000_000_000  # 2024-01-02T14:30:00Z
MS = 1_000_000


def quote(ms: int, bid: float, ask: float) -> Quote:
    return Quote(id=f"q{ms}", ts_event=T0 + ms * MS, ts_ingest=0, symbol="SYN0", bid_price=bid, bid_size=500.0,
                 ask_price=ask, ask_size=500.0, source="test", ts_tick_ingest=0)


def trade(ms: int, price: float, size: float) -> Trade:
    return Trade(id=f"t{ms}", ts_event=T0 + ms * MS, ts_ingest=0, symbol="SYN0", price=price, size=size,
                 trade_id=f"t{ms}", source="test", ts_tick_ingest=0)


def section(ms: int, weight: float) -> CrossSection:
    bar_end = T0 + ms * MS
    signal = Signal(id=f"s{ms}", ts_event=bar_end, ts_ingest=0, account="paper", strategy="lgbm",
                    strategy_version="1", symbol="SYN0", bar_end=bar_end, score=2.0, target_weight=weight,
                    ts_tick_ingest=0)
    return CrossSection(bar_end, (signal,), 0)


def passive_desk() -> TradingDesk:
    portfolio = PortfolioConfig(capital=1_000_000.0, max_weight_per_name=0.04, execution="passive")
    return TradingDesk(DeskConfig(portfolio=portfolio))


def test_passive_desk_when_a_sell_prints_at_the_bid_then_the_resting_buy_fills_at_the_bid_with_no_spread_or_impact():
    desk = passive_desk()
    out = run_desk([quote(100, 99.99, 100.01), trade(200, 100.0, 50.0), section(1_000, 0.04),
                    trade(1_010, 99.99, 100.0),  # before the order is live (50 ms latency): not ours
                    trade(1_100, 100.01, 300.0),  # a buy at the ask does not reach a resting buy
                    trade(1_200, 99.99, 100.0), trade(1_300, 99.99, 300.0)], desk)
    (order,) = by_table(out, T_INTENT)
    assert (order.order_type, order.side, order.quantity, order.limit_price) == (OrderType.LIMIT, Side.BUY, 400.0, 99.99)
    fills = [r for r in by_table(out, T_REPORTS) if r.is_fill]
    assert [(f.last_qty, f.last_price) for f in fills] == [(100.0, 99.99), (300.0, 99.99)]
    assert desk.ledger.position("SYN0") == 400.0


def test_passive_desk_when_the_bid_moves_away_then_the_next_bar_cancels_and_requotes_the_rest():
    desk = passive_desk()
    out = run_desk([quote(100, 99.99, 100.01), trade(200, 100.0, 50.0), section(1_000, 0.04),
                    trade(1_200, 99.99, 100.0),  # fills 100 of 400
                    quote(1_500, 100.04, 100.06), trade(1_600, 100.05, 10.0),
                    section(2_000, 0.04), trade(2_100, 100.04, 50.0)], desk)
    intents = by_table(out, T_INTENT)
    assert [(o.action, o.order_type, o.quantity, o.limit_price) for o in intents] == [
        (OrderAction.NEW, OrderType.LIMIT, 400.0, 99.99),
        (OrderAction.CANCEL, OrderType.LIMIT, 300.0, 99.99),
        (OrderAction.NEW, OrderType.LIMIT, 299.0, 100.04),  # 4 % of capital at the new mark 100.05: 399 shares
    ]
    assert intents[1].client_order_id == intents[0].client_order_id
    fills = [r for r in by_table(out, T_REPORTS) if r.is_fill]
    assert [(f.last_qty, f.last_price) for f in fills] == [(100.0, 99.99), (50.0, 100.04)]


def test_passive_desk_when_the_target_is_unchanged_and_the_order_rests_at_the_touch_then_no_new_message():
    desk = passive_desk()
    out = run_desk([quote(100, 99.99, 100.01), trade(200, 100.0, 50.0), section(1_000, 0.04),
                    trade(1_500, 100.0, 10.0), section(2_000, 0.04), trade(2_500, 100.0, 10.0)], desk)
    assert len(by_table(out, T_INTENT)) == 1


def test_desk_when_the_market_passes_the_next_bar_end_before_its_cross_section_then_that_tape_is_not_held():
    desk = TradingDesk()
    out = desk.on_item(quote(0, 99.99, 100.01)) + desk.on_item(trade(0, 100.0, 100))
    out += desk.on_item(section(1_000, 0.04))
    for ms in range(1_010, 3_000, 10):
        out += desk.on_item(quote(ms, 99.99, 100.01)) + desk.on_item(trade(ms, 100.0, 100))
    # no cross-section can come before the next bar end (2 s): the tape below it is processed,
    # so the 1 s order has filled, and only the tape from 2 s on waits
    assert [r for r in by_table(out, T_REPORTS) if r.is_fill]
    assert min(entry[0] for entry in desk.sequencer.queue) >= T0 + 2_000 * MS
    # the market is already past 2 s: the next cross-section's orders go out on its arrival
    assert by_table(desk.on_item(section(2_000, -0.04)), T_INTENT)


def test_desk_when_a_cross_section_is_off_its_bar_clock_then_error_naming_the_interval():
    desk = TradingDesk()
    desk.on_item(section(1_000, 0.04))
    with pytest.raises(ValueError, match="bar clock .1s."):
        desk.on_item(section(1_500, 0.04))


def test_desk_when_a_symbols_quotes_lag_its_trades_then_only_a_quote_tape_watermark_releases_the_cross_section():
    """Split topology: md.trades and md.quotes are read apart, so a cross-section waits until both
    of a symbol's streams are past it; normalize's tape watermark vouches for the lagging one."""
    desk = TradingDesk()
    out = desk.on_item(quote(0, 99.99, 100.01)) + desk.on_item(trade(0, 100.0, 100))
    out += desk.on_item(section(1_000, 0.04))
    for ms in range(1_010, 1_700, 10):
        out += desk.on_item(trade(ms, 100.0, 100))
    assert not by_table(out, T_INTENT), "a quote older than 1 s may still come on md.quotes"
    assert not by_table(desk.on_item(TapeWatermark("SYN0", T0 + 1_100 * MS, "trade")), T_INTENT)
    assert not by_table(desk.on_item(TapeWatermark("SYN0", T0 + 1_000 * MS, "quote")), T_INTENT), (
        "a bound at the bar's end itself: a quote at exactly 1 s may still come")
    (order,) = by_table(desk.on_item(TapeWatermark("SYN0", T0 + 1_001 * MS, "quote")), T_INTENT)
    assert order.symbol == "SYN0"
    # the watermark stands for the quote stream's events: a quote older than it is late, as a real one would be
    late = desk.on_item(quote(900, 99.99, 100.01))
    assert [r.reason for r in by_table(late, "dlq")] == ["late"]
