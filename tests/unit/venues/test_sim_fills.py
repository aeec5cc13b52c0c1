"""How the simulated venue prices and sizes fills against trades and quotes."""

import pytest

from schemas import OrderState, Side, TimeInForce
from tests.unit.venues.factories import LATENCY, T0, order, quote, trade
from venues import SimVenue, SimVenueConfig

LIVE = T0 + LATENCY


def test_market_buy_when_trade_after_quote_then_price_is_trade_plus_half_spread_plus_impact():
    venue = SimVenue()
    venue.on_quote(quote(99.98, 100.02, ts=T0))  # no order live yet: only sets the spread
    venue.on_order(order("o1", Side.BUY, qty=50))
    [fill] = venue.on_trade(trade(100.0, 1_000, ts=LIVE, tick_ingest=42))
    # half spread 0.02; impact = 0.1 * 50 / 1000 (volume incl. this print) * 100 = 0.50
    assert fill.state is OrderState.FILLED
    assert (fill.last_qty, fill.last_price, fill.avg_price) == (50.0, 100.52, 100.52)
    assert (fill.cum_qty, fill.leaves_qty) == (50.0, 0.0)
    assert fill.fill_id == "o1:1" and fill.id == "exec:o1:2"
    assert fill.ts_event == LIVE and fill.ts_tick_ingest == 42
    assert fill.fee == round(50 * 100.52 * 0.5e-4, 6)


def test_market_sell_when_trade_then_price_is_trade_minus_half_spread_minus_impact():
    venue = SimVenue()
    venue.on_quote(quote(99.98, 100.02, ts=T0))
    venue.on_order(order("o1", Side.SELL, qty=50))
    [fill] = venue.on_trade(trade(100.0, 1_000, ts=LIVE))
    assert fill.last_price == 99.48


def test_market_order_when_no_quote_seen_then_no_spread_charged():
    venue = SimVenue(SimVenueConfig(impact_coef=0.0))
    venue.on_order(order("o1", qty=10))
    [fill] = venue.on_trade(trade(100.0, 1_000, ts=LIVE))
    assert fill.last_price == 100.0


def test_market_impact_when_volume_in_window_then_recent_volume_is_denominator():
    venue = SimVenue(SimVenueConfig(impact_window_ns=60_000_000_000))
    venue.on_trade(trade(100.0, 9_999, ts=T0 - 61_000_000_000))  # out of the window at LIVE
    venue.on_trade(trade(100.0, 3_000, ts=T0 - 30_000_000_000))  # in the window
    venue.on_order(order("o1", qty=100))
    [fill] = venue.on_trade(trade(100.0, 1_000, ts=LIVE))
    # recent volume = 3000 + 1000 -> impact = 0.1 * 100 / 4000 * 100 = 0.25
    assert fill.last_price == 100.25


def test_market_order_when_trade_smaller_than_order_then_partial_fills_across_trades():
    venue = SimVenue(SimVenueConfig(impact_coef=0.0))
    venue.on_order(order("o1", qty=100))
    first = venue.on_trade(trade(100.0, 30, ts=LIVE))
    second = venue.on_trade(trade(101.0, 50, ts=LIVE + 1))
    third = venue.on_trade(trade(102.0, 500, ts=LIVE + 2))
    reports = first + second + third
    assert [r.state for r in reports] == [OrderState.PARTIALLY_FILLED, OrderState.PARTIALLY_FILLED, OrderState.FILLED]
    assert [r.last_qty for r in reports] == [30.0, 50.0, 20.0]
    assert [r.cum_qty for r in reports] == [30.0, 80.0, 100.0]
    assert [r.leaves_qty for r in reports] == [70.0, 20.0, 0.0]
    assert [r.fill_id for r in reports] == ["o1:1", "o1:2", "o1:3"]
    assert reports[-1].avg_price == pytest.approx((30 * 100 + 50 * 101 + 20 * 102) / 100, abs=1e-9)
    assert venue.on_trade(trade(100.0, 500, ts=LIVE + 3)) == []  # a filled order is gone


