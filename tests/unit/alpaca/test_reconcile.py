"""Start-of-day reconciliation of the ledger with Alpaca's open orders and positions."""

from __future__ import annotations

import pytest

from trading.ledger import Ledger
from schemas import OrderState, OrderType, Side, TimeInForce
from venues.order_book import OpenOrder
from venues.reconcile import reconcile


def open_order(coid: str, symbol: str = "MSFT") -> OpenOrder:
    return OpenOrder(client_order_id=coid, account="paper", strategy="base", symbol=symbol, side=Side.BUY,
                     order_type=OrderType.LIMIT, time_in_force=TimeInForce.GTC, state=OrderState.ACCEPTED,
                     order_qty=5.0, cum_qty=0.0, leaves_qty=5.0, limit_price=300.0, live_at=0, expire_at=None)


VENUE_POSITIONS = [{"symbol": "AAPL", "qty": "15", "avg_entry_price": "101"}, {"symbol": "TSLA", "qty": "-2", "avg_entry_price": "250"}]
VENUE_ORDERS = [{"id": "o-9", "client_order_id": "manual-1", "symbol": "NVDA", "side": "sell", "qty": "3", "filled_qty": "1",
                 "filled_avg_price": "900"}]


def test_reconcile_when_both_sides_differ_then_report_lists_each_difference():
    report = reconcile({("base", "AAPL"): 10.0, ("other", "AAPL"): 5.0, ("base", "AMD"): 1.0},
                       [open_order("base-MSFT-buy-1-0")], VENUE_POSITIONS, VENUE_ORDERS)
    assert [o["client_order_id"] for o in report.orders_missing_here] == ["manual-1"]
    assert report.orders_missing_there == ["base-MSFT-buy-1-0"]
    assert [(d.symbol, d.ledger_qty, d.venue_qty) for d in report.position_diffs] == [("AMD", 1.0, 0.0), ("TSLA", 0.0, -2.0)]
    assert report.adjustments == [] and not report.clean
    assert "position TSLA: ledger 0, Alpaca -2" in report.summary()


def test_reconcile_when_everything_agrees_then_clean():
    report = reconcile({"AAPL": 15.0, "TSLA": -2.0}, [], VENUE_POSITIONS, [])
    assert report.clean and report.summary().startswith("reconciled")


def test_adopt_when_adjustments_booked_then_ledger_matches_alpaca_and_orders_are_tracked():
    ledger = Ledger("paper")
    report = reconcile(net := {"AAPL": 15.0}, [open_order("base-MSFT-buy-1-0")], VENUE_POSITIONS, VENUE_ORDERS, adopt=True)
    assert net == {"AAPL": 15.0}
    for adjustment in report.adjustments:
        ledger.on_fill(adjustment)
    assert ledger.positions() == {("adopted", "TSLA"): pytest.approx(-2.0)}
    states = {(r.client_order_id, r.state, r.reason) for r in report.adjustments if not r.is_fill}
    assert states == {("manual-1", OrderState.PARTIALLY_FILLED, "reconcile:adopt_order"),
                      ("base-MSFT-buy-1-0", OrderState.CANCELED, "reconcile:not_open_at_venue")}
    # booking the same adjustments again (a second start) changes nothing
    for adjustment in reconcile({"AAPL": 15.0}, [], VENUE_POSITIONS, [], adopt=True).adjustments:
        ledger.on_fill(adjustment)
    assert ledger.positions() == {("adopted", "TSLA"): pytest.approx(-2.0)}
