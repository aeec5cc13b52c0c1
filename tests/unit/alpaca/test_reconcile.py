"""Start-of-day reconciliation of the ledger with Alpaca's open orders and positions."""

from __future__ import annotations

import pytest

from trading.ledger import Ledger
from schemas import OrderState, OrderType, Side, TimeInForce
from venues.order_book import OpenOrder
from venues.reconcile import adoption_record, confirmed, is_adoption, reconcile


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
        (ledger.on_adoption if is_adoption(adjustment) else ledger.on_fill)(adjustment)
    assert ledger.positions() == {("adopted", "TSLA"): pytest.approx(-2.0)}
    assert ledger.avg_cost("TSLA", "adopted") == pytest.approx(250.0)
    assert not any(r.is_fill for r in report.adjustments)  # adoption is no fill: fill counts stay true
    states = {(r.client_order_id, r.state, r.reason) for r in report.adjustments if not is_adoption(r)}
    assert states == {("manual-1", OrderState.PARTIALLY_FILLED, "reconcile:adopt_order"),
                      ("base-MSFT-buy-1-0", OrderState.CANCELED, "reconcile:not_open_at_venue")}
    # booking the same adjustments again (a replay, a restart under the same run) changes nothing
    for adjustment in reconcile({"AAPL": 15.0}, [], VENUE_POSITIONS, [], adopt=True).adjustments:
        assert ledger.on_adoption(adjustment) == []
    assert ledger.positions() == {("adopted", "TSLA"): pytest.approx(-2.0)}
    assert ledger.stats()["fills_booked"] == 0 and ledger.check_balance()


def test_adoption_record_when_built_then_not_a_fill_and_id_names_the_broker_state():
    record = adoption_record("paper", "alpaca", "adopted", "AAPL", -3.0, -3.0, 101.25, 1)
    assert (record.side, record.last_qty, record.last_price, record.fill_id) == (Side.SELL, 3.0, 101.25, "")
    assert is_adoption(record) and not record.is_fill
    assert record.id == adoption_record("paper", "alpaca", "adopted", "AAPL", -3.0, -3.0, 101.25, 99).id
    assert record.id != adoption_record("paper", "alpaca", "adopted", "AAPL", -4.0, -4.0, 101.25, 1).id
    with pytest.raises(ValueError, match="no fill_id"):
        Ledger("paper").on_adoption(record.model_copy(update={"fill_id": "x"}))


def test_confirmed_when_a_difference_is_gone_on_the_second_look_then_only_lasting_ones_remain():
    first = reconcile({}, [open_order("gone-1")], VENUE_POSITIONS, VENUE_ORDERS)
    second = reconcile({"AAPL": 15.0}, [open_order("gone-1"), open_order("late-2")], VENUE_POSITIONS, [])
    lasting = confirmed(first, second)
    assert lasting.orders_missing_there == ["gone-1"] and lasting.orders_missing_here == []
    assert [d.symbol for d in lasting.position_diffs] == ["TSLA"]
    assert confirmed(first, reconcile({"AAPL": 15.0, "TSLA": -2.0}, [], VENUE_POSITIONS, [])).clean
