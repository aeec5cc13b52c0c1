"""trade_updates events -> ExecutionReports: cumulative booking, duplicates, missed fills."""

from __future__ import annotations

import pytest

from trading.ledger import Ledger
from schemas import OrderState, Side
from venues.alpaca_updates import TrackedOrder, apply_update, strategy_from_client_order_id

TS = "2024-01-02T14:30:01.000000001Z"


def tracked(qty: float = 10.0) -> TrackedOrder:
    return TrackedOrder(client_order_id="base-AAPL-buy-1-0", account="paper", strategy="base", symbol="AAPL",
                        side=Side.BUY, order_qty=qty, venue="alpaca", ts_tick_ingest=5)


def event(kind: str, filled: float, avg: float | None, qty: float | None = None, price: float | None = None,
          execution_id: str | None = None, status: str | None = None) -> dict:
    data = {"event": kind, "timestamp": TS,
            "order": {"id": "oid-1", "client_order_id": "base-AAPL-buy-1-0", "qty": "10", "filled_qty": str(filled),
                      "filled_avg_price": None if avg is None else str(avg), "status": status or kind}}
    if qty is not None:
        data.update(qty=str(qty), price=str(price), execution_id=execution_id)
    return data


def test_new_then_partial_fills_when_applied_then_accepted_and_fills_with_event_qty_price():
    order = tracked()
    reports = apply_update(order, event("new", 0, None))
    reports += apply_update(order, event("partial_fill", 4, 100.0, 4, 100.0, "x1", "partially_filled"))
    reports += apply_update(order, event("fill", 10, 100.6, 6, 101.0, "x2", "filled"))
    assert [r.state for r in reports] == [OrderState.ACCEPTED, OrderState.PARTIALLY_FILLED, OrderState.FILLED]
    first, second = reports[1], reports[2]
    assert (first.fill_id, first.last_qty, first.last_price, first.cum_qty, first.leaves_qty) == ("x1", 4.0, 100.0, 4.0, 6.0)
    assert (second.fill_id, second.last_qty, second.last_price, second.cum_qty, second.leaves_qty) == ("x2", 6.0, 101.0, 10.0, 0.0)
    assert second.avg_price == pytest.approx(100.6) and second.venue_order_id == "oid-1"
    assert reports[0].ts_event == 1_704_205_801_000_000_001


def test_event_when_replayed_then_nothing_is_reported_twice():
    order = tracked()
    fill = event("partial_fill", 4, 100.0, 4, 100.0, "x1", "partially_filled")
    assert len(apply_update(order, event("new", 0, None))) == 1
    assert len(apply_update(order, fill)) == 1
    assert apply_update(order, fill) == []
    assert apply_update(order, event("new", 0, None)) == []


def test_fill_when_earlier_fill_missed_then_the_advance_is_booked_at_the_implied_price():
    order = tracked()
    apply_update(order, event("partial_fill", 4, 100.0, 4, 100.0, "x1", "partially_filled"))
    # the 3 @ 102 fill (cum 7, avg 100.857142857) was missed; the next event says cum 10, avg 101.2
    reports = apply_update(order, event("fill", 10, 101.2, 3, 102.0, "x3", "filled"))
    assert len(reports) == 1 and reports[0].last_qty == pytest.approx(6.0)
    assert reports[0].last_price == pytest.approx((101.2 * 10 - 100.0 * 4) / 6)
    ledger = Ledger("paper")
    ledger.on_fill(apply_update(tracked(), event("partial_fill", 4, 100.0, 4, 100.0, "x1", "partially_filled"))[0])
    ledger.on_fill(reports[0])
    assert ledger.positions() == {("base", "AAPL"): pytest.approx(10.0)}


def test_cancel_after_partial_fill_when_applied_then_terminal_once_with_leaves_zero():
    order = tracked()
    apply_update(order, event("partial_fill", 4, 100.0, 4, 100.0, "x1", "partially_filled"))
    reports = apply_update(order, event("canceled", 4, 100.0))
    assert [(r.state, r.cum_qty, r.leaves_qty, r.reason) for r in reports] == [(OrderState.CANCELED, 4.0, 0.0, "venue:canceled")]
    assert apply_update(order, event("canceled", 4, 100.0)) == []
    assert apply_update(order, event("new", 4, 100.0)) == []


def test_strategy_when_id_is_tapeflows_then_read_from_it_else_external():
    assert strategy_from_client_order_id("base%2Dline-AAPL-buy-1704205800000000000-0") == "base-line"
    assert strategy_from_client_order_id("web-ui-order") == "external"
