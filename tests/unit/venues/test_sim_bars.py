"""Fills from bars (a bar replay): the next bar's open plus slippage, partials bounded by its volume."""

from __future__ import annotations

import pytest

from schemas import Bar, OrderState, Side, TimeInForce
from tests.unit.venues.factories import LATENCY, T0, order
from venues.sim import SimVenue
from venues.sim_config import SimVenueConfig

MINUTE = 60_000_000_000


def bar(start: int, open_: float, volume: float | None = 1_000.0, symbol: str = "AAPL") -> Bar:
    return Bar(id=f"{symbol}:1m:{start}", ts_event=start + MINUTE, ts_ingest=0, symbol=symbol, interval="1m",
               bar_start=start, bar_end=start + MINUTE, open=open_, high=open_ + 1, low=open_ - 1, close=open_,
               volume=volume, vwap=None, trade_count=None, buy_volume=None, sell_volume=None, ts_tick_ingest=3)


def fills(reports):
    return [(r.side, r.last_qty, r.last_price, r.ts_event, r.state) for r in reports if r.is_fill]


def test_market_buy_when_next_bar_opens_then_filled_at_open_plus_slippage_at_its_start_plus_latency():
    venue = SimVenue(SimVenueConfig(bar_slippage_bps=10.0))
    venue.on_order(order(side=Side.BUY, qty=100.0, ts=T0))
    assert fills(venue.on_bar_open(bar(T0, 100.0))) == [(Side.BUY, 100.0, 100.1, T0 + LATENCY, OrderState.FILLED)]


def test_market_sell_when_slippage_off_grid_then_rounded_against_the_seller():
    venue = SimVenue(SimVenueConfig(bar_slippage_bps=1.0))
    venue.on_order(order(side=Side.SELL, qty=5.0, ts=T0))
    assert fills(venue.on_bar_open(bar(T0, 100.0)))[0][2] == 99.99  # 99.99 exactly on the grid


def test_order_when_sent_after_the_bar_start_then_waits_for_the_following_bar():
    venue = SimVenue()
    venue.on_order(order(ts=T0 + 1))  # live at T0 + 1 + latency: after this bar's opportunity
    assert fills(venue.on_bar_open(bar(T0, 100.0))) == []
    assert fills(venue.on_bar_open(bar(T0 + MINUTE, 101.0)))[0][2] == pytest.approx(101.02)


def test_orders_when_bar_volume_smaller_then_partial_fills_and_the_rest_at_the_next_open():
    venue = SimVenue(SimVenueConfig(participation=0.5, bar_slippage_bps=0.0))
    venue.on_order(order("a", qty=300.0, ts=T0, tif=TimeInForce.GTC))
    venue.on_order(order("b", qty=100.0, ts=T0, tif=TimeInForce.GTC))
    first = fills(venue.on_bar_open(bar(T0, 100.0, volume=400.0)))  # 200 for all buys together
    assert first == [(Side.BUY, 200.0, 100.0, T0 + LATENCY, OrderState.PARTIALLY_FILLED)]
    second = fills(venue.on_bar_open(bar(T0 + MINUTE, 102.0, volume=400.0)))
    assert second == [(Side.BUY, 100.0, 102.0, T0 + MINUTE + LATENCY, OrderState.FILLED)] * 2
    assert fills(venue.on_bar_open(bar(T0 + 2 * MINUTE, 103.0))) == []  # nothing left working


def test_order_when_bar_has_no_volume_then_not_bounded():
    venue = SimVenue(SimVenueConfig(bar_slippage_bps=0.0))
    venue.on_order(order(qty=1e6, ts=T0))
    assert fills(venue.on_bar_open(bar(T0, 1.2, volume=None))) == [(Side.BUY, 1e6, 1.2, T0 + LATENCY, OrderState.FILLED)]


def test_limit_buy_when_open_above_limit_then_rests_and_fills_at_its_limit_when_an_open_crosses():
    venue = SimVenue()
    venue.on_order(order(limit=99.0, ts=T0, tif=TimeInForce.GTC))
    assert fills(venue.on_bar_open(bar(T0, 100.0))) == []
    assert fills(venue.on_bar_open(bar(T0 + MINUTE, 98.5)))[0][2] == 99.0


def test_bar_of_another_symbol_when_order_works_then_no_fill():
    venue = SimVenue()
    venue.on_order(order(ts=T0))
    assert fills(venue.on_bar_open(bar(T0, 100.0, symbol="MSFT"))) == []
    assert venue.stats()["bars_seen"] == 1