def test_participation_when_below_one_then_fill_bounded_by_share_of_print():
    venue = SimVenue(SimVenueConfig(participation=0.1, impact_coef=0.0))
    venue.on_order(order("o1", qty=100))
    [fill] = venue.on_trade(trade(100.0, 250, ts=LIVE))
    assert fill.last_qty == 25.0


def test_participation_when_several_orders_then_print_shared_in_time_priority():
    venue = SimVenue(SimVenueConfig(impact_coef=0.0))
    venue.on_order(order("late", qty=100, ts=T0 + 1))
    venue.on_order(order("b", qty=100, ts=T0))
    venue.on_order(order("a", qty=100, ts=T0))
    reports = venue.on_trade(trade(100.0, 150, ts=LIVE + 1))
    assert [(r.client_order_id, r.last_qty) for r in reports] == [("a", 100.0), ("b", 50.0)]


def test_limit_buy_when_trade_at_or_below_limit_then_fills_at_limit():
    venue = SimVenue()
    venue.on_quote(quote(99.0, 99.5, ts=T0))
    venue.on_order(order("o1", Side.BUY, qty=10, limit=99.50, tif=TimeInForce.GTC))
    assert venue.on_trade(trade(99.51, 1_000, ts=LIVE)) == []
    [at_limit] = venue.on_trade(trade(99.50, 4, ts=LIVE + 1))
    [through] = venue.on_trade(trade(99.20, 1_000, ts=LIVE + 2))
    assert (at_limit.last_qty, at_limit.last_price) == (4.0, 99.5)
    assert (through.last_qty, through.last_price, through.state) == (6.0, 99.5, OrderState.FILLED)


def test_limit_sell_when_trade_at_or_above_limit_then_fills_at_limit():
    venue = SimVenue()
    venue.on_order(order("o1", Side.SELL, qty=10, limit=101.0, tif=TimeInForce.GTC))
    assert venue.on_trade(trade(100.99, 1_000, ts=LIVE)) == []
    [fill] = venue.on_trade(trade(101.30, 1_000, ts=LIVE + 1))
    assert (fill.last_price, fill.state) == (101.0, OrderState.FILLED)


def test_market_buy_when_quote_after_live_time_then_fills_at_ask_plus_impact_bounded_by_size():
    venue = SimVenue()
    venue.on_trade(trade(100.0, 1_000, ts=T0))
    venue.on_order(order("o1", Side.BUY, qty=50))
    [fill] = venue.on_quote(quote(99.98, 100.02, ask_size=20, bid_size=500, ts=LIVE, tick_ingest=77))
    # impact = 0.1 * 20 / 1000 * 100.02 = 0.20004 -> 100.22004 rounded up to 100.23
    assert (fill.last_qty, fill.last_price, fill.state) == (20.0, 100.23, OrderState.PARTIALLY_FILLED)
    assert fill.ts_tick_ingest == 77


def test_market_sell_when_quote_shows_no_size_then_whole_order_fills_at_bid_minus_impact():
    venue = SimVenue()
    venue.on_trade(trade(100.0, 1_000, ts=T0))
    venue.on_order(order("o1", Side.SELL, qty=50))
    [fill] = venue.on_quote(quote(99.98, 100.02, ts=LIVE))
    # impact = 0.1 * 50 / 1000 * 99.98 = 0.4999 -> 99.4801 rounded down to 99.48
    assert (fill.last_qty, fill.last_price, fill.state) == (50.0, 99.48, OrderState.FILLED)


def test_limit_buy_when_ask_crosses_limit_then_fills_at_limit_from_quote():
    venue = SimVenue()
    venue.on_order(order("o1", Side.BUY, qty=10, limit=100.0, tif=TimeInForce.GTC))
    assert venue.on_quote(quote(100.0, 100.01, ask_size=100, ts=LIVE)) == []
    [fill] = venue.on_quote(quote(99.98, 99.99, ask_size=4, ts=LIVE + 1))
    assert (fill.last_qty, fill.last_price) == (4.0, 100.0)


