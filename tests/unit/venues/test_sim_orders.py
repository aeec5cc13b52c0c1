"""Order entry and cancel at the simulated venue: acknowledgements, refusals, latency."""

import pytest

from schemas import OrderState, Side
from tests.unit.venues.factories import LATENCY, MS, T0, cancel, order, trade
from venues import IllegalTransition, SimVenue, SimVenueConfig


def test_new_order_when_valid_then_accepted_with_order_stamps():
    venue = SimVenue()
    [report] = venue.on_order(order("o1", qty=100, tick_ingest=7))
    assert report.state is OrderState.ACCEPTED
    assert report.id == "exec:o1:1"
    assert (report.venue, report.venue_order_id) == ("sim", "sim:o1")
    assert (report.account, report.strategy, report.symbol, report.side) == ("acct", "strat", "AAPL", Side.BUY)
    assert (report.order_qty, report.cum_qty, report.leaves_qty) == (100.0, 0.0, 100.0)
    assert report.ts_event == T0 and report.ts_tick_ingest == 7
    assert not report.is_fill
    assert [o.client_order_id for o in venue.open_orders()] == ["o1"]


def test_new_order_when_client_order_id_reused_then_refused_without_touching_original():
    venue = SimVenue()
    venue.on_order(order("o1"))
    [refusal] = venue.on_order(order("o1", qty=5))
    assert refusal.state is OrderState.ACCEPTED  # the original's state, unchanged
    assert refusal.reason == "new_rejected:duplicate_client_order_id"
    assert refusal.id == "exec:o1:2" and refusal.order_qty == 100.0
    [open_order] = venue.open_orders()
    assert open_order.state is OrderState.ACCEPTED and open_order.order_qty == 100.0
    assert venue.stats()["duplicates_rejected"] == 1


def test_new_order_when_quantity_below_increment_then_rejected():
    venue = SimVenue()
    [report] = venue.on_order(order("o1", qty=1e-7))
    assert report.state is OrderState.REJECTED
    assert report.reason == "invalid_quantity:below_increment"
    assert report.leaves_qty == 0.0
    assert venue.open_orders() == []


def test_new_limit_when_price_below_one_tick_then_rejected():
    venue = SimVenue()
    [report] = venue.on_order(order("o1", limit=0.004))
    assert (report.state, report.reason) == (OrderState.REJECTED, "invalid_price:below_tick")


def test_new_limit_when_off_tick_then_rounded_passive():
    venue = SimVenue()
    venue.on_order(order("b", Side.BUY, limit=100.019))
    venue.on_order(order("s", Side.SELL, limit=100.011))
    prices = {o.client_order_id: o.limit_price for o in venue.open_orders()}
    assert prices == {"b": 100.01, "s": 100.02}


def test_new_order_when_quantity_off_lot_then_rounded_to_qty_increment():
    venue = SimVenue()
    [report] = venue.on_order(order("o1", qty=1.00000049))
    assert report.order_qty == 1.0


def test_market_order_when_trade_before_live_time_then_not_filled():
    venue = SimVenue()
    venue.on_order(order("o1", ts=T0))
    assert venue.on_trade(trade(100.0, 1_000, ts=T0 + LATENCY - 1)) == []
    [fill] = venue.on_trade(trade(100.0, 1_000, ts=T0 + LATENCY))
    assert fill.is_fill and fill.ts_event == T0 + LATENCY


def test_latency_when_configured_zero_then_order_live_at_its_own_timestamp():
    venue = SimVenue(SimVenueConfig(latency_ns=0))
    venue.on_order(order("o1", ts=T0))
    assert venue.on_trade(trade(100.0, 1_000, ts=T0))[0].is_fill


def test_cancel_when_order_working_then_canceled_by_client():
    venue = SimVenue()
    venue.on_order(order("o1"))
    [report] = venue.on_order(cancel("o1", ts=T0 + 10 * MS))
    assert report.state is OrderState.CANCELED
    assert report.reason == "canceled_by_client"
    assert report.ts_event == T0 + 10 * MS and report.ts_tick_ingest == 9
    assert report.leaves_qty == 0.0 and report.id == "exec:o1:2"
    assert venue.open_orders() == []
    assert venue.on_trade(trade(100.0, 1_000)) == []  # a canceled order never fills


def test_cancel_when_partially_filled_then_canceled_keeping_cum_qty():
    venue = SimVenue()
    venue.on_order(order("o1", qty=100))
    venue.on_trade(trade(100.0, 40))
    [report] = venue.on_order(cancel("o1", ts=T0 + 2 * LATENCY))
    assert (report.state, report.cum_qty, report.leaves_qty) == (OrderState.CANCELED, 40.0, 0.0)
    assert venue.on_trade(trade(100.0, 1_000, ts=T0 + 3 * LATENCY)) == []


def test_cancel_when_client_order_id_unknown_then_rejected_cancel_report():
    venue = SimVenue()
    [report] = venue.on_order(cancel("ghost"))
    assert report.state is OrderState.REJECTED
    assert report.reason == "cancel_rejected:unknown_order"
    assert report.id == "exec:ghost:1"


def test_cancel_when_unknown_then_later_order_with_that_id_gets_fresh_report_ids():
    venue = SimVenue()
    venue.on_order(cancel("o1"))
    [accepted] = venue.on_order(order("o1"))
    assert accepted.state is OrderState.ACCEPTED and accepted.id == "exec:o1:2"


def test_cancel_when_order_already_filled_then_refused_and_order_stays_filled():
    venue = SimVenue()
    venue.on_order(order("o1", qty=10))
    venue.on_trade(trade(100.0, 1_000))
    [report] = venue.on_order(cancel("o1", ts=T0 + 2 * LATENCY))
    assert report.state is OrderState.FILLED
    assert report.reason == "cancel_rejected:already_filled"
    assert report.cum_qty == 10.0 and not report.is_fill


def test_cancel_when_order_already_canceled_then_refused():
    venue = SimVenue()
    venue.on_order(order("o1"))
    venue.on_order(cancel("o1"))
    [report] = venue.on_order(cancel("o1"))
    assert (report.state, report.reason) == (OrderState.CANCELED, "cancel_rejected:already_canceled")
    assert report.id == "exec:o1:3"


def test_cancel_when_from_another_account_then_refused():
    venue = SimVenue()
    venue.on_order(order("o1", account="acct"))
    [report] = venue.on_order(cancel("o1", account="intruder"))
    assert (report.state, report.reason) == (OrderState.ACCEPTED, "cancel_rejected:account_mismatch")
    assert len(venue.open_orders()) == 1


def test_cancel_when_order_not_yet_live_then_canceled_and_never_fills():
    venue = SimVenue()
    venue.on_order(order("o1", ts=T0))
    venue.on_order(cancel("o1", ts=T0 + 1))
    assert venue.on_trade(trade(100.0, 1_000, ts=T0 + LATENCY)) == []


def test_venue_when_asked_for_illegal_transition_then_raises():
    # The venue's own guard: a filled order cannot be canceled through the internal path either.
    venue = SimVenue()
    venue.on_order(order("o1", qty=1))
    venue.on_trade(trade(100.0, 10))
    filled = venue._book.get("o1")
    with pytest.raises(IllegalTransition):
        venue._close(filled, T0, 0, "test")