def test_fees_when_bps_and_per_share_configured_then_both_charged_per_fill():
    venue = SimVenue(SimVenueConfig(fee_bps=2.0, fee_per_share=0.01, impact_coef=0.0))
    venue.on_order(order("o1", qty=100))
    a, b = venue.on_trade(trade(50.0, 60, ts=LIVE)) + venue.on_trade(trade(50.0, 60, ts=LIVE + 1))
    assert a.fee == 60 * 50 * 2e-4 + 60 * 0.01  # 0.6 + 0.6
    assert b.fee == pytest.approx(40 * 50 * 2e-4 + 40 * 0.01, abs=1e-12)
    assert venue.stats()["fees"] == pytest.approx(a.fee + b.fee)


def test_fees_when_zero_then_fill_carries_zero_fee():
    venue = SimVenue(SimVenueConfig(fee_bps=0.0))
    venue.on_order(order("o1", qty=1))
    [fill] = venue.on_trade(trade(100.0, 10, ts=LIVE))
    assert fill.fee == 0.0


def test_fill_when_other_symbol_trades_then_order_untouched():
    venue = SimVenue()
    venue.on_order(order("o1", symbol="AAPL"))
    assert venue.on_trade(trade(100.0, 1_000, ts=LIVE, symbol="MSFT")) == []


def test_cum_and_leaves_when_fractional_fills_then_always_sum_to_order_qty():
    venue = SimVenue(SimVenueConfig(impact_coef=0.0))
    venue.on_order(order("o1", qty=1.0))
    reports = []
    for i in range(10):
        reports += venue.on_trade(trade(100.0, 0.1, ts=LIVE + i))
    assert all(r.cum_qty + r.leaves_qty == 1.0 for r in reports)
    assert reports[-1].state is OrderState.FILLED and reports[-1].cum_qty == 1.0
    assert len(reports) == 10


def test_limit_orders_when_several_cross_then_best_price_served_first():
    venue = SimVenue()
    venue.on_order(order("early_low", Side.BUY, qty=10, limit=100.0, tif=TimeInForce.GTC, ts=T0))
    venue.on_order(order("late_high", Side.BUY, qty=10, limit=100.5, tif=TimeInForce.GTC, ts=T0 + 1))
    reports = venue.on_trade(trade(99.9, 15, ts=LIVE + 1))
    assert [(r.client_order_id, r.last_qty, r.last_price) for r in reports] == [
        ("late_high", 10.0, 100.5), ("early_low", 5.0, 100.0)]


def test_market_order_when_limit_also_crosses_then_market_served_first():
    venue = SimVenue(SimVenueConfig(impact_coef=0.0))
    venue.on_order(order("limit", Side.BUY, qty=10, limit=101.0, tif=TimeInForce.GTC, ts=T0))
    venue.on_order(order("market", Side.BUY, qty=10, ts=T0 + 1))
    reports = venue.on_trade(trade(100.0, 10, ts=LIVE + 1))
    assert [(r.client_order_id, r.last_qty) for r in reports] == [("market", 10.0)]


def test_trade_when_buys_and_sells_live_then_each_side_gets_its_own_participation_budget():
    venue = SimVenue(SimVenueConfig(participation=0.5, impact_coef=0.0))
    venue.on_order(order("b", Side.BUY, qty=100))
    venue.on_order(order("s", Side.SELL, qty=100))
    reports = venue.on_trade(trade(100.0, 40, ts=LIVE))
    assert [(r.client_order_id, r.last_qty) for r in reports] == [("b", 20.0), ("s", 20.0)]


def test_limit_when_resting_away_from_market_then_later_orders_still_fill():
    venue = SimVenue(SimVenueConfig(impact_coef=0.0))
    for i in range(50):
        venue.on_order(order(f"rest{i}", Side.BUY, qty=1, limit=90.0 - i * 0.01, tif=TimeInForce.GTC))
    venue.on_order(order("m", Side.BUY, qty=1))
    [fill] = venue.on_trade(trade(100.0, 10, ts=LIVE))
    assert fill.client_order_id == "m"
    assert len(venue.open_orders()) == 50
